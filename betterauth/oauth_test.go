package betterauth

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

const resourceURL = "https://mcp.example.com/mcp"

// oauthToken is a valid user token issued for resourceURL.
func oauthToken() *OAuthToken {
	return &OAuthToken{ID: "t1", ClientID: "c1", Client: &OAuthClient{ClientID: "c1"}, UserID: "u1", User: alice(),
		SessionID: "s1", SessionExpiresAt: t0.Add(time.Hour), Scopes: []string{"mcp:read", "mcp:write"},
		Resources: []string{resourceURL}, ExpiresAt: t0.Add(time.Hour)}
}

func TestVerifierOAuthTokens(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		edit   func(*OAuthToken)
		policy OAuthPolicy
		want   Reason
	}{
		{"valid", func(*OAuthToken) {}, OAuthPolicy{Audience: resourceURL}, Allowed},
		{"machine to machine", func(t *OAuthToken) { t.UserID, t.User, t.SessionID = "", nil, "" }, OAuthPolicy{}, Allowed},
		{"expired", func(t *OAuthToken) { t.ExpiresAt = t0.Add(-time.Second) }, OAuthPolicy{}, TokenExpired},
		{"no expiry is expired", func(t *OAuthToken) { t.ExpiresAt = time.Time{} }, OAuthPolicy{}, TokenExpired},
		{"revoked", func(t *OAuthToken) { t.Revoked = true }, OAuthPolicy{}, TokenRevoked},
		{"client gone", func(t *OAuthToken) { t.Client = nil }, OAuthPolicy{}, InvalidToken},
		{"client disabled", func(t *OAuthToken) { t.Client.Disabled = true }, OAuthPolicy{}, ClientDisabled},
		{"session gone", func(t *OAuthToken) { t.SessionExpiresAt = time.Time{} }, OAuthPolicy{}, TokenRevoked},
		{"session expired", func(t *OAuthToken) { t.SessionExpiresAt = t0.Add(-time.Second) }, OAuthPolicy{}, TokenRevoked},
		{"resource row gone", func(t *OAuthToken) { t.ResourceMissing = true }, OAuthPolicy{}, InvalidToken},
		{"user row gone", func(t *OAuthToken) { t.User = nil }, OAuthPolicy{}, InvalidToken},
		{"bound to a DPoP key", func(t *OAuthToken) { t.Bound = true }, OAuthPolicy{}, InvalidToken},
		{"banned user", func(t *OAuthToken) { t.User.Banned = true }, OAuthPolicy{}, UserBanned},
		{"issued for another resource", func(t *OAuthToken) { t.Resources = []string{"https://other.example.com/mcp"} },
			OAuthPolicy{Audience: resourceURL}, WrongAudience},
		{"unbound", func(t *OAuthToken) { t.Resources = nil }, OAuthPolicy{Audience: resourceURL}, WrongAudience},
		{"unbound, allowed", func(t *OAuthToken) { t.Resources = nil }, OAuthPolicy{Audience: resourceURL, AllowUnbound: true}, Allowed},
		{"issued for another resource, unbound allowed", func(t *OAuthToken) { t.Resources = []string{"https://other.example.com/mcp"} },
			OAuthPolicy{Audience: resourceURL, AllowUnbound: true}, WrongAudience},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := oauthToken()
			c.edit(tok)
			const secret = "AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEf"
			st := &fakeStore{tokens: map[string]*OAuthToken{NewLookup(KindOAuth, secret).KeyHash(): tok}}
			v, err := NewVerifier(Options{Store: st, Now: func() time.Time { return t0 }, OAuth: c.policy})
			if err != nil {
				t.Fatal(err)
			}
			d, err := v.Verify(context.Background(), bearerCred(KindEither|KindOAuth, secret))
			if err != nil || d.Reason != c.want {
				t.Fatalf("got %v, %v; want %v", d.Reason, err, c.want)
			}
			if d.Allowed() && (d.Method != MethodOAuth || d.Client != "c1" || d.CredentialID != "t1") {
				t.Fatalf("allowed decision %+v", d)
			}
		})
	}
}

func TestOAuthHeaders(t *testing.T) {
	t.Parallel()
	tok := oauthToken()
	st := &fakeStore{tokens: map[string]*OAuthToken{NewLookup(KindOAuth, "x").KeyHash(): tok}}
	v, _ := NewVerifier(Options{Store: st, Now: func() time.Time { return t0 }})
	d, _ := v.Verify(context.Background(), bearerCred(KindOAuth, "x"))
	got := d.AppendHeaders(nil)
	want := []Header{{HeaderUserID, "u1"}, {HeaderUserEmail, "alice@example.com"}, {HeaderUserName, "Alice"}, {HeaderUserRole, "user"},
		{HeaderMethod, "oauth"}, {HeaderTokenID, "t1"}, {HeaderClientID, "c1"}, {HeaderScopes, "mcp:read mcp:write"}}
	if !slices.Equal(got, want) || len(got) > MaxHeaders {
		t.Fatalf("user token: %v", got)
	}
	// A machine-to-machine token names its client and no user.
	tok.UserID, tok.User, tok.Scopes = "", nil, nil
	d, _ = v.Verify(context.Background(), bearerCred(KindOAuth, "x"))
	got = d.AppendHeaders(nil)
	want = []Header{{HeaderMethod, "oauth"}, {HeaderTokenID, "t1"}, {HeaderClientID, "c1"}}
	if !slices.Equal(got, want) {
		t.Fatalf("client token: %v", got)
	}
}

func TestExtractOAuthTokens(t *testing.T) {
	t.Parallel()
	raw := "AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEf"
	cases := []struct {
		cfg       ExtractorConfig
		bearer    string
		kind      Kind
		wantValue string
	}{
		{ExtractorConfig{}, raw, KindEither, raw},
		{ExtractorConfig{OAuth: true}, raw, KindEither | KindOAuth, raw},
		{ExtractorConfig{OAuth: true, APIKeyPrefixes: []string{"ba_"}}, raw, KindSession | KindOAuth, raw},
		{ExtractorConfig{OAuth: true, RequireSignature: true}, raw, KindAPIKey | KindOAuth, raw},
		{ExtractorConfig{OAuth: true, OAuthPrefix: "mcp_at_"}, "mcp_at_" + raw, KindOAuth, raw},
		{ExtractorConfig{OAuth: true, OAuthPrefix: "mcp_at_"}, "ba_" + raw, KindAPIKey, "ba_" + raw},
		// Without the oauth block, a prefix means nothing.
		{ExtractorConfig{OAuthPrefix: "mcp_at_"}, "mcp_at_" + raw, KindAPIKey, "mcp_at_" + raw},
	}
	for _, c := range cases {
		got := NewExtractor(c.cfg).Extract(HTTPHeader{"Authorization": {"Bearer " + c.bearer}})
		if got.Kind != c.kind || got.Value != c.wantValue {
			t.Errorf("%+v %q: got kind %d value %q, want %d %q", c.cfg, c.bearer, got.Kind, got.Value, c.kind, c.wantValue)
		}
	}
}

func TestInsufficientScope(t *testing.T) {
	t.Parallel()
	tok := oauthToken()
	st := &fakeStore{tokens: map[string]*OAuthToken{NewLookup(KindOAuth, "x").KeyHash(): tok},
		keys: map[string]*APIKey{NewLookup(KindAPIKey, "k").KeyHash(): {ID: "k1", Enabled: true, User: alice(), ConfigID: "default"}}}
	v, _ := NewVerifier(Options{Store: st, Now: func() time.Time { return t0 }})
	g := NewGate(GateConfig{Verifier: v, Rules: Rules{Scopes: []string{"mcp:read", "mcp:admin"}},
		ResourceMetadata: "https://mcp.example.com/.well-known/oauth-protected-resource/mcp", Scope: "mcp:read",
		Extract: ExtractorConfig{OAuth: true, OAuthPrefix: "at_"}})
	res := g.Decide(context.Background(), HTTPHeader{"Authorization": {"Bearer at_x"}}, netip.Addr{})
	if res.Status != http.StatusForbidden || res.Decision.Reason != InsufficientScope {
		t.Fatalf("token short of a scope: %d %v", res.Status, res.Decision.Reason)
	}
	challenge := headerValue(res.Headers, "WWW-Authenticate")
	// The scopes held come first, then those the route needs: a client
	// asks for exactly those named, and keeps what it had.
	for _, want := range []string{`error="insufficient_scope"`, `scope="mcp:read mcp:write mcp:admin"`,
		`resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"`} {
		if !strings.Contains(challenge, want) {
			t.Errorf("challenge %q lacks %s", challenge, want)
		}
	}
	// A held scope that could not be quoted is left out.
	tok.Scopes = []string{"mcp:read", `x" , error="other`}
	res = g.Decide(context.Background(), HTTPHeader{"Authorization": {"Bearer at_x"}}, netip.Addr{})
	if c := headerValue(res.Headers, "WWW-Authenticate"); !strings.Contains(c, `scope="mcp:read mcp:admin",`) || strings.Contains(c, "other") {
		t.Errorf("challenge %q", c)
	}
	tok.Scopes = []string{"mcp:read", "mcp:write"}
	// An API key cannot step up: a plain 403.
	res = g.Decide(context.Background(), HTTPHeader{"X-Api-Key": {"k"}}, netip.Addr{})
	if res.Status != http.StatusForbidden || headerValue(res.Headers, "WWW-Authenticate") != "" {
		t.Fatalf("api key: %d %v", res.Status, res.Headers)
	}
	// Granted every scope, the token passes.
	tok.Scopes = append(tok.Scopes, "mcp:admin")
	if res = g.Decide(context.Background(), HTTPHeader{"Authorization": {"Bearer at_x"}}, netip.Addr{}); !res.Allowed() {
		t.Fatalf("token with every scope: %v", res.Decision.Reason)
	}
}

func headerValue(hs []Header, name string) string {
	for _, h := range hs {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}
