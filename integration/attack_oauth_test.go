// The TestAttack* tests here reproduce attacks a review of the change
// found, each through what it attacked. Each failed before its fix and
// guards it now; their comments describe the attack and the flaw as they
// were found (the commits starting "attack:" hold them as they failed).

package integration

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// attackOAuth is real Better-Auth with its OAuth provider on a fresh
// PostgreSQL database, the revocation triggers installed, and one gateway
// in front of an upstream that accepts its opaque tokens (they carry no
// audience) and its JWTs, caching for an hour, its revocation listener
// connected.
type attackOAuth struct {
	ba *oauthSeed
	f  *oauthFixture
	up *upstream
	gw *testenv.Caddy
}

func startAttackOAuth(t *testing.T, extra string) *attackOAuth {
	t.Helper()
	a := &attackOAuth{ba: startOAuthSeed(t, oauthSeedOptions{})}
	a.f = a.ba.Setup(t)
	if out, errOut, code := runCLI(t, "", []string{"DATABASE_URL=" + a.ba.DatabaseURL}, "install-triggers"); code != 0 {
		t.Fatalf("install-triggers: exit %d\n%s%s", code, out, errOut)
	}
	a.up = newUpstream(t)
	a.gw = startGateway(t, a.ba.DatabaseURL, a.up, fmt.Sprintf(`cache {
			ttl 1h
		}
		oauth {
			resource %s
			issuer %s
			allow_unbound_tokens
		}
		%s`, a.f.Resource, a.f.Issuer, extra))
	send(t, a.gw, "/", h("Authorization", "Bearer start_the_listener"))
	a.gw.WaitForLog(t, "listening for revocations", 10*time.Second)
	return a
}

// opaque gets an opaque access token from the provider (client_credentials
// without a resource) for client c.
func (a *attackOAuth) opaque(t *testing.T, c oauthClient) string {
	t.Helper()
	r := a.ba.Do(t, "token-cc", c.args("scope", "mcp:read"))
	tok, _ := r["access_token"].(string)
	if tok == "" || strings.Contains(tok, ".") {
		t.Fatalf("no opaque token: %v", r)
	}
	return tok
}

// openStream opens a ticking event stream through the gateway with a bearer
// token; ticks receives each event, ended is closed when the stream ends.
func openStream(t *testing.T, gw *testenv.Caddy, token string) (ticks <-chan struct{}, ended <-chan struct{}) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, gw.URL+"/sse?ticks", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("opening the stream: %v %v", resp, err)
	}
	tk, end := make(chan struct{}, 1000), make(chan struct{})
	go func() {
		defer close(end)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if sc.Text() == "data: tick" {
				tk <- struct{}{}
			}
		}
	}()
	t.Cleanup(func() { resp.Body.Close() })
	return tk, end
}

func waitForTicks(t *testing.T, ticks, ended <-chan struct{}, n int) {
	t.Helper()
	for range n {
		select {
		case <-ticks:
		case <-ended:
			t.Fatal("the stream ended")
		case <-time.After(5 * time.Second):
			t.Fatal("no tick")
		}
	}
}

// refusedWithin sends requests with the token back to back until the
// gateway refuses it with status and code, or fails after bound.
func refusedWithin(t *testing.T, gw *testenv.Caddy, token string, status int, code string, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		r := send(t, gw, "/", h("Authorization", "Bearer "+token))
		if r.status == status && r.body.Code == code {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d %s, want %d %s within %v", r.status, r.body.Code, status, code, bound)
		}
	}
}

// An MCP session is a long event stream. The gateway promises that an open
// stream ends when its credential is revoked ("streams of a revoked token
// or client end"), and Streams.Revoked matches OAuth token and client
// revocations; but Gateway.endStreams only hands it key, session, user and
// organization revocations, so a stream opened with an OAuth token that
// Better-Auth then revokes, or whose client an admin disables, keeps
// flowing for as long as the client likes, although new requests with
// the token are refused at once.
func TestAttackOAuthStreamOutlivesRevocation(t *testing.T) {
	t.Parallel()
	a := startAttackOAuth(t, "")
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, c oauthClient, tok string)
		code   string
	}{
		{"token revoked by its client (the provider deletes the row)", func(t *testing.T, c oauthClient, tok string) {
			a.ba.Do(t, "revoke", c.args("token", tok))
		}, "INVALID_TOKEN"},
		{"client disabled by an admin", func(t *testing.T, c oauthClient, tok string) {
			a.ba.Do(t, "disable-client", map[string]any{"client_id": c.ID})
		}, "CLIENT_DISABLED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c oauthClient
			remarshal(t, a.ba.Do(t, "create-client", nil), &c)
			tok := a.opaque(t, c)
			ticks, ended := openStream(t, a.gw, tok)
			waitForTicks(t, ticks, ended, 2)
			tc.change(t, c, tok)
			changed := time.Now()
			// The revocation reached the gateway: new requests are refused.
			refusedWithin(t, a.gw, tok, 401, tc.code, time.Second)
			select {
			case <-ended:
				t.Logf("stream ended %v after the change", time.Since(changed).Round(time.Millisecond))
			case <-time.After(2 * time.Second):
				t.Fatalf("the stream of a revoked OAuth token is still open %v after the change", time.Since(changed).Round(time.Millisecond))
			}
		})
	}
}

// With a shared Redis, gateways relay the revocations they hear, so that a
// replica whose own listener is off (no_revocation_listener) "still drops a
// revoked record at once" (README). busMessage.revocations() keeps only
// key, session, user, organization, credential and purge targets, and
// drops the OAuth token, client and resource ones: such a replica keeps
// accepting a revoked OAuth token, or one whose client was disabled, from
// its in-process cache until its TTL (an hour here), while the replica
// that heard the database refuses it at once.
func TestAttackRelayDropsOAuthRevocations(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Require(t, "TEST_REDIS_URL")
	ba := startOAuthSeed(t, oauthSeedOptions{})
	f := ba.Setup(t)
	if out, errOut, code := runCLI(t, "", []string{"DATABASE_URL=" + ba.DatabaseURL}, "install-triggers"); code != 0 {
		t.Fatalf("install-triggers: exit %d\n%s%s", code, out, errOut)
	}
	up := newUpstream(t)
	prefix := "attack-relay-" + strings.ToLower(rand.Text()[:8]) + ":"
	block := fmt.Sprintf(`cache {
			ttl 1h
		}
		oauth {
			resource %s
			issuer %s
			allow_unbound_tokens
		}`, f.Resource, f.Issuer)
	hearing := sharedGateway(t, ba.DatabaseURL, redisURL, prefix, up, block)
	deaf := sharedGateway(t, ba.DatabaseURL, redisURL, prefix, up, "no_revocation_listener\n\t\t"+block)

	for _, tc := range []struct {
		name   string
		change func(t *testing.T, c oauthClient, tok string)
		code   string
	}{
		{"token revoked", func(t *testing.T, c oauthClient, tok string) { ba.Do(t, "revoke", c.args("token", tok)) }, "INVALID_TOKEN"},
		{"client disabled", func(t *testing.T, c oauthClient, tok string) {
			ba.Do(t, "disable-client", map[string]any{"client_id": c.ID})
		}, "CLIENT_DISABLED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c oauthClient
			remarshal(t, ba.Do(t, "create-client", nil), &c)
			r := ba.Do(t, "token-cc", c.args("scope", "mcp:read"))
			tok, _ := r["access_token"].(string)
			if tok == "" {
				t.Fatalf("no token: %v", r)
			}
			for _, gw := range []*testenv.Caddy{hearing, deaf} {
				if r := send(t, gw, "/", h("Authorization", "Bearer "+tok)); r.status != 200 {
					t.Fatalf("before: %d %s", r.status, r.raw)
				}
			}
			tc.change(t, c, tok)
			refusedWithin(t, hearing, tok, 401, tc.code, time.Second)
			// The hearing gateway has relayed what it heard by now.
			refusedWithin(t, deaf, tok, 401, tc.code, 2*time.Second)
		})
	}
}

// forgedKidJWT is a compact JWS shaped like an access token, naming kid as
// its key, with a signature that cannot verify: anyone can make one.
func forgedKidJWT(kid string) string {
	hdr, _ := json.Marshal(map[string]string{"alg": "EdDSA", "typ": "at+jwt", "kid": kid})
	return base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x"}`)) +
		"." + base64.RawURLEncoding.EncodeToString(make([]byte, 64))
}

// The jwks table is read one kid at a time through oauth.CachedKeys, which
// bounds the lookups of kids it holds no key for at 10 a second and
// answers a kid over that bound as not found (oauth/cachedkeys.go lookup,
// errOverRate wraps ErrKeyNotFound). Whoever sends ten made-up kids a
// second, unauthenticated, keeps the bucket empty, and then the gateway
// can never learn a genuine key it has not cached yet (after a start,
// after Better-Auth rotates its keys, after an eviction): every genuine
// JWT signed with it is refused 401 INVALID_TOKEN (which tells MCP
// clients to throw the token away and re-authorize), and the refusal is
// then cached as an unknown credential for the cache's negative TTL.
func TestAttackUnknownKidFloodLocksOutGenuineJWTs(t *testing.T) {
	t.Parallel()
	ba := startOAuthSeed(t, oauthSeedOptions{})
	f := ba.Setup(t)
	up := newUpstream(t)
	gw := startGateway(t, ba.DatabaseURL, up, fmt.Sprintf(`oauth {
			resource %s
			issuer %s
		}`, f.Resource, f.Issuer))
	r := ba.Do(t, "token-cc", f.Client.args("scope", "mcp:read", "resource", f.Resource))
	genuine, _ := r["access_token"].(string)
	if strings.Count(genuine, ".") != 2 {
		t.Fatalf("no JWT: %v", r)
	}

	// The flood: two clients sending tokens with made-up kids back to
	// back, each request a 401, as long as the test runs (ten a second
	// keep the bucket empty; back to back makes the test deterministic).
	stop := make(chan struct{})
	var sent atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodGet, gw.URL+"/", nil)
				req.Header.Set("Authorization", "Bearer "+forgedKidJWT(rand.Text()))
				if resp, err := client.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					sent.Add(1)
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	for sent.Load() < 50 {
		runtime.Gosched()
	}

	// The genuine token, issued by Better-Auth for this resource, must get
	// through while the flood goes on.
	var seen []string
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		r := send(t, gw, "/", h("Authorization", "Bearer "+genuine))
		if r.status == 200 {
			return
		}
		if len(seen) == 0 || seen[len(seen)-1] != fmt.Sprint(r.status, " ", r.body.Code) {
			seen = append(seen, fmt.Sprint(r.status, " ", r.body.Code))
		}
	}
	t.Fatalf("a genuine JWT access token was refused for 2s while %d forged ones were sent: %v", sent.Load(), seen)
}

// Credentials PostgreSQL cannot hold as text (a NUL byte, bad UTF-8) are
// refused before any query, "or the query would fail as if the database
// were down" (betterauth.bounded). A JWT's kid is not: the header's
// "kid":"\u0000" decodes to a NUL byte that goes to the jwks query as its
// parameter (pgstore/jwks.go), PostgreSQL refuses it, and the gateway
// answers an unauthenticated forgery 503 BACKEND_UNAVAILABLE, reporting its
// database as failing (and never caching the answer, so each costs a
// query), instead of 401.
func TestAttackNULKidIsABackendFailure(t *testing.T) {
	t.Parallel()
	ba := startOAuthSeed(t, oauthSeedOptions{})
	f := ba.Setup(t)
	up := newUpstream(t)
	gw := startGateway(t, ba.DatabaseURL, up, fmt.Sprintf(`oauth {
			resource %s
			issuer %s
		}`, f.Resource, f.Issuer))
	for _, kid := range []string{"\x00", "kid\x00' OR 1=1 --"} {
		r := send(t, gw, "/", h("Authorization", "Bearer "+forgedKidJWT(kid)))
		if r.status != 401 || r.body.Code != "INVALID_TOKEN" {
			t.Errorf("kid %q: got %d %s, want 401 INVALID_TOKEN", kid, r.status, r.raw)
		}
	}
}

// X-Auth-Scopes is the granted scopes joined with spaces, and, like every
// identity header, cut at MaxHeaderValue (1024) bytes at a character
// boundary (betterauth.EncodeHeaderValue), not at a scope boundary. A
// client of a provider with many scopes asks for them in an order of its
// choosing (Better-Auth keeps it), so that the cut falls inside a scope
// whose beginning is another, broader one: files:write-own arrives as
// files:write, a scope the token was never granted, in the header the
// upstream authorizes with.
func TestAttackScopesHeaderCutMidScope(t *testing.T) {
	t.Parallel()
	var fillers []string
	for i := range 72 {
		fillers = append(fillers, fmt.Sprintf("mcp:tool-%04d", i)) // 13 bytes and a space
	}
	fillers = append(fillers, "ab:c") // 1008 + 5 = 1013 bytes, then "files:write" ends at 1024
	extra := append(slices.Clone(fillers), "files:write-own")
	ba := startOAuthSeed(t, oauthSeedOptions{Env: []string{"EXTRA_SCOPES=" + strings.Join(extra, " ")}})
	f := ba.Setup(t)
	up := newUpstream(t)
	gw := startGateway(t, ba.DatabaseURL, up, fmt.Sprintf(`oauth {
			resource %s
			issuer %s
			allow_unbound_tokens
		}`, f.Resource, f.Issuer))
	asked := strings.Join(extra, " ")
	r := ba.Do(t, "token-cc", f.Client.args("scope", asked))
	tok, _ := r["access_token"].(string)
	if tok == "" || r["scope"] != asked {
		t.Fatalf("token: %v", r)
	}
	res := send(t, gw, "/", h("Authorization", "Bearer "+tok))
	got := up.headers(res.id)
	if res.status != 200 || got == nil {
		t.Fatalf("%d %s", res.status, res.raw)
	}
	for _, s := range strings.Fields(got.Get("X-Auth-Scopes")) {
		if !slices.Contains(extra, s) {
			t.Errorf("the upstream is told the token holds %q, which it was never granted (X-Auth-Scopes ends %q)",
				s, got.Get("X-Auth-Scopes")[len(got.Get("X-Auth-Scopes"))-30:])
		}
	}
}

// Better-Auth adds its userinfo endpoint, <baseURL><basePath>/oauth2/userinfo,
// to the audience of a JWT access token granted openid, and never looks it
// up as a resource. The gateway drops it from the audiences it checks only
// when it equals <iss>/oauth2/userinfo (oauth/store.go resources), which
// holds only while the jwt plugin's jwt.issuer is left at its default. With
// jwt.issuer set (here to the app's origin, a common choice), every user
// JWT granted openid, issued by Better-Auth for this very resource and
// active by its own introspection, is refused 401 INVALID_TOKEN: the
// userinfo URL is taken for a resource with no oauthResource row.
func TestAttackCustomJWTIssuerRefusesOpenIDTokens(t *testing.T) {
	t.Parallel()
	ba := startOAuthSeed(t, oauthSeedOptions{Env: []string{"JWT_ISSUER=http://localhost:3000"}})
	f := ba.Setup(t)
	up := newUpstream(t)
	gw := startGateway(t, ba.DatabaseURL, up, fmt.Sprintf(`oauth {
			resource %s
			issuer %s
		}`, f.Resource, f.Issuer))
	r := ba.Do(t, "token-code", f.Client.args("scope", "openid mcp:read", "resource", f.Resource))
	tok, _ := r["access_token"].(string)
	_, claims := jwtParts(t, tok)
	if claims["iss"] != "http://localhost:3000" || fmt.Sprint(claims["aud"]) != fmt.Sprintf("[%s %s/oauth2/userinfo]", f.Resource, f.BaseURL+"/api/auth") {
		t.Fatalf("claims %v", claims)
	}
	if in := ba.Do(t, "introspect", f.Client.args("token", tok)); fmt.Sprint(in["body"].(map[string]any)["active"]) != "true" {
		t.Fatalf("Better-Auth's introspection: %v", in)
	}
	res := send(t, gw, "/", h("Authorization", "Bearer "+tok))
	if res.status != 200 {
		t.Fatalf("a JWT Better-Auth issued for this resource and holds active: %d %s", res.status, res.raw)
	}
}

// A client linked to several resources may ask for a token for all of them
// (RFC 8707 repeats resource); Better-Auth issues one JWT whose aud lists
// them all and its validation accepts up to 64 audiences. oauth.Store
// refuses any token with more than schema.MaxGrantResources (4) audiences
// as unknown ("more audiences than Better-Auth itself issues", which it
// does): a JWT issued for this resource and four others is refused 401
// INVALID_TOKEN although Better-Auth's introspection holds it active.
func TestAttackFiveAudiencesRefused(t *testing.T) {
	t.Parallel()
	ba := startOAuthSeed(t, oauthSeedOptions{})
	f := ba.Setup(t)
	resources := []any{f.Resource}
	for i := range 4 {
		id := fmt.Sprintf("http://127.0.0.1:8080/tool-%d", i)
		ba.Do(t, "create-resource", map[string]any{"identifier": id, "client_id": f.Client.ID})
		resources = append(resources, id)
	}
	up := newUpstream(t)
	gw := startGateway(t, ba.DatabaseURL, up, fmt.Sprintf(`oauth {
			resource %s
			issuer %s
		}`, f.Resource, f.Issuer))
	r := ba.Do(t, "token-cc", f.Client.args("scope", "mcp:read", "resource", resources))
	tok, _ := r["access_token"].(string)
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("no JWT: %v", r)
	}
	if _, claims := jwtParts(t, tok); len(claims["aud"].([]any)) != 5 {
		t.Fatalf("aud %v", claims["aud"])
	}
	if in := ba.Do(t, "introspect", f.Client.args("token", tok)); fmt.Sprint(in["body"].(map[string]any)["active"]) != "true" {
		t.Fatalf("Better-Auth's introspection: %v", in)
	}
	if res := send(t, gw, "/", h("Authorization", "Bearer "+tok)); res.status != 200 {
		t.Fatalf("a JWT Better-Auth issued for this resource and four others: %d %s", res.status, res.raw)
	}
}

// The shared Redis tier names an entry by its lookup kind reduced to one
// letter, "?kse"[kind%4] (cache/remote.go keyFor), which made sense while
// kinds were 1, 2 and 3. KindOAuth is 8: a raw bearer value looked up as
// an API key or an OAuth token (KindAPIKey|KindOAuth, 9, with
// require_signature) lands on "k", the letter of x-api-key lookups
// (KindAPIKey, 1). Once an opaque OAuth token has been used as a bearer
// token, the same token sent in X-Api-Key is served the OAuth record from
// Redis and let through as an OAuth token, where Better-Auth's api-key
// plugin, and the gateway itself without Redis, say INVALID_API_KEY.
// Whatever a lookup of one kind wrote is read by a lookup of the other.
func TestAttackSharedTierKindLetterCollision(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Require(t, "TEST_REDIS_URL")
	ba := startOAuthSeed(t, oauthSeedOptions{})
	f := ba.Setup(t)
	up := newUpstream(t)
	prefix := "attack-kind-" + strings.ToLower(rand.Text()[:8]) + ":"
	gw := sharedGateway(t, ba.DatabaseURL, redisURL, prefix, up, fmt.Sprintf(`require_signature
		oauth {
			resource %s
			issuer %s
			allow_unbound_tokens
		}`, f.Resource, f.Issuer))
	// Entries written within cache.ClockSkew of the gateway's start are not
	// read; share only after that window.
	<-time.After(cache.ClockSkew)
	opaque := func() string {
		r := ba.Do(t, "token-cc", f.Client.args("scope", "mcp:read"))
		tok, _ := r["access_token"].(string)
		if tok == "" {
			t.Fatalf("no token: %v", r)
		}
		return tok
	}

	// An OAuth token is no API key: refused in X-Api-Key.
	if r := send(t, gw, "/", h("X-Api-Key", opaque())); r.status != 401 || r.body.Code != "INVALID_API_KEY" {
		t.Fatalf("an OAuth token in X-Api-Key: %d %s", r.status, r.raw)
	}
	// Unless it was used as a bearer token first.
	tok := opaque()
	if r := send(t, gw, "/", h("Authorization", "Bearer "+tok)); r.status != 200 {
		t.Fatalf("bearer: %d %s", r.status, r.raw)
	}
	r := send(t, gw, "/", h("X-Api-Key", tok))
	if r.status != 401 || r.body.Code != "INVALID_API_KEY" {
		t.Fatalf("the same OAuth token in X-Api-Key after a bearer use: %d %s, upstream saw X-Auth-Method %q",
			r.status, r.raw, up.headers(r.id).Get("X-Auth-Method"))
	}
}

// The same letter collision across routes. A site protects its MCP route
// with an oauth block and its other routes without one (they were never
// meant to take OAuth tokens), all on one Redis with one prefix, as the
// README advises for gateways reading one database. A route without an
// oauth block looks raw bearer values up as KindEither (3, "e"); the MCP
// route as KindEither|KindOAuth (11, "e" too). Once an opaque OAuth token
// (of any client, granted any scope, for any resource) has been used on
// the MCP route, the other route reads its OAuth record from Redis and
// lets it through with the user's identity, where it refuses it without
// Redis: no audience, no scope and no opt-in stand in the way, since a
// route without an oauth block has no audience policy at all.
func TestAttackRouteWithoutOAuthBlockAcceptsOAuthTokensViaRedis(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Require(t, "TEST_REDIS_URL")
	ba := startOAuthSeed(t, oauthSeedOptions{})
	f := ba.Setup(t)
	up := newUpstream(t)
	prefix := "attack-routes-" + strings.ToLower(rand.Text()[:8]) + ":"
	block := func(extra string) string {
		return fmt.Sprintf(`better_auth {
			database {env.DATABASE_URL}
			secret {env.BETTER_AUTH_SECRET}
			redis {env.CACHE_REDIS_URL} {
				prefix %s
				timeout 500ms
			}
			%s
		}
		reverse_proxy %s`, prefix, extra, up.addr())
	}
	gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	handle /mcp* {
		%s
	}
	handle {
		%s
	}`, block(fmt.Sprintf(`oauth {
				resource %s
				issuer %s
				allow_unbound_tokens
			}`, f.Resource, f.Issuer)), block("")),
		"DATABASE_URL="+ba.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret, "CACHE_REDIS_URL="+redisURL)
	for _, path := range []string{"/mcp", "/app"} {
		send(t, gw, path, h("X-Api-Key", "ba_start_the_watchers"))
	}
	gw.WaitForLogCount(t, "listening for revocations", 2, 10*time.Second)
	gw.WaitForLogCount(t, "listening for invalidations from other gateways", 2, 10*time.Second)
	<-time.After(cache.ClockSkew)
	opaque := func() string {
		r := ba.Do(t, "token-code", f.Client.args("scope", "mcp:read"))
		tok, _ := r["access_token"].(string)
		if tok == "" || strings.Contains(tok, ".") {
			t.Fatalf("no opaque token: %v", r)
		}
		return tok
	}

	// The route without an oauth block refuses OAuth tokens.
	if r := send(t, gw, "/app", h("Authorization", "Bearer "+opaque())); r.status != 401 {
		t.Fatalf("an OAuth token on the route without an oauth block: %d %s", r.status, r.raw)
	}
	// Unless the token was used on the MCP route first.
	tok := opaque()
	if r := send(t, gw, "/mcp", h("Authorization", "Bearer "+tok)); r.status != 200 {
		t.Fatalf("/mcp: %d %s", r.status, r.raw)
	}
	r := send(t, gw, "/app", h("Authorization", "Bearer "+tok))
	if got := up.headers(r.id); r.status != 401 || got != nil {
		t.Fatalf("the same OAuth token on the route without an oauth block, after a use on /mcp: %d %s; upstream saw method %q, user %q",
			r.status, r.raw, got.Get("X-Auth-Method"), got.Get("X-Auth-User-Id"))
	}
}

// A stream ends on its own when its credential expires: a session's at its
// expiresAt. An OAuth user token is valid only while the session it was
// issued in is (Better-Auth's validateOpaqueAccessToken, and the gateway
// for every new request: TOKEN_REVOKED), but its stream's deadline is the
// token's own expiresAt (Decision.ExpiresAt, gateway/streams.go Watch):
// when the session expires first, the stream of its token goes on until
// the token expires (an hour by default), refused to any new request.
func TestAttackOAuthStreamOutlivesItsSession(t *testing.T) {
	t.Parallel()
	a := startAttackOAuth(t, "")
	bob := a.f.Users.Bob
	r := a.ba.Do(t, "token-code", a.f.Client.args("scope", "mcp:read", "session", bob.Signed))
	tok, _ := r["access_token"].(string)
	if tok == "" || strings.Contains(tok, ".") {
		t.Fatalf("no opaque token: %v", r)
	}
	testenv.Exec(t, a.ba.DatabaseURL, `UPDATE session SET "expiresAt" = now() + interval '1500 milliseconds' WHERE id = $1`, bob.SessionID)
	ticks, ended := openStream(t, a.gw, tok)
	waitForTicks(t, ticks, ended, 2)
	refusedWithin(t, a.gw, tok, 401, "TOKEN_REVOKED", 3*time.Second) // the session has expired
	expired := time.Now()
	select {
	case <-ended:
	case <-time.After(2 * time.Second):
		t.Fatalf("the stream of a token whose session expired is still open %v later", time.Since(expired).Round(time.Millisecond))
	}
}

// Withstood: the legacy mcp() plugin keeps access and refresh tokens in
// plain text in one row. Its access token is compared exactly (no
// case-insensitive collation, as MySQL's would give), its refresh token
// from the same row is no access token, and the modern provider's stored
// form (the token's hash) finds nothing: on PostgreSQL and SQLite.
func TestAttackLegacyPlaintextLookupsAreExact(t *testing.T) {
	t.Parallel()
	for _, sqlite := range []bool{false, true} {
		t.Run(map[bool]string{false: "postgres", true: "sqlite"}[sqlite], func(t *testing.T) {
			t.Parallel()
			ba := startOAuthSeed(t, oauthSeedOptions{Legacy: true, SQLite: sqlite})
			fx := ba.Do(t, "setup", nil)
			var c oauthClient
			remarshal(t, fx["client"], &c)
			up := newUpstream(t)
			gw := startGateway(t, ba.DatabaseURL, up, `oauth {
			resource http://127.0.0.1:8080/mcp
			issuer http://localhost:3000/api/auth
			allow_unbound_tokens
		}`)
			r := ba.Do(t, "token-code", c.args("scope", "openid offline_access"))
			access, _ := r["access_token"].(string)
			refresh, _ := r["refresh_token"].(string)
			if access == "" || refresh == "" {
				t.Fatalf("tokens: %v", r)
			}
			flipped := []byte(access)
			for i, ch := range flipped {
				if 'a' <= ch && ch <= 'z' {
					flipped[i] = ch - 'a' + 'A'
					break
				}
			}
			for name, tok := range map[string]string{
				"the access token with one letter's case flipped":  string(flipped),
				"the refresh token of the same row":                refresh,
				"the access token's hash (the modern stored form)": storedHash(access),
			} {
				if res := send(t, gw, "/", h("Authorization", "Bearer "+tok)); res.status != 401 || up.headers(res.id) != nil {
					t.Errorf("%s: %d %s", name, res.status, res.raw)
				}
			}
			if res := send(t, gw, "/", h("Authorization", "Bearer "+access)); res.status != 200 {
				t.Fatalf("the access token itself: %d %s", res.status, res.raw)
			}
		})
	}
}
