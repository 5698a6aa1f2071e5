package oauth

import (
	"context"
	"errors"
)

// ErrKeyNotFound is the error (wrapped) a KeySource returns when it has no
// key with the asked kid: the token is invalid (401). Any other error is a
// failure to find out (503), never a pass.
var ErrKeyNotFound = errors.New("oauth: no such signing key")

// KeySource finds the public key that verifies tokens with a kid.
//
// Key returns an error wrapping ErrKeyNotFound when there is no such key,
// one wrapping ErrUnusableKey when the key exists but the verifier may not
// use it, and any other error when the source cannot tell (its database
// or issuer is unreachable). It must be safe for concurrent use.
type KeySource interface {
	Key(ctx context.Context, kid string) (Key, error)
}

// KeyFunc adapts a function, such as a store's JWK method, to KeySource.
type KeyFunc func(ctx context.Context, kid string) (Key, error)

// Key calls f.
func (f KeyFunc) Key(ctx context.Context, kid string) (Key, error) { return f(ctx, kid) }

// StaticKeys is a fixed set of keys by kid: keys pinned in configuration,
// and tests.
type StaticKeys map[string]Key

// NewStaticKeys returns the keys by kid.
func NewStaticKeys(keys ...Key) StaticKeys {
	s := make(StaticKeys, len(keys))
	for _, k := range keys {
		s[k.ID] = k
	}
	return s
}

// Key implements KeySource.
func (s StaticKeys) Key(_ context.Context, kid string) (Key, error) {
	if k, ok := s[kid]; ok {
		return k, nil
	}
	return Key{}, ErrKeyNotFound
}

// notFound reports whether err says the token's key is not to be had:
// absent, or present but unusable. Either way the token is invalid.
func notFound(err error) bool {
	return errors.Is(err, ErrKeyNotFound) || errors.Is(err, ErrUnusableKey)
}
