package integration

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
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
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

// nginxBinary returns the nginx the test script installs, with its
// auth_request module; without one the test skips, or fails under the test
// script.
func nginxBinary(t *testing.T) string {
	t.Helper()
	missing := func(why string) {
		if os.Getenv("BETTERAUTH_INTEGRATION") == "1" {
			t.Fatalf("%s; scripts/services.sh's ensure_packages installs it", why)
		}
		t.Skipf("%s; run scripts/test.sh for integration tests", why)
	}
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
		if _, err := os.Stat(bin); err != nil {
			missing("nginx is not installed")
		}
	}
	out, _ := exec.Command(bin, "-V").CombinedOutput()
	if !strings.Contains(string(out), "http_auth_request_module") {
		missing(bin + " has no auth_request module")
	}
	return bin
}

// exampleNginxConf returns examples/nginx.conf with its three addresses
// replaced: nginx's listen port, the gateway's HTTP mode and the MCP server.
func exampleNginxConf(t *testing.T, port int, gateway, mcp string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "examples", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(raw)
	for _, r := range [][2]string{
		{"listen 8080;", fmt.Sprintf("listen 127.0.0.1:%d;", port)},
		{"127.0.0.1:9192", gateway},
		{"127.0.0.1:9000", mcp},
	} {
		// Only in directives: the file's comments name the addresses too.
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
			t.Fatalf("examples/nginx.conf: %q appears in %d directives, want 1", r[0], n)
		}
		conf = strings.Join(out, "")
	}
	return conf
}

// startNginx runs nginx in the foreground with site (a file for nginx's http
// block) inside a test-only main context, and returns once its workers
// started; the listening sockets are open before that.
func startNginx(t *testing.T, site string) {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "site.conf"), []byte(site), 0o600); err != nil {
		t.Fatal(err)
	}
	user := ""
	if os.Geteuid() == 0 { // workers would run as nobody, who cannot enter dir
		user = "user root;"
	}
	mainConf := fmt.Sprintf(`%[2]s
worker_processes 1;
error_log stderr notice;
pid %[1]s/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/site.conf;
}
`, dir, user)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(mainConf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", "stderr", "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its workers too, when the test ends
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	logs := &strings.Builder{}
	ready, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			mu.Lock()
			logs.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if !signalled && strings.Contains(sc.Text(), "start worker process ") {
				signalled = true
				close(ready)
			}
		}
	}()
	log := func() string { mu.Lock(); defer mu.Unlock(); return logs.String() }
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		cmd.Wait()
		if t.Failed() {
			t.Logf("nginx log:\n%s", log())
		}
	})
	select {
	case <-ready:
	case <-done:
		t.Fatalf("nginx exited:\n%s", log())
	case <-time.After(30 * time.Second):
		t.Fatalf("nginx did not start:\n%s", log())
	}
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

// The shipped nginx example, run by nginx between a client and the
// recording upstream, with the gateway's HTTP mode (the Caddy app) as its
// auth_request service: the upstream gets the gateway's identity and never
// the client's forged X-Auth-* headers or its credential.
func TestNginxExample(t *testing.T) {
	t.Parallel()
	nginxBinary(t)
	f := testenv.Seed(t, testenv.SeedOptions{})
	u, k := f.Users, f.Keys
	up := newUpstream(t)
	gwAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	gw := testenv.StartCaddy(t, fmt.Sprintf(`better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		http %s
	}`, gwAddr), `respond "not this site" 404`,
		"DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)
	gw.WaitForLog(t, "serving ext_authz HTTP", 10*time.Second)
	port := testenv.FreePort(t)
	startNginx(t, exampleNginxConf(t, port, gwAddr, up.addr()))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	enc := func(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }

	// through sends a request through nginx and checks that it reached the
	// upstream with exactly the identity headers the gateway answers the
	// same request with, and want's values among them ("" for absent).
	through := func(t *testing.T, want map[string]string, lines ...string) http.Header {
		t.Helper()
		r := rawGet(t, addr, "/", lines...)
		got := up.headers(r.id)
		if r.status != 200 || r.body != "upstream ok" || got == nil {
			t.Fatalf("through nginx: %d %q, reached the upstream: %v", r.status, r.body, got != nil)
		}
		direct := rawGet(t, gwAddr, "/", lines...)
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
	apiKey := func(id string) map[string]string {
		return map[string]string{
			"X-Auth-User-Id": u.Alice.ID, "X-Auth-User-Email": u.Alice.Email, "X-Auth-User-Role": "user",
			"X-Auth-Method": "api_key", "X-Auth-Key-Id": id, "X-Auth-Session-Id": "",
			"X-Api-Key": "", "Authorization": "",
		}
	}
	session := map[string]string{
		"X-Auth-User-Id": u.Alice.ID, "X-Auth-User-Email": u.Alice.Email, "X-Auth-User-Role": "user",
		"X-Auth-Method": "session", "X-Auth-Key-Id": "", "X-Auth-Session-Id": f.SessionIDs["alice"],
		"X-Api-Key": "", "Authorization": "",
	}

	t.Run("forged identity headers and session cookies beside an API key", func(t *testing.T) {
		want := apiKey(k.Valid.ID)
		want["Cookie"] = "theme=dark"
		got := through(t, want,
			"X-Api-Key: "+k.Valid.Key,
			"X-Auth-User-Id: forged",
			"X-Auth-User-Email: evil@x",
			"X-Auth-User-Name: forged",
			"X-Auth-User-Role: admin",
			"X-Auth-Method: session",
			"X-Auth-Key-Id: forged",
			"X-Auth-Session-Id: forged",
			"x-auth-key-id: forged",
			"X-AUTH-USER-ROLE: admin",
			"x_auth_user_role: admin",
			"X-Auth_User_Id: forged",
			"Cookie: theme=dark; better-auth.session_token="+enc(u.Alice.Signed)+"; better-auth.session_data=e30",
		)
		if n := got.Get("X-Auth-User-Name"); n != u.Alice.Name {
			t.Errorf("X-Auth-User-Name = %q, want %q", n, u.Alice.Name)
		}
	})
	t.Run("bearer API key", func(t *testing.T) {
		through(t, apiKey(k.Valid2.ID), "Authorization: Bearer "+k.Valid2.Key)
	})
	t.Run("signed session token as a lower-case bearer", func(t *testing.T) {
		through(t, session, "Authorization: bearer "+u.Alice.Signed)
	})
	t.Run("basic authorization beside an API key is kept", func(t *testing.T) {
		want := apiKey(k.Valid.ID)
		want["Authorization"] = "Basic dXNlcjpwYXNz"
		through(t, want, "X-Api-Key: "+k.Valid.Key, "Authorization: Basic dXNlcjpwYXNz")
	})
	t.Run("session cookie", func(t *testing.T) {
		want := withValue(session, "Cookie", "theme=dark; lang=en")
		through(t, want, "Cookie: theme=dark; better-auth.session_token="+enc(u.Alice.Signed)+"; lang=en")
	})
	t.Run("session cookies only", func(t *testing.T) {
		want := withValue(session, "Cookie", "")
		through(t, want, "Cookie: __Secure-better-auth.session_token="+enc(u.Alice.Signed)+"; better-auth.session_data.0=e30")
	})
	t.Run("a stored name cannot add a header", func(t *testing.T) {
		got := through(t, map[string]string{"X-Auth-User-Role": "user", "X-Auth-Key-Id": k.Eve.ID},
			"X-Api-Key: "+k.Eve.Key)
		if n := got.Get("X-Auth-User-Name"); n != "Eve%0D%0AX-Auth-User-Role: admin" {
			t.Errorf("X-Auth-User-Name = %q", n)
		}
	})

	for _, tc := range []struct {
		name   string
		lines  []string
		status int
		code   string
	}{
		{"no credential", nil, 401, "MISSING_CREDENTIAL"},
		{"unknown key", []string{"X-Api-Key: ba_" + strings.Repeat("x", 64), "X-Auth-User-Id: " + u.Alice.ID}, 401, "INVALID_API_KEY"},
		{"banned user", []string{"X-Api-Key: " + k.Banned.Key}, 403, "USER_BANNED"},
		{"exhausted key", []string{"Authorization: Bearer " + k.Exhausted.Key}, 429, "USAGE_EXCEEDED"},
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
			if up.headers(r.id) != nil {
				t.Error("a denied request reached the upstream")
			}
		})
	}

	t.Run("server-sent events stream through", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "GET /sse HTTP/1.1\r\nHost: x\r\nX-Api-Key: %s\r\n\r\n", k.Valid.Key)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		rd := bufio.NewReader(resp.Body)
		// The upstream holds the stream open until released: the first event
		// must arrive before that.
		for _, want := range []string{"event: hello", "data: first"} {
			line, err := rd.ReadString('\n')
			if err != nil || strings.TrimSpace(line) != want {
				t.Fatalf("read %q, %v; want %q", line, err, want)
			}
		}
		close(up.release)
		rest, _ := io.ReadAll(rd)
		if !strings.Contains(string(rest), "data: last") {
			t.Fatalf("stream ended with %q", rest)
		}
	})
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
