// The TestAttack* tests here reproduce attacks a review of the change
// found, each through what it attacked. Each failed before its fix and
// guards it now; their comments describe the attack and the flaw as they
// were found (the commits starting "attack:" hold them as they failed).

package oauth_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/oauth"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
)

// grantsOK answers every grant with an enabled client, a live session and
// the user's row, as the database would for a genuine token.
type grantsOK struct{}

func (grantsOK) OAuthGrant(_ context.Context, g schema.Grant) (*betterauth.OAuthToken, error) {
	t := &betterauth.OAuthToken{ClientID: g.ClientID, Client: &betterauth.OAuthClient{ClientID: g.ClientID}, UserID: g.UserID,
		SessionID: g.SessionID, SessionExpiresAt: testNow.Add(24 * time.Hour), Resources: g.Resources}
	if g.UserID != "" {
		t.User = &betterauth.User{ID: g.UserID}
	}
	return t, nil
}

// noInner is the store under the JWT store: JWT lookups never reach it.
type noInner struct{}

func (noInner) Lookup(context.Context, betterauth.Lookup) (betterauth.Record, error) {
	return betterauth.Record{}, errors.New("not a JWT lookup")
}

// The README promises: "Removing a signing key from the jwks table stops
// its tokens within a minute (the key cache), not at once". The gateway
// assembles the stores as jwtStore does: the record cache over the JWT
// store over CachedKeys over the jwks table. A JWT seen once is a cached
// record keyed by its digest, served until the cache's TTL (or its exp)
// without its key being looked at again: after the key's row is deleted
// (the one thing an operator can do about a leaked signing key, since the
// table has no trigger), the key cache forgets the key within a minute, but
// the tokens already presented (any a thief minted, with an exp as far
// away as he likes) keep passing for the whole record TTL, an hour here,
// and on every replica that reads them from the shared Redis tier.
func TestAttackDeletedSigningKeyOutlivesKeyCache(t *testing.T) {
	var mu sync.Mutex
	now := testNow
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	s := signerFor(t, oauth.EdDSA)
	var deleted bool
	table := oauth.KeyFunc(func(context.Context, string) (oauth.Key, error) {
		mu.Lock()
		defer mu.Unlock()
		if deleted {
			return oauth.Key{}, oauth.ErrKeyNotFound
		}
		return s.key, nil
	})
	keys, err := oauth.NewCachedKeys(oauth.CachedKeysConfig{Source: table, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	v := verifier(t, oauth.AccessTokenConfig{Keys: keys, AllowUnbound: true, Now: clock})
	st := cache.New(oauth.NewStore(noInner{}, grantsOK{}, v), cache.Options{TTL: time.Hour, Jitter: -1, Now: clock})

	c := claims()
	c["exp"] = testNow.Add(30 * 24 * time.Hour).Unix() // a thief's token: a month
	tok := s.token(t, s.header(), c)
	l := betterauth.NewLookup(betterauth.KindJWT, tok)
	if rec, err := st.Lookup(context.Background(), l); err != nil || rec.OAuth == nil {
		t.Fatalf("before: %+v, %v", rec, err)
	}

	mu.Lock()
	deleted = true
	mu.Unlock()
	advance(2 * time.Minute)
	if _, err := keys.Key(context.Background(), s.key.ID); !errors.Is(err, oauth.ErrKeyNotFound) {
		t.Fatalf("the key cache still has the key 2 minutes after its row went: %v", err)
	}
	if rec, err := st.Lookup(context.Background(), l); err != nil || rec.OAuth != nil {
		t.Fatalf("2 minutes after its signing key was deleted, a JWT signed with it is still accepted (record %v, %v)", rec.OAuth != nil, err)
	}
}

// countingShield counts the failures charged to clients.
type countingShield struct{ failed int }

func (*countingShield) Blocked(netip.Addr) (time.Duration, bool) { return 0, false }
func (s *countingShield) Failed(netip.Addr)                      { s.failed++ }

// The shield (brute_force) counts guesses only: "genuine keys that are
// disabled, expired ... and correctly signed session tokens the database no
// longer knows do not count" (README), so that a NAT full of stale
// credentials the app itself issued does not lock everyone behind it out.
// A genuine JWT access token that has merely expired is the most common
// stale credential an MCP client sends (it refreshes after a 401). Its exp
// is a TokenError like a bad signature, oauth.Store answers "not found",
// and the Gate refuses it 401 INVALID_TOKEN (not TOKEN_EXPIRED, as for an
// expired opaque token) and charges the client's address one guess: a few
// clients behind one address retrying with expired tokens get that
// address 429 TOO_MANY_FAILURES for every credential.
func TestAttackExpiredJWTCountsAsAGuess(t *testing.T) {
	s := signerFor(t, oauth.EdDSA)
	tok := s.token(t, s.header(), claims()) // exp: testNow + 59 min
	later := func() time.Time { return testNow.Add(2 * time.Hour) }
	v := verifier(t, oauth.AccessTokenConfig{AllowUnbound: true, Now: later})
	bv, err := betterauth.NewVerifier(betterauth.Options{Store: oauth.NewStore(noInner{}, grantsOK{}, v), Now: later})
	if err != nil {
		t.Fatal(err)
	}
	shield := &countingShield{}
	g := betterauth.NewGate(betterauth.GateConfig{Verifier: bv, Shield: shield, Extract: betterauth.ExtractorConfig{OAuth: true}})
	res := g.Decide(context.Background(), betterauth.HTTPHeader{"Authorization": {"Bearer " + tok}}, netip.MustParseAddr("203.0.113.7"))
	if res.Decision.Reason != betterauth.TokenExpired || shield.failed != 0 {
		t.Fatalf("an expired genuine JWT: reason %v, charged %d guesses; want TOKEN_EXPIRED and none", res.Decision.Reason, shield.failed)
	}
}

// jwks_url must be https ("http only on a loopback host, or with
// AllowHTTP ... whoever can tamper with the traffic can then substitute
// keys"), but the document is fetched with a client that follows
// redirects as http.DefaultClient does, downgrades included: an https
// JWKS URL that redirects (a moved path, a proxy's http:// Location) makes
// the gateway take its signing keys from a plain-http host, where anyone
// on the path substitutes his own and signs access tokens with them.
func TestAttackJWKSURLFollowsRedirectToPlainHTTP(t *testing.T) {
	attacker := newIssuer(t, newSigner(t, oauth.EdDSA, "k1").key) // plain http
	_, port, _ := strings.Cut(strings.TrimPrefix(attacker.srv.URL, "http://"), ":")
	moved := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://keys.example.net:"+port+"/jwks", http.StatusFound)
	}))
	t.Cleanup(moved.Close)
	// The client a default-configured gateway uses (http.DefaultClient),
	// trusting the test's certificate and resolving keys.example.net to
	// the attacker's server: the redirect policy is the default one.
	tr := moved.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if strings.HasPrefix(addr, "keys.example.net:") {
			addr = "127.0.0.1:" + port
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	s, err := oauth.NewJWKSURL(oauth.JWKSURLConfig{URL: moved.URL + "/api/auth/jwks", Client: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	if k, err := s.Key(context.Background(), "k1"); err == nil {
		t.Fatalf("a key fetched over plain http from %s, after a redirect of the https JWKS URL: %s", "keys.example.net", k.ID)
	}
}
