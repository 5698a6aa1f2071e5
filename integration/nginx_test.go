package integration

import (
	"bufio"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

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
	return exampleFile(t, "nginx.conf", [][2]string{
		{"listen 8080;", fmt.Sprintf("listen 127.0.0.1:%d;", port)},
		{"127.0.0.1:9192", gateway},
		{"127.0.0.1:9000", mcp},
	})
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

	check := proxyCheck{up: up, gateway: gwAddr, via: "nginx"}
	apiKey, _ := identityWants(f)

	t.Run("forged identity headers and session cookies beside an API key", func(t *testing.T) {
		want := apiKey(k.Valid.ID)
		want["Cookie"] = "theme=dark"
		got := check.through(t, addr, want,
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
	check.everyCredential(t, addr, f)

	check.denials(t, addr, f, nil)

	t.Run("server-sent events stream through", func(t *testing.T) { check.streamsThrough(t, addr, k.Valid.Key) })
}
