package integration

import (
	"bufio"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// oauthSeed is real Better-Auth with its OAuth provider
// (@better-auth/oauth-provider), kept running: seed/oauth.mjs shell. Each
// command is one JSON line {"op": ..., args...} and gets one JSON line back;
// seed/oauth.mjs documents the commands. Tests use it to get access tokens
// that Better-Auth itself issued, and to change their state the way the app
// would (revocation, sign-out, disabled clients, deleted resources, time).
type oauthSeed struct {
	DatabaseURL string // the app's database (a PostgreSQL URL, sqlite://<path> or mysql://)

	mu    sync.Mutex
	in    io.WriteCloser
	lines chan string
}

// oauthSeedOptions choose the app the shell runs.
type oauthSeedOptions struct {
	// SQLite puts the app's data in a new SQLite file; the default is a new
	// PostgreSQL database on TEST_DATABASE_URL.
	SQLite bool
	// MySQL puts it in a new database on TEST_MYSQL_URL (MariaDB).
	MySQL bool
	// DatabaseURL uses this database instead of a new one (for example a
	// second shell on the same app).
	DatabaseURL string
	// BaseURL is the app's baseURL (default http://localhost:3000); the
	// issuer is BaseURL + "/api/auth". Set it to http://127.0.0.1:<port>
	// before the "serve" command to serve the app there.
	BaseURL string
	// Resource is the protected resource (RFC 8707 audience), default
	// http://127.0.0.1:8080/mcp.
	Resource string
	// Env adds variables (OAUTH_DEBUG=1 keeps Better-Auth's logger on).
	Env []string
	// Legacy runs seed/oauth-legacy.mjs instead: better-auth 1.4.22's mcp()
	// plugin, whose tokens are stored in plaintext (its own commands; Setup
	// does not apply, Resource neither).
	Legacy bool
}

// startOAuthSeed starts `node oauth.mjs shell` (or oauth-legacy.mjs) on a
// fresh database (unless
// opts.DatabaseURL names one); it ends when the test does. Run the "setup"
// command (or Setup) first on a fresh database.
func startOAuthSeed(t testing.TB, opts oauthSeedOptions) *oauthSeed {
	t.Helper()
	dir := filepath.Join(testenv.RepoRoot(), "integration", "seed")
	script, pkg := "oauth.mjs", filepath.Join("@better-auth", "oauth-provider")
	if opts.Legacy {
		script, pkg = "oauth-legacy.mjs", "better-auth-legacy"
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg)); err != nil {
		if os.Getenv("BETTERAUTH_INTEGRATION") == "1" {
			t.Fatalf("integration/seed/node_modules has no %s; run scripts/test.sh", pkg)
		}
		t.Skipf("integration/seed/node_modules has no %s; run scripts/test.sh", pkg)
	}
	db := opts.DatabaseURL
	switch {
	case db != "":
	case opts.SQLite:
		db = "sqlite://" + filepath.Join(t.TempDir(), "app.db")
	case opts.MySQL:
		db = testenv.NewMySQLDatabase(t)
	default:
		db = testenv.NewDatabase(t)
	}
	env := []string{"DATABASE_URL=" + db, "BETTER_AUTH_SECRET=" + testenv.Secret}
	if opts.BaseURL != "" {
		env = append(env, "BASE_URL="+opts.BaseURL)
	}
	if opts.Resource != "" {
		env = append(env, "RESOURCE="+opts.Resource)
	}
	cmd := exec.Command("node", script, "shell")
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), env...), opts.Env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &oauthSeed{DatabaseURL: db, in: in, lines: make(chan string)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	t.Cleanup(func() {
		in.Close() // the shell ends, and its servers with it
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return s
}

// Try runs one command and returns its answer, {"error": ...} included.
func (s *oauthSeed) Try(t testing.TB, op string, args map[string]any) map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	c := map[string]any{}
	for k, v := range args {
		c[k] = v
	}
	c["op"] = op
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.in.Write(append(b, '\n')); err != nil {
		t.Fatalf("oauth.mjs %s: %v", op, err)
	}
	select {
	case line, ok := <-s.lines:
		if !ok {
			t.Fatalf("oauth.mjs %s: the shell ended", b)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("oauth.mjs %s: %v: %s", b, err, line)
		}
		return m
	case <-time.After(2 * time.Minute):
		t.Fatalf("oauth.mjs %s: no answer", b)
		return nil
	}
}

// Do runs one command and fails the test if it answers an error.
func (s *oauthSeed) Do(t testing.TB, op string, args map[string]any) map[string]any {
	t.Helper()
	m := s.Try(t, op, args)
	if e, ok := m["error"]; ok {
		t.Fatalf("oauth.mjs %s %v: %v (%v)", op, args, e, m["error_description"])
	}
	return m
}

// oauthUser is a user setup signed up, with its first session.
type oauthUser struct {
	ID        string `json:"id"`
	Email     string `json:"email"`
	Signed    string `json:"signed"` // the set-auth-token value, "<token>.<signature>"
	Token     string `json:"token"`
	SessionID string `json:"sessionId"`
}

// oauthClient is a client the provider registered.
type oauthClient struct {
	ID         string   `json:"client_id"`
	Secret     string   `json:"client_secret"` // empty for a public client
	SecretHash string   `json:"client_secret_hash"`
	Resources  []string `json:"resources"`
}

// args are the client's credentials as the token commands take them, plus kv.
func (c oauthClient) args(kv ...any) map[string]any {
	m := map[string]any{"client_id": c.ID}
	if c.Secret != "" {
		m["client_secret"] = c.Secret
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// oauthFixture is what setup answers.
type oauthFixture struct {
	Users struct {
		Alice, Bob oauthUser
	} `json:"users"`
	Client   oauthClient `json:"client"`
	Resource string      `json:"resource"`
	Issuer   string      `json:"issuer"`
	BaseURL  string      `json:"baseURL"`
	JWKSURL  string      `json:"jwksURL"`
	Database string      `json:"database"`
}

// Setup runs "setup": the schema, Alice and Bob, the resource and a
// confidential client linked to it.
func (s *oauthSeed) Setup(t testing.TB) *oauthFixture {
	t.Helper()
	var f oauthFixture
	remarshal(t, s.Do(t, "setup", nil), &f)
	return &f
}

// remarshal converts a shell answer into a typed value.
func remarshal(t testing.TB, from, to any) {
	t.Helper()
	b, err := json.Marshal(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, to); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}

// storedHash is how the provider stores opaque tokens, refresh tokens,
// codes and client secrets: base64url without padding of SHA-256.
func storedHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// jwtParts decodes a JWT's header and payload (without verifying it).
func jwtParts(t testing.TB, tok string) (header, payload map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	for i, to := range []*map[string]any{&header, &payload} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("JWT part %d: %v", i, err)
		}
		if err := json.Unmarshal(b, to); err != nil {
			t.Fatalf("JWT part %d: %v", i, err)
		}
	}
	return header, payload
}

// jsonStrings reads a string[] column as stored: a JSON array (jsonb on
// PostgreSQL) or the JSON text of one (SQLite).
func jsonStrings(t testing.TB, v any) []string {
	t.Helper()
	if s, ok := v.(string); ok {
		var out []string
		if err := json.Unmarshal([]byte(s), &out); err != nil {
			t.Fatalf("not a JSON list: %q", s)
		}
		return out
	}
	var out []string
	remarshal(t, v, &out)
	return out
}

var opaqueToken = regexp.MustCompile(`^[A-Za-z]{32}$`)

// The driver of real Better-Auth's OAuth provider works, on PostgreSQL,
// SQLite and MySQL (MariaDB): the tokens it gets are the provider's (opaque ones stored as
// their hash, JWTs signed with a key of the jwks table), and the provider
// introspects, revokes and ends them as the compatibility notes say.
func TestOAuthSeed(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"postgres", "sqlite", "mysql"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ba := startOAuthSeed(t, oauthSeedOptions{SQLite: name == "sqlite", MySQL: name == "mysql"})
			f := ba.Setup(t)
			alice, c := f.Users.Alice, f.Client
			if f.Database != name || f.Issuer != "http://localhost:3000/api/auth" || f.Resource != "http://127.0.0.1:8080/mcp" ||
				!opaqueToken.MatchString(c.ID) || !opaqueToken.MatchString(c.Secret) || !slices.Equal(c.Resources, []string{f.Resource}) {
				t.Fatalf("setup: %+v", f)
			}
			if row := ba.Do(t, "client-row", map[string]any{"client_id": c.ID})["row"].(map[string]any); row["clientSecret"] != storedHash(c.Secret) || row["clientSecret"] != c.SecretHash {
				t.Errorf("client secret stored as %v, not its hash", row["clientSecret"])
			}

			// The signing keys, as stored and as served.
			jwks := ba.Do(t, "jwks", nil)
			keys := map[string]ed25519.PublicKey{}
			verify := func(t *testing.T, tok string) map[string]any {
				t.Helper()
				h, p := jwtParts(t, tok)
				key, ok := keys[fmt.Sprint(h["kid"])]
				if !ok {
					jwks = ba.Do(t, "jwks", nil)
					for _, r := range jwks["rows"].([]any) {
						r := r.(map[string]any)
						x, err := base64.RawURLEncoding.DecodeString(r["publicKey"].(map[string]any)["x"].(string))
						if err != nil || r["alg"] != "EdDSA" || r["crv"] != "Ed25519" {
							t.Fatalf("jwks row %v", r)
						}
						keys[r["id"].(string)] = x
					}
					served := fmt.Sprint(jwks["served"])
					for kid := range keys {
						if !strings.Contains(served, kid) {
							t.Errorf("kid %s is not served: %s", kid, served)
						}
					}
					if key, ok = keys[fmt.Sprint(h["kid"])]; !ok {
						t.Fatalf("kid %v is in no jwks row (%v)", h["kid"], jwks["rows"])
					}
				}
				i := strings.LastIndex(tok, ".")
				sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
				if err != nil || h["alg"] != "EdDSA" || !ed25519.Verify(key, []byte(tok[:i]), sig) {
					t.Fatalf("JWT %v: not signed by its key", h)
				}
				return p
			}

			// client_credentials without a resource: an opaque token, stored
			// as its hash, with no user, session or resources.
			opaque := ba.Do(t, "token-cc", c.args("scope", "mcp:read mcp:write"))
			tok, _ := opaque["access_token"].(string)
			if opaque["status"] != 200.0 || !opaqueToken.MatchString(tok) || opaque["scope"] != "mcp:read mcp:write" || opaque["token_type"] != "Bearer" {
				t.Fatalf("token-cc: %v", opaque)
			}
			r := ba.Do(t, "row", map[string]any{"token": tok})
			row, _ := r["row"].(map[string]any)
			if row == nil || r["hash"] != storedHash(tok) || row["token"] != storedHash(tok) || row["clientId"] != c.ID ||
				row["userId"] != nil || row["sessionId"] != nil || row["resources"] != nil || row["revoked"] != nil ||
				!slices.Equal(jsonStrings(t, row["scopes"]), []string{"mcp:read", "mcp:write"}) {
				t.Fatalf("row of the opaque token: %v", r)
			}

			// With the resource: a JWT (at+jwt) for it, signed with a key of
			// the jwks table; M2M, so sub is the client. No row.
			m2m := ba.Do(t, "token-cc", c.args("scope", "mcp:read", "resource", f.Resource))
			jwt, _ := m2m["access_token"].(string)
			if h, _ := jwtParts(t, jwt); h["typ"] != "at+jwt" || h["kid"] == nil {
				t.Fatalf("JWT header %v", h)
			}
			p := verify(t, jwt)
			if p["aud"] != f.Resource || p["iss"] != f.Issuer || p["sub"] != c.ID || p["azp"] != c.ID || p["client_id"] != c.ID ||
				p["scope"] != "mcp:read" || p["sid"] != nil || p["exp"].(float64)-p["iat"].(float64) != 3600 {
				t.Errorf("M2M JWT claims %v", p)
			}
			if r := ba.Do(t, "row", map[string]any{"token": jwt}); r["row"] != nil {
				t.Errorf("a JWT has a row: %v", r)
			}

			// The code flow (PKCE, consent given) as Alice: an opaque token
			// bound to her session, and a refresh token.
			user := ba.Do(t, "token-code", c.args("scope", "openid offline_access mcp:write"))
			utok, _ := user["access_token"].(string)
			if !opaqueToken.MatchString(utok) || user["consent"] != true || user["refresh_token"] == nil || user["id_token"] == nil ||
				user["scope"] != "openid offline_access mcp:write" {
				t.Fatalf("token-code: %v", user)
			}
			row = ba.Do(t, "row", map[string]any{"token": utok})["row"].(map[string]any)
			if row["userId"] != alice.ID || row["sessionId"] != alice.SessionID || row["refreshId"] == nil || row["resources"] != nil {
				t.Errorf("row of Alice's token: %v", row)
			}
			// With the resource: a JWT with Alice as sub and her session as
			// sid; openid adds the userinfo endpoint to the audience.
			ujwt := ba.Do(t, "token-code", c.args("scope", "openid mcp:read", "resource", f.Resource))["access_token"].(string)
			p = verify(t, ujwt)
			if p["sub"] != alice.ID || p["sid"] != alice.SessionID || p["azp"] != c.ID || p["iss"] != f.Issuer ||
				fmt.Sprint(p["aud"]) != fmt.Sprintf("[%s %s/oauth2/userinfo]", f.Resource, f.Issuer) {
				t.Errorf("user JWT claims %v", p)
			}

			// Introspection by the issuing client.
			introspect := func(tok string) map[string]any {
				return ba.Do(t, "introspect", c.args("token", tok))
			}
			if in := introspect(tok); in["status"] != 200.0 || in["body"].(map[string]any)["active"] != true ||
				in["body"].(map[string]any)["client_id"] != c.ID || in["body"].(map[string]any)["scope"] != "mcp:read mcp:write" {
				t.Errorf("introspect opaque: %v", in)
			}
			if in := introspect(jwt); in["body"].(map[string]any)["active"] != true {
				t.Errorf("introspect JWT: %v", in)
			}
			if in := introspect(utok); in["body"].(map[string]any)["sub"] != alice.ID || in["body"].(map[string]any)["sid"] != alice.SessionID {
				t.Errorf("introspect Alice's token: %v", in)
			}

			// Revoking an opaque token deletes its row; a JWT cannot be revoked.
			if rv := ba.Do(t, "revoke", c.args("token", tok)); rv["status"] != 200.0 {
				t.Errorf("revoke: %v", rv)
			}
			if r := ba.Do(t, "row", map[string]any{"token": tok}); r["row"] != nil {
				t.Errorf("the revoked token's row is still there: %v", r)
			}
			if in := introspect(tok); in["body"].(map[string]any)["active"] != false {
				t.Errorf("introspect revoked: %v", in)
			}
			if rv := ba.Do(t, "revoke", c.args("token", jwt)); rv["status"] != 400.0 || rv["body"].(map[string]any)["error"] != "unsupported_token_type" {
				t.Errorf("revoke JWT: %v", rv)
			}

			// An aged token is inactive.
			aged := ba.Do(t, "token-cc", c.args("scope", "mcp:read"))["access_token"].(string)
			if a := ba.Do(t, "age-token", map[string]any{"token": aged}); a["updated"] != 1.0 {
				t.Errorf("age-token: %v", a)
			}
			if in := introspect(aged); in["body"].(map[string]any)["active"] != false {
				t.Errorf("introspect aged: %v", in)
			}

			// A disabled client gets no tokens, until enabled again.
			other := oauthClient{}
			remarshal(t, ba.Do(t, "create-client", map[string]any{"name": "other"}), &other)
			otok := ba.Do(t, "token-cc", other.args())["access_token"].(string)
			ba.Do(t, "disable-client", map[string]any{"client_id": other.ID})
			if r := ba.Try(t, "token-cc", other.args()); r["error"] != "invalid_client" {
				t.Errorf("token-cc of a disabled client: %v", r)
			}
			if in := introspect(otok); in["body"].(map[string]any)["active"] != false {
				t.Errorf("introspect a disabled client's token: %v", in)
			}
			ba.Do(t, "enable-client", map[string]any{"client_id": other.ID})
			ba.Do(t, "token-cc", other.args())

			// Bob signs out: his access token gets revoked and loses its session.
			bob := f.Users.Bob
			btok := ba.Do(t, "token-code", c.args("scope", "mcp:read", "session", bob.Signed))["access_token"].(string)
			ba.Do(t, "sign-out", map[string]any{"session": bob.Signed})
			if row := ba.Do(t, "row", map[string]any{"token": btok})["row"].(map[string]any); row["revoked"] == nil || row["sessionId"] != nil || row["userId"] != bob.ID {
				t.Errorf("Bob's token after his sign-out: %v", row)
			}

			// A session JWT is not an access token: no typ, the origin as
			// issuer and audience; introspection refuses it (with a 500: its
			// iss is not the provider's).
			sj := ba.Do(t, "session-jwt", nil)["token"].(string)
			if h, _ := jwtParts(t, sj); h["typ"] != nil {
				t.Errorf("session JWT header %v", h)
			}
			if p := verify(t, sj); p["sub"] != alice.ID || p["iss"] != "http://localhost:3000" || p["aud"] != "http://localhost:3000" || p["azp"] != nil {
				t.Errorf("session JWT claims %v", p)
			}
			if in := introspect(sj); in["status"] == 200.0 && in["body"].(map[string]any)["active"] != false {
				t.Errorf("introspect session JWT: %v", in)
			}

			// Deleting the resource ends its JWTs and its issuance.
			ba.Do(t, "delete-resource", nil)
			if in := introspect(jwt); in["body"].(map[string]any)["active"] != false {
				t.Errorf("introspect a JWT of a deleted resource: %v", in)
			}
			if r := ba.Try(t, "token-cc", c.args("resource", f.Resource)); r["error"] != "invalid_target" {
				t.Errorf("token-cc for a deleted resource: %v", r)
			}
		})
	}
}

// The legacy driver works: better-auth 1.4.22's mcp() plugin stores its
// tokens in plaintext, and its own check (getMcpSession, what withMcpAuth
// used) still finds an expired token.
func TestOAuthSeedLegacy(t *testing.T) {
	t.Parallel()
	for _, sqlite := range []bool{false, true} {
		name := map[bool]string{false: "postgres", true: "sqlite"}[sqlite]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ba := startOAuthSeed(t, oauthSeedOptions{SQLite: sqlite, Legacy: true})
			f := ba.Do(t, "setup", nil)
			var c oauthClient
			remarshal(t, f["client"], &c)
			alice := f["users"].(map[string]any)["alice"].(map[string]any)
			if !opaqueToken.MatchString(c.ID) || !opaqueToken.MatchString(c.Secret) {
				t.Fatalf("setup: %v", f)
			}
			if row := ba.Do(t, "client-row", map[string]any{"client_id": c.ID})["row"].(map[string]any); row["clientSecret"] != c.Secret || row["type"] != "web" {
				t.Errorf("client row %v", row)
			}
			tr := ba.Do(t, "token-code", c.args("scope", "openid offline_access"))
			tok, _ := tr["access_token"].(string)
			if tr["status"] != 200.0 || !opaqueToken.MatchString(tok) || tr["refresh_token"] == nil || tr["scope"] != "openid offline_access" {
				t.Fatalf("token-code: %v", tr)
			}
			row, _ := ba.Do(t, "row", map[string]any{"token": tok})["row"].(map[string]any)
			if row == nil || row["accessToken"] != tok || row["refreshToken"] != tr["refresh_token"] || row["clientId"] != c.ID ||
				row["userId"] != alice["id"] || row["scopes"] != "openid offline_access" {
				t.Fatalf("row: %v", row)
			}
			if a := ba.Do(t, "age-token", map[string]any{"token": tok}); a["updated"] != 1.0 {
				t.Errorf("age-token: %v", a)
			}
			if s := ba.Do(t, "mcp-session", map[string]any{"token": tok})["session"]; s == nil {
				t.Errorf("getMcpSession refused an expired token (the legacy plugin did not check expiry)")
			}
			if s := ba.Do(t, "mcp-session", map[string]any{"token": "unknown"})["session"]; s != nil {
				t.Errorf("getMcpSession of an unknown token: %v", s)
			}
		})
	}
}
