package integration

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// A client cannot have reverse_proxy delete the identity headers by naming
// them in Connection: the upstream gets every one, in whatever spelling the
// client used.
func TestConnectionCannotDropIdentityHeaders(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	up := newUpstream(t)
	gw := startGateway(t, f.DatabaseURL, up, "")
	for _, conn := range []string{
		"X-Auth-User-Id, X-Auth-User-Role, X-Auth-Key-Id",
		"keep-alive, x-auth-user-email,X-AUTH-USER-NAME , x-auth-method",
		"x_auth_user_id, X-Auth-Session-Id, X-Api-Key, Authorization, Cookie",
	} {
		r := send(t, gw, "/", h("X-Api-Key", f.Keys.Valid.Key, "Connection", conn, "X-Keep-Me", "1"))
		got := up.headers(r.id)
		if r.status != 200 || got == nil {
			t.Fatalf("Connection %q: %d %s", conn, r.status, r.raw)
		}
		for name, want := range map[string]string{
			"X-Auth-User-Id": f.Users.Alice.ID, "X-Auth-User-Email": f.Users.Alice.Email, "X-Auth-User-Name": f.Users.Alice.Name,
			"X-Auth-User-Role": "user", "X-Auth-Method": "api_key", "X-Auth-Key-Id": f.Keys.Valid.ID,
		} {
			if v := got.Get(name); v != url.PathEscape(want) && v != want {
				t.Errorf("Connection %q: upstream got %s = %q, want %q", conn, name, v, want)
			}
		}
	}
	// Other tokens keep working: a header the client itself marks
	// hop-by-hop is still not forwarded.
	r := send(t, gw, "/", h("X-Api-Key", f.Keys.Valid.Key, "Connection", "X-Auth-User-Id, X-Drop-Me", "X-Drop-Me", "1"))
	if got := up.headers(r.id); got.Get("X-Drop-Me") != "" || got.Get("X-Auth-User-Id") != f.Users.Alice.ID {
		t.Errorf("X-Drop-Me %q, X-Auth-User-Id %q", got.Get("X-Drop-Me"), got.Get("X-Auth-User-Id"))
	}
}

// Whichever credential a request was allowed with, no credential Better-Auth
// would accept reaches the upstream: API-key headers, a Bearer value, the
// session cookie and its cookie cache. Other cookies and other
// Authorization schemes do.
func TestEveryCredentialIsRemoved(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	up := newUpstream(t)
	gw := startGateway(t, f.DatabaseURL, up, "")
	enc := func(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }
	browser := "theme=dark; better-auth.session_token=" + enc(f.Users.Zoe.Signed) + "; better-auth.session_data=e30; __Secure-better-auth.session_data.1=e30" +
		"; better-auth.admin_session=" + f.Users.Eve.Token + "%3A.c2ln; better-auth.session_token_multi-" + strings.ToLower(f.Users.Eve.Token) +
		"=" + enc(f.Users.Eve.Signed) + "; \xa0better-auth.session_token=" + enc(f.Users.Eve.Signed)
	for _, tc := range []struct {
		name       string
		hdr        http.Header
		cookie     string
		authorized string
	}{
		{"x-api-key beside a browser session", h("X-Api-Key", f.Keys.Valid.Key, "Cookie", browser), "theme=dark", ""},
		{"bearer key beside a browser session", h("Authorization", "Bearer "+f.Keys.Valid.Key, "Cookie", browser), "theme=dark", ""},
		{"bearer session beside cookies", h("Authorization", "Bearer "+f.Users.Alice.Signed, "Cookie", browser), "theme=dark", ""},
		{"the session cookie itself", h("Cookie", "theme=dark; better-auth.session_token="+enc(f.Users.Alice.Signed)), "theme=dark", ""},
		{"x-api-key beside a bearer value", h("X-Api-Key", f.Keys.Valid.Key, "Authorization", "Bearer "+f.Keys.Valid2.Key), "", ""},
		{"x-api-key beside basic auth", h("X-Api-Key", f.Keys.Valid.Key, "Authorization", "Basic dXNlcjpwYXNz"), "", "Basic dXNlcjpwYXNz"},
	} {
		r := send(t, gw, "/", tc.hdr)
		got := up.headers(r.id)
		if r.status != 200 || got == nil {
			t.Fatalf("%s: %d %s", tc.name, r.status, r.raw)
		}
		if got.Get("X-Api-Key") != "" || got.Get("Cookie") != tc.cookie || got.Get("Authorization") != tc.authorized {
			t.Errorf("%s: upstream got X-Api-Key %q, Cookie %q, Authorization %q", tc.name,
				got.Get("X-Api-Key"), got.Get("Cookie"), got.Get("Authorization"))
		}
	}
}

// A credential that no database can hold (bytes that are not UTF-8) is an
// invalid credential, not a database failure: 401, and no error logged.
func TestNonUTF8CredentialIsInvalid(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	up := newUpstream(t)
	gw := startGateway(t, f.DatabaseURL, up, "disable_key_hashing")
	bad := "ba_\xff\xfeinvalid"
	for _, tc := range []struct {
		hdr  http.Header
		code string
	}{
		{h("X-Api-Key", bad), "INVALID_API_KEY"},
		{h("Authorization", "Bearer "+bad), "INVALID_SESSION"},
		{h("Authorization", "Bearer "+strings.Repeat("\xff", 32)), "INVALID_SESSION"},
	} {
		r := send(t, gw, "/", tc.hdr)
		if r.status != 401 || r.body.Code != tc.code {
			t.Errorf("%q: %d %s, want 401 %s", tc.hdr, r.status, r.raw, tc.code)
		}
	}
	// The database still answers for good keys (a 503 above would have
	// been a false outage).
	if r := send(t, gw, "/", h("X-Api-Key", "ba_plain_unknown")); r.status != 401 {
		t.Errorf("unknown plain key: %d %s", r.status, r.raw)
	}
	if logs := gw.Logs(); strings.Contains(logs, "lookup failed") || strings.Contains(logs, `"level":"error"`) {
		t.Errorf("an invalid credential was logged as a failure:\n%s", logs)
	}
}

// Request trailers that name identity or credential headers never reach
// the upstream; other trailers do.
func TestTrailersCannotCarryIdentity(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	up := newUpstream(t)
	gw := startGateway(t, f.DatabaseURL, up, "")
	id := rand.Text()
	raw := "POST / HTTP/1.1\r\n" +
		"Host: " + strings.TrimPrefix(gw.URL, "http://") + "\r\n" +
		"X-Api-Key: " + f.Keys.Valid.Key + "\r\n" +
		"X-Test-Id: " + id + "\r\n" +
		"Trailer: X-Auth-User-Id, X-Auth-User-Role, x_auth_key_id, X-Api-Key, X-Checksum\r\n" +
		"Transfer-Encoding: chunked\r\n" +
		"Connection: close\r\n\r\n" +
		"5\r\nhello\r\n0\r\n" +
		"X-Auth-User-Id: evil\r\n" +
		"X-Auth-User-Role: admin\r\n" +
		"x_auth_key_id: forged\r\n" +
		"X-Api-Key: leaked\r\n" +
		"X-Auth-Undeclared: evil\r\n" +
		"X-Checksum: sha-256\r\n\r\n"
	if status := rawStatus(t, strings.TrimPrefix(gw.URL, "http://"), raw); status != 200 {
		t.Fatalf("status %d", status)
	}
	tr := up.trailer(id)
	if tr.Get("X-Checksum") != "sha-256" {
		t.Fatalf("the upstream got no trailers at all (%v): the test proves nothing", tr)
	}
	for name := range tr {
		if name != "X-Checksum" {
			t.Errorf("trailer %s: %q reached the upstream", name, tr[name])
		}
	}
	if got := up.headers(id).Get("X-Auth-User-Id"); got != f.Users.Alice.ID {
		t.Errorf("X-Auth-User-Id %q", got)
	}
}

// sseAccept lists Accept headers with which MCP clients get event streams.
var sseAccept = []string{"*/*", "TEXT/EVENT-STREAM", "text/*;q=0.9", "application/json", ""}

func acceptName(a string) string {
	if a == "" {
		return "no accept"
	}
	return fmt.Sprintf("accept %s", a)
}

// Any database role can NOTIFY the revocation channel. A flood of forged
// notifications naming a live key costs rechecks, never access: the key
// keeps working and its open stream stays open; malformed ones are ignored
// with one warning, not one per notification.
func TestForgedNotificationsCostNoAccess(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	up := newUpstream(t)
	gw := startGateway(t, f.DatabaseURL, up, "cache {\n\t\t\tttl 1h\n\t\t}")
	settle(t, gw, false)

	req, _ := http.NewRequest(http.MethodGet, gw.URL+"/sse?ticks", nil)
	req.Header.Set("X-Api-Key", f.Keys.Valid.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("opening the stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	tick := func() {
		t.Helper()
		for lines.Scan() {
			if lines.Text() == "data: tick" {
				return
			}
		}
		t.Fatal("the stream ended")
	}
	tick()

	testenv.Exec(t, f.DatabaseURL, `SELECT pg_notify('caddy_betterauth', json_build_object('k', kind, 'id', $1::text, 'n', g)::text)
FROM generate_series(1, 2000) g, unnest(ARRAY['apikey', 'user']) kind`, f.Keys.Valid.ID)
	// A marker after the malformed ones: Valid2, cached, then disabled
	// without a trigger, is refused once the listener has read its genuine
	// notification, and so everything sent before it.
	marker := h("X-Api-Key", f.Keys.Valid2.Key)
	if r := send(t, gw, "/", marker); r.status != 200 {
		t.Fatalf("marker key: %d", r.status)
	}
	testenv.Exec(t, f.DatabaseURL, `UPDATE apikey SET enabled = false WHERE id = $1`, f.Keys.Valid2.ID)
	testenv.Exec(t, f.DatabaseURL, `SELECT pg_notify('caddy_betterauth', 'junk ' || g) FROM generate_series(1, 300) g`)
	testenv.Exec(t, f.DatabaseURL, `SELECT pg_notify('caddy_betterauth', json_build_object('k', 'apikey', 'id', $1::text)::text)`, f.Keys.Valid2.ID)
	since := time.Now()
	for send(t, gw, "/", marker).status != 401 {
		if time.Since(since) > 10*time.Second {
			t.Fatal("the listener did not read the notifications")
		}
	}

	// The process's log is read through a pipe: under load the line can
	// trail the effect the test saw, so it is waited for before counting.
	gw.WaitForLog(t, "malformed revocation notification", 10*time.Second)
	if n := strings.Count(gw.Logs(), "malformed revocation notification"); n != 1 {
		t.Errorf("%d warnings for 300 malformed notifications, want 1", n)
	}
	for range 5 {
		tick()
	}
	if r := send(t, gw, "/", h("X-Api-Key", f.Keys.Valid.Key)); r.status != 200 {
		t.Fatalf("after the flood: %d %s", r.status, r.raw)
	}
}
