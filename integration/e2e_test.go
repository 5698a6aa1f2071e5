// End-to-end tests: the Caddy built from cmd/caddy, in front of a recording
// upstream, reading a PostgreSQL database whose schema and rows were made by
// real Better-Auth. Run them with scripts/test.sh.
package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// upstream records the headers of every request, by the X-Test-Id the test
// sent, and streams server-sent events on /sse.
type upstream struct {
	*httptest.Server
	mu       sync.Mutex
	seen     map[string]http.Header
	trailers map[string]http.Header // the request trailers, once the body was read
	release  chan struct{}          // closed to let /sse finish
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{seen: map[string]http.Header{}, trailers: map[string]http.Header{}, release: make(chan struct{})}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen[r.Header.Get("X-Test-Id")] = r.Header.Clone()
		u.mu.Unlock()
		if r.Method == http.MethodPost {
			io.Copy(io.Discard, r.Body)
			u.mu.Lock()
			u.trailers[r.Header.Get("X-Test-Id")] = r.Trailer.Clone()
			u.mu.Unlock()
		}
		if r.URL.Path == "/sse" {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "event: hello\ndata: first\n\n")
			w.(http.Flusher).Flush()
			if r.URL.Query().Has("ticks") { // an event every 20 ms until the client goes
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-tick.C:
						fmt.Fprint(w, "event: tick\ndata: tick\n\n")
						w.(http.Flusher).Flush()
					case <-r.Context().Done():
						return
					case <-u.release:
						return
					}
				}
			}
			select {
			case <-u.release:
			case <-r.Context().Done():
				return
			}
			fmt.Fprint(w, "event: bye\ndata: last\n\n")
			return
		}
		w.Write([]byte("upstream ok"))
	}))
	t.Cleanup(func() {
		select {
		case <-u.release:
		default:
			close(u.release)
		}
		u.Close()
	})
	return u
}

// headers returns what the upstream received for a test id, or nil when the
// request never reached it.
func (u *upstream) headers(id string) http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[id]
}

// readStream reads an /sse response: the upstream holds the stream open
// until released, so its first event must arrive before that (nothing
// buffers it), then the last one.
func (u *upstream) readStream(t *testing.T, body io.Reader) {
	t.Helper()
	rd := bufio.NewReader(body)
	for _, want := range []string{"event: hello", "data: first"} {
		line, err := rd.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != want {
			t.Fatalf("read %q, %v; want %q", line, err, want)
		}
	}
	close(u.release)
	rest, _ := io.ReadAll(rd)
	if !strings.Contains(string(rest), "data: last") {
		t.Fatalf("stream ended with %q", rest)
	}
}

// trailer returns the request trailers the upstream received for a test id.
func (u *upstream) trailer(id string) http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.trailers[id]
}

func (u *upstream) addr() string { return strings.TrimPrefix(u.URL, "http://") }

// startGateway starts Caddy with a better_auth block (extra lines go inside it) in
// front of up.
func startGateway(t *testing.T, db string, up *upstream, extra string) *testenv.Caddy {
	t.Helper()
	return testenv.StartCaddy(t, "", fmt.Sprintf(`
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		%s
	}
	reverse_proxy %s`, extra, up.addr()),
		"DATABASE_URL="+db, "BETTER_AUTH_SECRET="+testenv.Secret)
}

type result struct {
	id     string
	status int
	header http.Header
	body   struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	raw string
}

func send(t *testing.T, gw *testenv.Caddy, path string, hdr http.Header) result {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, gw.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	r := result{id: rand.Text()}
	req.Header.Set("X-Test-Id", r.id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r.status, r.header, r.raw = resp.StatusCode, resp.Header, string(b)
	json.Unmarshal(b, &r.body)
	return r
}

// settle starts a gateway's watchers (with its first lookup) and waits until
// they have connected: each empties the cache, and with Redis advances the
// shared epoch, when it does.
func settle(t *testing.T, gw *testenv.Caddy, redis bool) {
	t.Helper()
	send(t, gw, "/", h("X-Api-Key", "ba_start_the_watchers"))
	gw.WaitForLog(t, "listening for revocations", 10*time.Second)
	if redis {
		gw.WaitForLog(t, "listening for invalidations from other gateways", 10*time.Second)
	}
}

func h(kv ...string) http.Header {
	out := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		out.Add(kv[i], kv[i+1])
	}
	return out
}

// Every credential form and deny code through Caddy, on PostgreSQL and on
// MySQL (MariaDB), each seeded by real Better-Auth.
func TestGatewayCredentialsAndDenials(t *testing.T) {
	for _, db := range []struct {
		name string
		seed testenv.SeedOptions
	}{{"postgres", testenv.SeedOptions{}}, {"mysql", testenv.SeedOptions{MySQL: true}}} {
		t.Run(db.name, func(t *testing.T) {
			t.Parallel()
			gatewayCredentialsAndDenials(t, testenv.Seed(t, db.seed))
		})
	}
}

func gatewayCredentialsAndDenials(t *testing.T, f *testenv.Fixture) {
	up := newUpstream(t)
	gw := startGateway(t, f.DatabaseURL, up, "")
	u, k := f.Users, f.Keys
	enc := func(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }

	allowed := []struct {
		name      string
		hdr       http.Header
		user      string
		method    string
		keyID     string
		sessionID string
	}{
		{"x-api-key", h("X-Api-Key", k.Valid.Key), u.Alice.ID, "api_key", k.Valid.ID, ""},
		{"api key as bearer", h("Authorization", "Bearer "+k.Valid2.Key), u.Alice.ID, "api_key", k.Valid2.ID, ""},
		{"signed session bearer", h("Authorization", "Bearer "+u.Alice.Signed), u.Alice.ID, "session", "", f.SessionIDs["alice"]},
		{"url-encoded signed bearer", h("Authorization", "Bearer "+enc(u.Zoe.Signed)), u.Zoe.ID, "session", "", f.SessionIDs["zoe"]},
		{"raw session token bearer", h("Authorization", "bearer "+u.Eve.Token), u.Eve.ID, "session", "", f.SessionIDs["eve"]},
		{"session cookie", h("Cookie", "theme=dark; better-auth.session_token="+enc(u.Alice.Signed)), u.Alice.ID, "session", "", f.SessionIDs["alice"]},
		{"secure session cookie", h("Cookie", "__Secure-better-auth.session_token="+enc(u.Alice.Signed)), u.Alice.ID, "session", "", f.SessionIDs["alice"]},
		{"key with uses left", h("X-Api-Key", k.Limited.Key), u.Alice.ID, "api_key", k.Limited.ID, ""},
		{"exhausted key due for refill", h("X-Api-Key", k.Refill.Key), u.Alice.ID, "api_key", k.Refill.ID, ""},
	}
	for _, tc := range allowed {
		t.Run("allow/"+tc.name, func(t *testing.T) {
			t.Parallel()
			r := send(t, gw, "/", tc.hdr)
			if r.status != 200 || r.raw != "upstream ok" {
				t.Fatalf("status %d, body %q", r.status, r.raw)
			}
			got := up.headers(r.id)
			want := map[string]string{
				"X-Auth-User-Id": tc.user, "X-Auth-Method": tc.method,
				"X-Auth-Key-Id": tc.keyID, "X-Auth-Session-Id": tc.sessionID, "X-Auth-User-Role": "user",
			}
			for name, v := range want {
				if vs := got.Values(name); (v == "" && len(vs) != 0) || (v != "" && (len(vs) != 1 || vs[0] != v)) {
					t.Errorf("%s = %q, want %q", name, vs, v)
				}
			}
		})
	}

	denied := []struct {
		name   string
		hdr    http.Header
		status int
		code   string
	}{
		{"no credential", nil, 401, "MISSING_CREDENTIAL"},
		{"basic auth is no credential", h("Authorization", "Basic YTpi"), 401, "MISSING_CREDENTIAL"},
		{"unknown key", h("X-Api-Key", "ba_"+strings.Repeat("x", 64)), 401, "INVALID_API_KEY"},
		{"unknown key as bearer", h("Authorization", "Bearer ba_"+strings.Repeat("x", 64)), 401, "INVALID_API_KEY"},
		{"invalid key does not fall through to a valid session", h("X-Api-Key", "nope", "Authorization", "Bearer "+u.Alice.Signed), 401, "INVALID_API_KEY"},
		{"disabled key", h("X-Api-Key", k.Disabled.Key), 401, "KEY_DISABLED"},
		{"expired key", h("X-Api-Key", k.Expired.Key), 401, "KEY_EXPIRED"},
		{"exhausted key", h("X-Api-Key", k.Exhausted.Key), 429, "USAGE_EXCEEDED"},
		{"unknown session", h("Authorization", "Bearer "+strings.Repeat("Q", 32)), 401, "INVALID_SESSION"},
		{"bad signature", h("Authorization", "Bearer "+u.Alice.Token+".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), 401, "INVALID_SESSION"},
		{"unsigned cookie", h("Cookie", "better-auth.session_token="+u.Alice.Token), 401, "INVALID_SESSION"},
		{"expired session", h("Authorization", "Bearer "+u.Expired.Signed), 401, "SESSION_EXPIRED"},
		{"banned user's key", h("X-Api-Key", k.Banned.Key), 403, "USER_BANNED"},
		{"banned user's session", h("Cookie", "better-auth.session_token="+enc(u.Bob.Signed)), 403, "USER_BANNED"},
		{"two api keys", h("X-Api-Key", k.Valid.Key, "X-Api-Key", k.Valid2.Key), 401, "INVALID_API_KEY"},
	}
	for _, tc := range denied {
		t.Run("deny/"+tc.name, func(t *testing.T) {
			t.Parallel()
			r := send(t, gw, "/", tc.hdr)
			if r.status != tc.status || r.body.Code != tc.code || r.body.Message == "" {
				t.Fatalf("got %d %q, want %d %s", r.status, r.raw, tc.status, tc.code)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if wa := r.header.Get("WWW-Authenticate"); (tc.status == 401) != strings.HasPrefix(wa, "Bearer ") {
				t.Errorf("WWW-Authenticate = %q on %d", wa, tc.status)
			}
			if up.headers(r.id) != nil {
				t.Error("a denied request reached the upstream")
			}
		})
	}

	t.Run("spoofed identity headers never reach the upstream", func(t *testing.T) {
		t.Parallel()
		spoof := h("X-Auth-User-Id", "admin", "x-auth-user-id", "admin2", "X-AUTH-USER-ROLE", "admin",
			"X-Auth-Key-Id", "forged", "X-Auth-Anything", "x", "X_Auth_User_Id", "admin3", "x_auth_user_role", "admin")
		// Allowed: the gateway's values replace the forged ones.
		hdr := spoof.Clone()
		hdr.Set("X-Api-Key", k.Valid.Key)
		r := send(t, gw, "/", hdr)
		got := up.headers(r.id)
		if r.status != 200 || got == nil {
			t.Fatalf("status %d", r.status)
		}
		for name, vs := range got {
			if !strings.HasPrefix(strings.ToLower(strings.ReplaceAll(name, "_", "-")), "x-auth-") {
				continue
			}
			for _, v := range vs {
				if strings.Contains(v, "admin") || v == "forged" || v == "x" {
					t.Errorf("upstream got spoofed %s: %q", name, v)
				}
			}
			if len(vs) != 1 {
				t.Errorf("upstream got %d values of %s", len(vs), name)
			}
		}
		if got.Get("X-Auth-User-Id") != u.Alice.ID || got.Get("X-Auth-Session-Id") != "" {
			t.Errorf("identity headers: %v", got)
		}
	})

	t.Run("credential is not forwarded", func(t *testing.T) {
		t.Parallel()
		for _, hdr := range []http.Header{
			h("X-Api-Key", k.Valid.Key),
			h("Authorization", "Bearer "+k.Valid.Key),
			h("Authorization", "Bearer "+u.Alice.Signed),
			h("Cookie", "a=1; better-auth.session_token="+enc(u.Alice.Signed)+"; better-auth.session_data=abc; b=2"),
		} {
			r := send(t, gw, "/", hdr)
			got := up.headers(r.id)
			if r.status != 200 {
				t.Fatalf("status %d", r.status)
			}
			if got.Get("X-Api-Key") != "" || got.Get("Authorization") != "" {
				t.Errorf("credential forwarded: %v", got)
			}
			if c := got.Get("Cookie"); strings.Contains(c, "session_") || (hdr.Get("Cookie") != "" && c != "a=1; b=2") {
				t.Errorf("Cookie upstream = %q", c)
			}
		}
	})

	t.Run("stored names cannot break or add headers", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct{ key, want string }{
			{k.Eve.Key, "Eve%0D%0AX-Auth-User-Role: admin"},
			{k.Zoe.Key, "Zo%C3%AB %C3%9Cn%C3%AFc%C3%B8d%C3%A9"},
		} {
			r := send(t, gw, "/", h("X-Api-Key", tc.key))
			got := up.headers(r.id)
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.raw)
			}
			if n := got.Get("X-Auth-User-Name"); n != tc.want {
				t.Errorf("X-Auth-User-Name = %q, want %q", n, tc.want)
			}
			if d, _ := url.PathUnescape(got.Get("X-Auth-User-Name")); tc.key == k.Zoe.Key && d != u.Zoe.Name {
				t.Errorf("decoded name %q, want %q", d, u.Zoe.Name)
			}
			if roles := got.Values("X-Auth-User-Role"); len(roles) != 1 || roles[0] != "user" {
				t.Errorf("X-Auth-User-Role = %q", roles)
			}
		}
	})

	t.Run("server-sent events stream through", func(t *testing.T) {
		t.Parallel()
		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/sse", nil)
		req.Header.Set("X-Api-Key", k.Valid.Key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		up.readStream(t, resp.Body)
	})
}

func TestGatewayWithoutAdminPlugin(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{NoAdmin: true})
	up := newUpstream(t)
	gw := startGateway(t, f.DatabaseURL, up, "")
	r := send(t, gw, "/", h("X-Api-Key", f.Keys.Valid.Key))
	got := up.headers(r.id)
	if r.status != 200 || got.Get("X-Auth-User-Id") != f.Users.Alice.ID {
		t.Fatalf("status %d, headers %v", r.status, got)
	}
	if _, ok := got["X-Auth-User-Role"]; ok {
		t.Errorf("X-Auth-User-Role sent without the admin plugin: %q", got["X-Auth-User-Role"])
	}
	if r := send(t, gw, "/", h("X-Api-Key", f.Keys.Disabled.Key)); r.status != 401 || r.body.Code != "KEY_DISABLED" {
		t.Errorf("disabled key: %d %s", r.status, r.raw)
	}
}

func TestGatewayKeepCredentialAndDrizzleSchema(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{Snake: true})
	up := newUpstream(t)
	gw := startGateway(t, f.DatabaseURL, up, "keep_credential\n\t\tschema {\n\t\t\tnaming snake\n\t\t}")
	r := send(t, gw, "/", h("X-Api-Key", f.Keys.Valid.Key))
	if got := up.headers(r.id); r.status != 200 || got.Get("X-Api-Key") != f.Keys.Valid.Key {
		t.Fatalf("status %d; keep_credential must forward the key", r.status)
	}
	if r := send(t, gw, "/", h("Authorization", "Bearer "+f.Users.Expired.Signed)); r.status != 401 || r.body.Code != "SESSION_EXPIRED" {
		t.Fatalf("expired session on snake_case: %d %s", r.status, r.raw)
	}
}

// A key deleted through Better-Auth stops working once its cache entry
// expires, without a restart.
func TestDeletedKeyStopsWorkingWithinTTL(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	up := newUpstream(t)
	// Longer than seeding takes, so the entry is still cached when the key
	// is deleted and it is the TTL that ends it.
	const ttl = 3 * time.Second
	gw := startGateway(t, f.DatabaseURL, up, "cache {\n\t\t\tttl 3s\n\t\t}")
	key := h("X-Api-Key", f.Keys.Deletable.Key)
	if r := send(t, gw, "/", key); r.status != 200 {
		t.Fatalf("before delete: %d", r.status)
	}
	testenv.RunSeed(t, f.DatabaseURL, nil, "delete-key", f.Keys.Deletable.ID, f.Users.Alice.Signed)
	deleted := time.Now()
	if r := send(t, gw, "/", key); r.status != 200 {
		t.Logf("rejected at once (%d): seeding outlasted the TTL on this machine", r.status)
	}
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for range poll.C {
		r := send(t, gw, "/", key)
		if r.status == 401 && r.body.Code == "INVALID_API_KEY" {
			break
		}
		if r.status != 200 {
			t.Fatalf("unexpected %d %s", r.status, r.raw)
		}
		if since := time.Since(deleted); since > ttl+500*time.Millisecond {
			t.Fatalf("deleted key still accepted %v after deletion (ttl %v)", since, ttl)
		}
	}
	t.Logf("deleted key rejected %v after deletion", time.Since(deleted))
}

// With the database down, requests that need it get 503 and never pass; once
// it is back, the gateway recovers without a restart.
func TestDatabaseDownFailsClosed(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	f := testenv.Seed(t, testenv.SeedOptions{Server: pg.URL})
	up := newUpstream(t)
	gw := startGateway(t, f.DatabaseURL, up, "lookup_timeout 2s")
	if r := send(t, gw, "/", h("X-Api-Key", f.Keys.Valid.Key)); r.status != 200 {
		t.Fatalf("database up: %d %s", r.status, r.raw)
	}
	pg.Stop(t)
	for _, hdr := range []http.Header{
		h("X-Api-Key", f.Keys.Valid2.Key),
		h("X-Api-Key", "ba_unknown_while_down"),
		h("Authorization", "Bearer "+f.Users.Alice.Signed),
		h("Authorization", "Bearer "+f.Users.Zoe.Token),
	} {
		r := send(t, gw, "/", hdr)
		if r.status != 503 || r.body.Code != "BACKEND_UNAVAILABLE" || r.header.Get("Retry-After") == "" {
			t.Errorf("database down: %d %s (Retry-After %q)", r.status, r.raw, r.header.Get("Retry-After"))
		}
		if up.headers(r.id) != nil {
			t.Error("a request passed while the database was down")
		}
	}
	pg.Start(t)
	// Nothing was cached while it was down: the same credentials work now.
	if r := send(t, gw, "/", h("X-Api-Key", f.Keys.Valid2.Key)); r.status != 200 {
		t.Fatalf("database back: %d %s", r.status, r.raw)
	}
	if r := send(t, gw, "/", h("X-Api-Key", "ba_unknown_while_down")); r.status != 401 {
		t.Fatalf("unknown key after recovery: %d", r.status)
	}
}

// No key, token or probe value appears in any log line: with Caddy's default
// logging and a failing upstream, and with an access log that uses the
// recommended filter.
func TestLogsHoldNoSecret(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	probe := "ba_probe" + strings.Repeat("Z", 60)
	secrets := []string{f.Keys.Valid.Key, f.Users.Alice.Signed, f.Users.Alice.Token, probe, testenv.Secret}
	requests := []http.Header{
		h("X-Api-Key", f.Keys.Valid.Key),
		h("Authorization", "Bearer "+f.Users.Alice.Signed),
		h("Cookie", "better-auth.session_token="+url.QueryEscape(f.Users.Alice.Signed)),
		h("X-Api-Key", probe),
	}
	check := func(t *testing.T, logs string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(logs, s) {
				t.Errorf("a secret (fingerprint %x) is in the logs", s[:6])
			}
		}
	}

	t.Run("default logging, upstream down", func(t *testing.T) {
		t.Parallel()
		dead := testenv.FreePort(t)
		gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
	}
	reverse_proxy 127.0.0.1:%d`, dead), "DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)
		for i, hdr := range requests {
			r := send(t, gw, "/", hdr)
			want := 502
			if i == len(requests)-1 {
				want = 401
			}
			if r.status != want {
				t.Errorf("request %d: %d, want %d", i, r.status, want)
			}
		}
		gw.Stop(t)
		logs := gw.Logs()
		if !strings.Contains(logs, `"status":502`) {
			t.Errorf("the upstream failure was not logged:\n%s", logs)
		}
		check(t, logs)
	})

	t.Run("access log with the recommended filter", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t)
		gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	log {
		output stderr
		format filter {
			request>headers>X-Api-Key delete
		}
	}
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
	}
	reverse_proxy %s`, up.addr()), "DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)
		for _, hdr := range requests {
			send(t, gw, "/", hdr)
		}
		gw.Stop(t)
		logs := gw.Logs()
		if !strings.Contains(logs, `"user_id":"`+f.Users.Alice.ID+`"`) {
			t.Errorf("the access log does not name the user:\n%s", logs)
		}
		if !strings.Contains(logs, "access logging is on") {
			t.Error("no startup warning about access logs")
		}
		check(t, logs)
	})
}

// The same gateway on a SQLite file that a Better-Auth app writes.
func TestGatewayOnSQLite(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{SQLite: true})
	up := newUpstream(t)
	gw := startGateway(t, f.DatabaseURL, up, "")
	r := send(t, gw, "/", h("X-Api-Key", f.Keys.Valid.Key))
	if got := up.headers(r.id); r.status != 200 || got.Get("X-Auth-User-Id") != f.Users.Alice.ID || got.Get("X-Auth-User-Role") != "user" {
		t.Fatalf("status %d, headers %v", r.status, got)
	}
	for _, tc := range []struct {
		hdr    http.Header
		status int
		code   string
	}{
		{h("X-Api-Key", f.Keys.Disabled.Key), 401, "KEY_DISABLED"},
		{h("X-Api-Key", f.Keys.Exhausted.Key), 429, "USAGE_EXCEEDED"},
		{h("Authorization", "Bearer "+f.Users.Expired.Signed), 401, "SESSION_EXPIRED"},
		{h("Cookie", "better-auth.session_token="+url.QueryEscape(f.Users.Bob.Signed)), 403, "USER_BANNED"},
	} {
		if r := send(t, gw, "/", tc.hdr); r.status != tc.status || r.body.Code != tc.code {
			t.Errorf("got %d %s, want %d %s", r.status, r.raw, tc.status, tc.code)
		}
	}
	// Better-Auth keeps writing the file while the gateway reads it.
	testenv.RunSeed(t, f.DatabaseURL, nil, "ban-user", f.Users.Zoe.ID)
	if r := send(t, gw, "/", h("Authorization", "Bearer "+f.Users.Zoe.Signed)); r.status != 403 {
		t.Errorf("after a ban written by Better-Auth: %d %s", r.status, r.raw)
	}
}

// Two gateways share a real Redis: what one verified, the other serves
// without the database; with Redis gone, both keep deciding correctly from
// the database.
func TestGatewaysShareRedis(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Require(t, "TEST_REDIS_URL")
	pg := testenv.StartPostgres(t)
	f := testenv.Seed(t, testenv.SeedOptions{Server: pg.URL})
	up := newUpstream(t)
	prefix := "test-" + strings.ToLower(rand.Text()[:8]) + ":"
	// Past the default 100ms: under the race detector, with the other
	// integration tests on two cores, a read that times out skips the
	// shared tier, and this test is about what the tier serves.
	block := fmt.Sprintf("redis {env.REDIS_URL} {\n\t\t\tprefix %s\n\t\t\ttimeout 2s\n\t\t}", prefix)
	start := func() *testenv.Caddy {
		return testenv.StartCaddy(t, "", fmt.Sprintf(`
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		%s
	}
	reverse_proxy %s`, block, up.addr()),
			"DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret, "REDIS_URL="+redisURL)
	}
	a, b := start(), start()
	// Each gateway's revocation listener starts with its first lookup and,
	// when it connects, makes the shared entries stale (it cannot know what
	// it missed before). Let both connect before sharing anything.
	for _, gw := range []*testenv.Caddy{a, b} {
		settle(t, gw, true)
	}
	// A gateway does not read entries written within cache.ClockSkew of its
	// start or of a revocation it applied (so that a restored old entry is
	// refused whatever the epoch says): share only after that window.
	<-time.After(cache.ClockSkew)
	key, session := h("X-Api-Key", f.Keys.Valid.Key), h("Authorization", "Bearer "+f.Users.Alice.Signed)
	for _, hdr := range []http.Header{key, session} {
		if r := send(t, a, "/", hdr); r.status != 200 {
			t.Fatalf("gateway A: %d %s", r.status, r.raw)
		}
	}
	// The database goes away: B has never seen these credentials, yet
	// serves them from what A shared before answering; an unseen one fails
	// closed.
	pg.Stop(t)
	for _, hdr := range []http.Header{key, session} {
		r := send(t, b, "/", hdr)
		if got := up.headers(r.id); r.status != 200 || got.Get("X-Auth-User-Id") != f.Users.Alice.ID {
			t.Fatalf("gateway B with the database down: %d %s", r.status, r.raw)
		}
	}
	if r := send(t, b, "/", h("X-Api-Key", f.Keys.Valid2.Key)); r.status != 503 {
		t.Fatalf("unshared key with the database down: %d", r.status)
	}
	pg.Start(t)
	// Redis gone: decisions come from the database, promptly and correctly.
	redisDown := testenv.FreePort(t)
	c := testenv.StartCaddy(t, "", fmt.Sprintf(`
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		redis redis://127.0.0.1:%d
	}
	reverse_proxy %s`, redisDown, up.addr()), "DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)
	for _, tc := range []struct {
		hdr    http.Header
		status int
	}{{key, 200}, {h("X-Api-Key", f.Keys.Disabled.Key), 401}, {session, 200}, {h("X-Api-Key", "ba_unknown"), 401}} {
		if r := send(t, c, "/", tc.hdr); r.status != tc.status {
			t.Errorf("Redis down: %d %s, want %d", r.status, r.raw, tc.status)
		}
	}
}

// An app that keeps sessions and API keys in Redis through Better-Auth's
// secondary storage, behind the gateway.
func TestGatewayOnSecondaryStorage(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Require(t, "TEST_REDIS_URL")
	prefix := "app-" + strings.ToLower(rand.Text()[:8]) + ":"
	f := testenv.Seed(t, testenv.SeedOptions{Redis: redisURL, RedisPrefix: prefix, KeysInRedis: true})
	up := newUpstream(t)
	gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		secondary_storage {env.APP_REDIS_URL} {
			prefix %s
			api_keys storage
		}
		cache {
			ttl 1h
		}
	}
	reverse_proxy %s`, prefix, up.addr()),
		"DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret, "APP_REDIS_URL="+redisURL)
	testenv.RunSeed(t, f.DatabaseURL, []string{"REDIS_URL=" + redisURL, "REDIS_PREFIX=" + prefix}, "revoke-session", f.Users.Zoe.Token)
	for _, tc := range []struct {
		hdr    http.Header
		status int
		user   string
	}{
		{h("X-Api-Key", f.Keys.Valid.Key), 200, f.Users.Alice.ID},
		{h("X-Api-Key", f.Keys.Disabled.Key), 401, ""},
		{h("Authorization", "Bearer "+f.Users.Alice.Signed), 200, f.Users.Alice.ID},
		{h("Authorization", "Bearer "+f.Users.Expired.Signed), 401, ""},
		{h("Authorization", "Bearer "+f.Users.Zoe.Signed), 401, ""}, // revoked through Better-Auth
	} {
		r := send(t, gw, "/", tc.hdr)
		if r.status != tc.status || (tc.user != "" && up.headers(r.id).Get("X-Auth-User-Id") != tc.user) {
			t.Errorf("%v: %d %s, want %d", tc.hdr, r.status, r.raw, tc.status)
		}
	}

	// With keyspace notifications on, a session Better-Auth deletes from
	// storage leaves the gateway's cache at once, TTL or not.
	rdb := redisClient(t, redisURL)
	if err := rdb.ConfigSet(context.Background(), "notify-keyspace-events", "Kg$x").Err(); err != nil {
		t.Fatal(err)
	}
	gw.WaitForLog(t, "watching secondary storage for revocations", 10*time.Second)
	session := h("Authorization", "Bearer "+f.AliceSession2.Signed)
	for range 2 {
		if r := send(t, gw, "/", session); r.status != 200 {
			t.Fatalf("second session: %d %s", r.status, r.raw)
		}
	}
	testenv.RunSeed(t, f.DatabaseURL, []string{"REDIS_URL=" + redisURL, "REDIS_PREFIX=" + prefix}, "revoke-session", f.AliceSession2.Token)
	revoked := time.Now()
	for {
		r := send(t, gw, "/", session)
		if r.status == 401 {
			t.Logf("a session deleted from secondary storage was refused %v after Better-Auth returned", time.Since(revoked).Round(time.Millisecond))
			break
		}
		if time.Since(revoked) > time.Second {
			t.Fatalf("still %d a second after the session was deleted from storage", r.status)
		}
	}
}

func redisClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

// Redis stops in the middle of a run: every decision stays right (from the
// database), and once Redis is back the gateway uses it again, without a
// restart.
func TestSharedRedisStopsAndComesBack(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedis(t)
	f := testenv.Seed(t, testenv.SeedOptions{})
	up := newUpstream(t)
	gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		redis {env.CACHE_REDIS_URL} {
			prefix stop-start:
			# A stopped Redis refuses connections at once; the bound is for
			# reads that are slow under the race detector on two cores.
			timeout 1s
		}
		cache {
			ttl 200ms
		}
	}
	reverse_proxy %s`, up.addr()), "DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret, "CACHE_REDIS_URL="+rs.URL)
	rdb := redisClient(t, rs.URL)
	shared := func() int {
		keys, err := rdb.Keys(context.Background(), "stop-start:"+cache.CodecVersion+":?:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	}
	// The watchers empty the cache when they connect: let them.
	settle(t, gw, true)
	if r := send(t, gw, "/", h("X-Api-Key", f.Keys.Valid.Key)); r.status != 200 || shared() != 1 {
		t.Fatalf("with Redis: %d, %d shared entries", r.status, shared())
	}

	rs.Stop(t)
	var lat []time.Duration
	for i := range 40 {
		start := time.Now()
		r := send(t, gw, "/", h("X-Api-Key", fmt.Sprintf("ba_unknown_%d", i)))
		lat = append(lat, time.Since(start))
		if r.status != 401 {
			t.Fatalf("unknown key with Redis down: %d %s", r.status, r.raw)
		}
	}
	for _, tc := range []struct {
		hdr    http.Header
		status int
	}{
		{h("X-Api-Key", f.Keys.Valid2.Key), 200}, {h("X-Api-Key", f.Keys.Disabled.Key), 401},
		{h("Authorization", "Bearer "+f.Users.Alice.Signed), 200}, {h("X-Api-Key", f.Keys.Banned.Key), 403},
	} {
		if r := send(t, gw, "/", tc.hdr); r.status != tc.status {
			t.Errorf("Redis down: %d %s, want %d", r.status, r.raw, tc.status)
		}
	}
	slices.Sort(lat)
	t.Logf("misses with Redis down: p50 %v, p99 %v (Redis timeout 1s)", lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond))

	rs.Start(t)
	// Back, and empty: once the client has reconnected (go-redis redials in
	// the background), the next miss is shared again. The short TTL makes
	// every request after it a miss.
	key := h("X-Api-Key", f.Keys.Valid2.Key)
	back := time.Now()
	for shared() == 0 {
		if time.Since(back) > 10*time.Second {
			t.Fatal("the gateway did not use Redis again")
		}
		if r := send(t, gw, "/", key); r.status != 200 {
			t.Fatalf("after Redis came back: %d %s", r.status, r.raw)
		}
	}
	t.Logf("Redis used again %v after it came back", time.Since(back).Round(time.Millisecond))
}
