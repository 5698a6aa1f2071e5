package cache

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
)

// Sealer authenticates what gateways share through Redis: cache entries and
// invalidation messages. Redis is not trusted: whoever can write to it could
// otherwise mint any identity for a key they invent. Every value is stored
// with an HMAC-SHA256 over where it lives (the Redis key or channel) and
// what it says, under a key only the gateways hold, so that a forged value,
// or a genuine one copied under another credential's key, is never used.
type Sealer struct {
	key []byte
}

// MinSharedKeyLen is the shortest secret a Sealer accepts, in bytes, as
// Better-Auth asks of its own secret.
const MinSharedKeyLen = 32

// sealInfo names the derived key's use, so that it is never the key of
// anything else derived from the same secret.
const sealInfo = "caddy-betterauth shared cache v2"

// NewSealer derives the sealing key from secret (Better-Auth's secret, or a
// key given for the shared cache) with HKDF-SHA256.
func NewSealer(secret string) (*Sealer, error) {
	if secret == "" {
		return nil, errors.New("no key to authenticate shared entries with")
	}
	key, err := hkdf.Key(sha256.New, []byte(secret), nil, sealInfo, sha256.Size)
	if err != nil {
		return nil, err
	}
	return &Sealer{key: key}, nil
}

// Fingerprint identifies the derived key (not the secret) in the pool key
// of a shared backend: gateways sealing differently must not share one.
func (s *Sealer) Fingerprint() [sha256.Size]byte {
	return sha256.Sum256(append([]byte("fingerprint:"), s.key...))
}

// Seal returns payload with its tag in front. place is where the value
// lives (a Redis key or channel); it is covered by the tag but not stored.
func (s *Sealer) Seal(place string, payload []byte) []byte {
	out := make([]byte, sha256.Size, sha256.Size+len(payload))
	s.tag(out[:0], place, payload)
	return append(out, payload...)
}

// Open returns the payload of a sealed value read at place, or false when
// its tag does not match: forged, tampered with, or moved from elsewhere.
func (s *Sealer) Open(place string, sealed []byte) ([]byte, bool) {
	if len(sealed) < sha256.Size {
		return nil, false
	}
	var want [sha256.Size]byte
	payload := sealed[sha256.Size:]
	s.tag(want[:0], place, payload)
	if !hmac.Equal(want[:], sealed[:sha256.Size]) {
		return nil, false
	}
	return payload, true
}

// tag appends HMAC-SHA256(key, len(place) || place || payload) to dst; the
// length keeps place and payload from running into each other.
func (s *Sealer) tag(dst []byte, place string, payload []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	var n [8]byte
	for i, l := 0, uint64(len(place)); i < 8; i++ {
		n[i] = byte(l >> (56 - 8*i))
	}
	m.Write(n[:])
	m.Write([]byte(place))
	m.Write(payload)
	return m.Sum(dst)
}
