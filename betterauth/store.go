package betterauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
)

// Lookup is one store query. It is passed by value so that a cache hit
// allocates nothing.
type Lookup struct {
	// Kind says which tables are read: KindAPIKey the api-key table by
	// stored key, KindSession the session table by token, KindEither both,
	// in one round trip. Its numeric value is part of the cache's keys,
	// local and shared: it must not change.
	Kind Kind
	// Secret is the API key (KindAPIKey, KindEither) or the unsigned session
	// token (KindSession, KindEither). Never log it.
	Secret string
	// Digest is SHA-256 of Secret. Caches key on it; a raw secret is never a
	// cache key.
	Digest [sha256.Size]byte
}

// NewLookup returns the lookup of secret as kind.
func NewLookup(kind Kind, secret string) Lookup {
	return Lookup{Kind: kind, Secret: secret, Digest: digest(secret)}
}

// KeyHash returns the value Better-Auth stores in apikey.key for Secret.
func (l Lookup) KeyHash() string { return base64.RawURLEncoding.EncodeToString(l.Digest[:]) }

// StoredKey returns what the api-key plugin stores for Secret (in apikey.key,
// or after "api-key:" in secondary storage): its hash, or, with the plugin's
// disableKeyHashing (plain), the key itself.
func (l Lookup) StoredKey(plain bool) string {
	if plain {
		return l.Secret
	}
	return l.KeyHash()
}

// StoredKeyDigest is the way back from StoredKey: the Digest of the lookups
// of the key stored as stored, or false when stored cannot be a stored
// key. A change reported by stored key (secondary storage's keyspace
// events) is matched against cached lookups by digest.
func StoredKeyDigest(stored string, plain bool) ([sha256.Size]byte, bool) {
	var d [sha256.Size]byte
	if plain {
		return digest(stored), true
	}
	// Checked first: Decode writes past d for a longer input.
	if len(stored) != base64.RawURLEncoding.EncodedLen(len(d)) {
		return d, false
	}
	n, err := base64.RawURLEncoding.Decode(d[:], []byte(stored))
	return d, err == nil && n == len(d)
}

// Store reads Better-Auth's records.
//
// Lookup returns the matching record, a zero Record when nothing matches, and
// an error only when the store could not answer (which the Verifier's callers
// turn into 503). Each Lookup returns records of its own, which the store
// never changes afterwards, so that a cache may seal them (see Record.Seal)
// and share them. A store never writes to the database.
type Store interface {
	Lookup(ctx context.Context, l Lookup) (Record, error)
}
