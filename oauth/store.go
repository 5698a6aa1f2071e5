package oauth

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
)

// GrantReader reads the rows a verified JWT access token names: its
// client, session and user, and whether its resources are registered
// (pgstore and sqlitestore implement it). It returns nil when the database
// has no OAuth provider tables.
type GrantReader interface {
	OAuthGrant(ctx context.Context, g schema.Grant) (*betterauth.OAuthToken, error)
}

// Store is a betterauth.Store for JWT access tokens: it verifies a
// KindJWT lookup offline and reads the rows the token names, in one query,
// so that Better-Auth's own checks of an opaque token (client enabled,
// session alive, resources registered, user not banned) hold for JWTs too,
// as its introspection makes them. Every other lookup goes to Inner.
//
// Put it under the cache: a verified token is then served from memory,
// keyed by its digest, until the cache's TTL or its expiry.
type Store struct {
	inner    betterauth.Store
	grants   GrantReader
	verifier *AccessTokenVerifier
}

// NewStore returns a Store verifying with v (which should accept any
// audience: the route's betterauth.OAuthPolicy decides) and reading grants
// through grants.
func NewStore(inner betterauth.Store, grants GrantReader, v *AccessTokenVerifier) *Store {
	return &Store{inner: inner, grants: grants, verifier: v}
}

// Lookup implements betterauth.Store. A token that does not verify is not
// found (401 INVALID_TOKEN); a key source that cannot answer is an error
// (503).
func (s *Store) Lookup(ctx context.Context, l betterauth.Lookup) (betterauth.Record, error) {
	if l.Kind != betterauth.KindJWT {
		return s.inner.Lookup(ctx, l)
	}
	at, err := s.verifier.Verify(ctx, l.Secret)
	switch {
	case Expired(err):
		// The Verifier refuses it as expired, before anything the rows
		// would say: none are read.
		return betterauth.Record{OAuth: &betterauth.OAuthToken{ID: tokenID(at), ClientID: at.ClientID, ExpiresAt: at.ExpiresAt}}, nil
	case errors.Is(err, ErrInvalidToken):
		return betterauth.Record{}, nil
	case err != nil:
		return betterauth.Record{}, err
	}
	g := schema.Grant{ClientID: at.ClientID, SessionID: at.SessionID, Resources: resources(at)}
	if len(g.Resources) > schema.MaxGrantResources {
		return betterauth.Record{}, nil // more audiences than Better-Auth itself issues
	}
	if id, ok := at.User(); ok {
		g.UserID = id
	}
	t, err := s.grants.OAuthGrant(ctx, g)
	if err != nil || t == nil {
		return betterauth.Record{}, err
	}
	t.ID, t.Scopes, t.ExpiresAt = tokenID(at), at.Scopes, at.ExpiresAt
	t.CheckBy = s.verifier.now().Add(KeyRecheck)
	return betterauth.Record{OAuth: t}, nil
}

// KeyRecheck bounds how long a verified JWT's record is served without its
// signing key being looked at again: a key deleted from the jwks table
// (what an operator does about a leaked one; the table has no trigger)
// stops its tokens within it, plus the key cache's own TTL.
const KeyRecheck = time.Minute

// tokenID names a JWT in X-Auth-Token-Id: its jti, which Better-Auth
// always sets, or else its key and issue time.
func tokenID(at AccessToken) string {
	if at.JTI != "" {
		return at.JTI
	}
	return at.KeyID + ":" + at.IssuedAt.UTC().Format("20060102T150405Z")
}

// resources are a token's audiences that name resources: distinct, and
// without Better-Auth's userinfo endpoint, which it adds to a token granted
// openid and does not look up. That endpoint is its baseURL and basePath
// followed by /oauth2/userinfo, which is the issuer only when jwt.issuer is
// not set: any audience ending so is taken for it (only the provider mints
// tokens, and it puts no other such audience in them).
func resources(at AccessToken) []string {
	var out []string
	for _, a := range at.Audience {
		if a != "" && !strings.HasSuffix(a, "/oauth2/userinfo") && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}
