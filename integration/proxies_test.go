package integration

// What the tests of the forward-auth examples (nginx, Caddy forward_auth)
// share: the shipped files with their addresses replaced, raw requests that
// keep header spellings, and one check of what reached the upstream.

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// identityHeaders are the headers the gateway sets, the only X-Auth-*
// names examples/nginx.conf clears.
var identityHeaders = []string{
	"X-Auth-User-Id", "X-Auth-User-Email", "X-Auth-User-Name", "X-Auth-User-Role",
	"X-Auth-Method", "X-Auth-Key-Id", "X-Auth-Session-Id",
}

// exampleFile returns examples/<name> with each pair's first string
// replaced by its second, in directives only (the files' comments name the
// addresses too); each must occur in exactly one directive.
func exampleFile(t *testing.T, name string, replacements [][2]string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(raw)
	for _, r := range replacements {
		var out []string
		n := 0
		for line := range strings.Lines(conf) {
			if !strings.HasPrefix(strings.TrimSpace(line), "#") && strings.Contains(line, r[0]) {
				line = strings.ReplaceAll(line, r[0], r[1])
				n++
			}
			out = append(out, line)
		}
		if n != 1 {
			t.Fatalf("examples/%s: %q appears in %d directives, want 1", name, r[0], n)
		}
		conf = strings.Join(out, "")
	}
	return conf
}

type rawResult struct {
	id     string
	status int
	header http.Header
	body   string
	code   string // the JSON answer's code
}

// rawGet sends a GET to addr with exactly the header lines given, names
// spelt as given (x_auth_user_role too), and an X-Test-Id.
func rawGet(t *testing.T, addr, path string, lines ...string) rawResult {
	t.Helper()
	r := rawResult{id: rand.Text()}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nX-Test-Id: " + r.id + "\r\nConnection: close\r\n"
	for _, l := range lines {
		req += l + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r.status, r.header, r.body = resp.StatusCode, resp.Header, string(b)
	var body struct{ Code string }
	json.Unmarshal(b, &body)
	r.code = body.Code
	return r
}

// proxyCheck checks requests sent through a proxy that asks the gateway's
// HTTP mode (at gateway) before forwarding to up.
type proxyCheck struct {
	up      *upstream
	gateway string
	via     string // the proxy's name, for messages
}

// through sends a request to the proxy at addr and checks that it reached
// the upstream with exactly the identity headers the gateway answers the
// same request with, and want's values among them ("" for absent).
func (p proxyCheck) through(t *testing.T, addr string, want map[string]string, lines ...string) http.Header {
	t.Helper()
	r := rawGet(t, addr, "/", lines...)
	got := p.up.headers(r.id)
	if r.status != 200 || r.body != "upstream ok" || got == nil {
		t.Fatalf("through %s: %d %q, reached the upstream: %v", p.via, r.status, r.body, got != nil)
	}
	direct := rawGet(t, p.gateway, "/", lines...)
	if direct.status != 200 {
		t.Fatalf("the gateway itself answers %d %s", direct.status, direct.body)
	}
	for name, vs := range got {
		n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		if !strings.HasPrefix(n, "x-auth-") {
			continue
		}
		canon := http.CanonicalHeaderKey(n)
		if !slices.Contains(identityHeaders, canon) || name != canon {
			t.Errorf("upstream got %s: %q", name, vs)
			continue
		}
		if gv := direct.header.Values(canon); !slices.Equal(vs, gv) {
			t.Errorf("upstream got %s: %q, the gateway answered %q", name, vs, gv)
		}
	}
	for _, name := range identityHeaders {
		if gv := direct.header.Get(name); gv != "" && got.Get(name) == "" {
			t.Errorf("upstream got no %s; the gateway answered %q", name, gv)
		}
	}
	for name, v := range want {
		if vs := got.Values(name); (v == "" && len(vs) != 0) || (v != "" && !slices.Equal(vs, []string{v})) {
			t.Errorf("upstream got %s: %q, want %q", name, vs, v)
		}
	}
	return got
}

// identityWants are what the upstream must get for Alice's API key (by key
// id) and for her first session: her identity, and no credential.
func identityWants(f *testenv.Fixture) (apiKey func(id string) map[string]string, session map[string]string) {
	u := f.Users
	apiKey = func(id string) map[string]string {
		return map[string]string{
			"X-Auth-User-Id": u.Alice.ID, "X-Auth-User-Email": u.Alice.Email, "X-Auth-User-Role": "user",
			"X-Auth-Method": "api_key", "X-Auth-Key-Id": id, "X-Auth-Session-Id": "",
			"X-Api-Key": "", "Authorization": "",
		}
	}
	session = map[string]string{
		"X-Auth-User-Id": u.Alice.ID, "X-Auth-User-Email": u.Alice.Email, "X-Auth-User-Role": "user",
		"X-Auth-Method": "session", "X-Auth-Key-Id": "", "X-Auth-Session-Id": f.SessionIDs["alice"],
		"X-Api-Key": "", "Authorization": "",
	}
	return apiKey, session
}

// everyCredential checks each way of presenting a credential through the
// proxy at addr: what the upstream gets, and that the credential is not
// among it.
func (p proxyCheck) everyCredential(t *testing.T, addr string, f *testenv.Fixture) {
	u, k := f.Users, f.Keys
	apiKey, session := identityWants(f)
	enc := func(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }
	check := p
	t.Run("bearer API key", func(t *testing.T) {
		check.through(t, addr, apiKey(k.Valid2.ID), "Authorization: Bearer "+k.Valid2.Key)
	})
	t.Run("signed session token as a lower-case bearer", func(t *testing.T) {
		check.through(t, addr, session, "Authorization: bearer "+u.Alice.Signed)
	})
	t.Run("basic authorization beside an API key is kept", func(t *testing.T) {
		want := apiKey(k.Valid.ID)
		want["Authorization"] = "Basic dXNlcjpwYXNz"
		check.through(t, addr, want, "X-Api-Key: "+k.Valid.Key, "Authorization: Basic dXNlcjpwYXNz")
	})
	t.Run("session cookie", func(t *testing.T) {
		want := withValue(session, "Cookie", "theme=dark; lang=en")
		check.through(t, addr, want, "Cookie: theme=dark; better-auth.session_token="+enc(u.Alice.Signed)+"; lang=en")
	})
	t.Run("session cookies only", func(t *testing.T) {
		want := withValue(session, "Cookie", "")
		check.through(t, addr, want, "Cookie: __Secure-better-auth.session_token="+enc(u.Alice.Signed)+"; better-auth.session_data.0=e30")
	})
	t.Run("plugins' credential cookies beside an API key", func(t *testing.T) {
		want := withValue(apiKey(k.Valid.ID), "Cookie", "theme=dark")
		check.through(t, addr, want, "X-Api-Key: "+k.Valid.Key, "Cookie: theme=dark"+
			"; better-auth.admin_session="+u.Alice.Token+"%3A.c2ln"+
			"; better-auth.session_token_multi-"+strings.ToLower(u.Alice.Token)+"="+enc(u.Alice.Signed)+
			"; \xa0better-auth.session_token="+enc(u.Zoe.Signed))
	})
	t.Run("a stored name cannot add a header", func(t *testing.T) {
		got := check.through(t, addr, map[string]string{"X-Auth-User-Role": "user", "X-Auth-Key-Id": k.Eve.ID},
			"X-Api-Key: "+k.Eve.Key)
		if n := got.Get("X-Auth-User-Name"); n != "Eve%0D%0AX-Auth-User-Role: admin" {
			t.Errorf("X-Auth-User-Name = %q", n)
		}
	})
}

// denials checks that the proxy at addr answers the gateway's denials, with
// its status, JSON code and challenge, and that none reaches the upstream.
// noCredential are the header lines of a request without a credential.
func (p proxyCheck) denials(t *testing.T, addr string, f *testenv.Fixture, noCredential []string) {
	for _, tc := range []struct {
		name   string
		lines  []string
		status int
		code   string
	}{
		{"no credential", noCredential, 401, "MISSING_CREDENTIAL"},
		{"unknown key", []string{"X-Api-Key: ba_" + strings.Repeat("x", 64), "X-Auth-User-Id: " + f.Users.Alice.ID}, 401, "INVALID_API_KEY"},
		{"banned user", []string{"X-Api-Key: " + f.Keys.Banned.Key}, 403, "USER_BANNED"},
		{"exhausted key", []string{"Authorization: Bearer " + f.Keys.Exhausted.Key}, 429, "USAGE_EXCEEDED"},
	} {
		t.Run("deny/"+tc.name, func(t *testing.T) {
			r := rawGet(t, addr, "/", tc.lines...)
			if r.status != tc.status || r.code != tc.code {
				t.Errorf("got %d %q, want %d %s", r.status, r.body, tc.status, tc.code)
			}
			if ct := r.header.Values("Content-Type"); !slices.Equal(ct, []string{"application/json"}) {
				t.Errorf("Content-Type = %q", ct)
			}
			if wa := r.header.Values("Www-Authenticate"); (tc.status == 401) != (len(wa) == 1 && strings.HasPrefix(wa[0], `Bearer realm="better-auth"`)) {
				t.Errorf("WWW-Authenticate = %q on %d", wa, tc.status)
			}
			if p.up.headers(r.id) != nil {
				t.Error("a denied request reached the upstream")
			}
		})
	}
}

// streamsThrough opens the upstream's event stream through the proxy at
// addr and checks that it is not buffered.
func (p proxyCheck) streamsThrough(t *testing.T, addr, key string) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET /sse HTTP/1.1\r\nHost: %s\r\nX-Api-Key: %s\r\n\r\n", addr, key)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p.up.readStream(t, resp.Body)
}

// withValue returns a copy of m with name set to v.
func withValue(m map[string]string, name, v string) map[string]string {
	out := map[string]string{name: v}
	for k, mv := range m {
		if k != name {
			out[k] = mv
		}
	}
	return out
}
