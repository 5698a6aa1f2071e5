package betterauth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// digest returns SHA-256 of s without copying s to the heap (the common
// case; a longer s is bounded by MaxCredentialLen before it gets here).
func digest(s string) [sha256.Size]byte {
	var buf [MaxCredentialLen]byte
	if len(s) <= len(buf) {
		return sha256.Sum256(append(buf[:0], s...))
	}
	return sha256.Sum256([]byte(s))
}

// HashAPIKey returns the value Better-Auth stores in apikey.key for a
// presented key: base64url without padding of SHA-256 of the whole key,
// prefix included (the api-key plugin's defaultKeyHasher).
func HashAPIKey(key string) string {
	d := digest(key)
	return base64.RawURLEncoding.EncodeToString(d[:])
}

// Fingerprint returns a short, non-reversible tag for a secret, safe for
// logs: the first 8 hex digits of its SHA-256.
func Fingerprint(secret string) string {
	d := digest(secret)
	return hex.EncodeToString(d[:4])
}
