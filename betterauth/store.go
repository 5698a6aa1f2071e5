package betterauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
)

// Mode says which tables a Lookup reads.
type Mode uint8

// Modes.
const (
	ModeAPIKey  Mode = iota + 1 // apikey by stored hash
	ModeSession                 // session by token
	ModeEither                  // both, in one round trip
)

// Lookup is one store query. It is passed by value so that a cache hit
// allocates nothing.
type Lookup struct {
	Mode Mode
	// Secret is the API key (ModeAPIKey, ModeEither) or the unsigned session
	// token (ModeSession, ModeEither). Never log it.
	Secret string
	// Digest is SHA-256 of Secret. Caches key on it; a raw secret is never a
	// cache key.
	Digest [sha256.Size]byte
}

// NewLookup returns the lookup of secret in mode.
func NewLookup(mode Mode, secret string) Lookup {
	return Lookup{Mode: mode, Secret: secret, Digest: digest(secret)}
}

// KeyHash returns the value Better-Auth stores in apikey.key for Secret.
func (l Lookup) KeyHash() string { return base64.RawURLEncoding.EncodeToString(l.Digest[:]) }

// Store reads Better-Auth's records.
//
// Lookup returns the matching record, a zero Record when nothing matches, and
// an error only when the store could not answer (which the Verifier's callers
// turn into 503). Records are sealed (see Record.Seal) and never changed after
// they are returned, so caches may share them. A store never writes.
type Store interface {
	Lookup(ctx context.Context, l Lookup) (Record, error)
}
