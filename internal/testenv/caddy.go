package testenv

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// binary builds a command of this repository once per test binary.
type binary struct {
	pkg  string // ./cmd/...
	once sync.Once
	path string
	err  error
}

var (
	caddyBin    = &binary{pkg: "./cmd/caddy"}
	extAuthzBin = &binary{pkg: "./cmd/betterauth-extauthz"}
)

func (b *binary) build(t testing.TB) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "caddy-betterauth-bin")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, filepath.Base(b.pkg))
		cmd := exec.Command("go", "build", "-o", b.path, b.pkg)
		cmd.Dir = RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// CaddyBinary returns the Caddy built from cmd/caddy: $CADDY_BIN when the
// test script built it, otherwise a build made once per test binary.
func CaddyBinary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("CADDY_BIN"); bin != "" {
		return bin
	}
	return caddyBin.build(t)
}

// ExtAuthzBinary returns the standalone server built from
// cmd/betterauth-extauthz, once per test binary.
func ExtAuthzBinary(t testing.TB) string {
	t.Helper()
	return extAuthzBin.build(t)
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Caddy is a running gateway process: Caddy, or the standalone server.
type Caddy struct {
	URL string // http://127.0.0.1:port

	cmd     *exec.Cmd
	mu      sync.Mutex
	logs    bytes.Buffer
	newLine chan struct{} // closed and replaced on every line logged
	done    chan struct{}
}

// WaitForLog waits until Caddy has logged a line containing s.
func (c *Caddy) WaitForLog(t testing.TB, s string, timeout time.Duration) {
	t.Helper()
	c.WaitForLogCount(t, s, 1, timeout)
}

// WaitForLogCount waits until Caddy has logged n lines containing s.
func (c *Caddy) WaitForLogCount(t testing.TB, s string, n int, timeout time.Duration) {
	t.Helper()
	c.WaitForLogs(t, fmt.Sprintf("%d lines containing %q", n, s), func(logs string) bool { return strings.Count(logs, s) >= n }, timeout)
}

// WaitForLogs waits until what Caddy has logged so far satisfies cond,
// which is asked again on every new line; what names the condition.
func (c *Caddy) WaitForLogs(t testing.TB, what string, cond func(logs string) bool, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		found, next := cond(c.logs.String()), c.newLine
		c.mu.Unlock()
		if found {
			return
		}
		select {
		case <-next:
		case <-c.done:
			t.Fatalf("caddy exited before logging %s", what)
		case <-deadline:
			t.Fatalf("caddy did not log %s within %v", what, timeout)
		}
	}
}

// Pid returns the Caddy process's id.
func (c *Caddy) Pid() int { return c.cmd.Process.Pid }

// Logs returns everything Caddy has logged so far.
func (c *Caddy) Logs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.logs.String()
}

// GlobalOptions is the global options block of the tests' Caddyfiles: no
// admin endpoint, no HTTPS, loopback only; extra goes inside it.
func GlobalOptions(extra string) string {
	return fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
	default_bind 127.0.0.1
	%s
}
`, extra)
}

// StartCaddy runs the Caddy binary with a Caddyfile whose site block is body
// (the site address and global options are added here). It returns once
// Caddy reports that it serves the configuration, and stops it when the test
// ends.
func StartCaddy(t testing.TB, global, body string, env ...string) *Caddy {
	t.Helper()
	port := FreePort(t)
	c := StartCaddyfile(t, GlobalOptions(global)+fmt.Sprintf("http://127.0.0.1:%d {\n%s\n}\n", port, body), env...)
	c.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
	return c
}

// StartCaddyfile runs the Caddy binary with a whole Caddyfile, as
// StartCaddy does; URL is left empty.
func StartCaddyfile(t testing.TB, caddyfile string, env ...string) *Caddy {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	return StartProcess(t, "serving initial configuration", env, CaddyBinary(t), "run", "--config", path, "--adapter", "caddyfile")
}

// StartCaddyJSON runs the Caddy binary with a JSON config.
func StartCaddyJSON(t testing.TB, config []byte, env ...string) *Caddy {
	t.Helper()
	path := filepath.Join(t.TempDir(), "caddy.json")
	if err := os.WriteFile(path, config, 0o600); err != nil {
		t.Fatal(err)
	}
	return StartProcess(t, "serving initial configuration", env, CaddyBinary(t), "run", "--config", path)
}

// StartProcess runs a gateway process (Caddy, or the standalone ext_authz
// server) with env added to the test's, keeps what it logs to stderr, and
// returns once it has logged a line containing ready. It is stopped when
// the test ends.
func StartProcess(t testing.TB, ready string, env []string, name string, args ...string) *Caddy {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	cmd.Env = append(cmd.Env, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &Caddy{cmd: cmd, done: make(chan struct{}), newLine: make(chan struct{})}
	cmd.Stdout = nil
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readyCh := make(chan struct{})
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		signalled := false
		for sc.Scan() {
			c.mu.Lock()
			c.logs.Write(sc.Bytes())
			c.logs.WriteByte('\n')
			close(c.newLine)
			c.newLine = make(chan struct{})
			c.mu.Unlock()
			if !signalled && strings.Contains(sc.Text(), ready) {
				signalled = true
				close(readyCh)
			}
		}
	}()
	t.Cleanup(func() { c.Stop(t) })
	select {
	case <-readyCh:
	case <-c.done:
		t.Fatalf("%s exited before serving:\n%s", filepath.Base(name), c.Logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start within 30s:\n%s", filepath.Base(name), c.Logs())
	}
	return c
}

// Stop ends Caddy gracefully and waits for it.
func (c *Caddy) Stop(t testing.TB) {
	if c.cmd.ProcessState != nil {
		return
	}
	c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
	c.cmd.Wait()
}

// Postgres is a PostgreSQL server owned by one test, which may stop it.
type Postgres struct {
	URL        string
	dir, bin   string
	port       int
	runAsOwner []string
}

// StartPostgres starts a private PostgreSQL cluster, for tests that stop the
// database. It uses the server binaries the test script uses.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bin := Require(t, "PG_BIN")
	dir, err := os.MkdirTemp("", "caddy-betterauth-pg-")
	if err != nil {
		t.Fatal(err)
	}
	p := &Postgres{dir: dir, bin: bin, port: FreePort(t)}
	if os.Geteuid() == 0 {
		p.runAsOwner = []string{"runuser", "-u", "postgres", "--"}
		if out, err := exec.Command("chown", "postgres", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
	}
	p.run(t, "initdb", "-D", dir+"/data", "-U", "postgres", "-A", "trust", "--no-sync")
	p.Start(t)
	t.Cleanup(func() {
		p.pgctl("-m", "immediate", "stop")
		os.RemoveAll(dir)
	})
	p.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
	return p
}

func (p *Postgres) run(t testing.TB, tool string, args ...string) {
	t.Helper()
	argv := append(append(append([]string{}, p.runAsOwner...), filepath.Join(p.bin, tool)), args...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", tool, err, out)
	}
}

func (p *Postgres) pgctl(args ...string) error {
	argv := append(append(append([]string{}, p.runAsOwner...), filepath.Join(p.bin, "pg_ctl"), "-D", p.dir+"/data", "-w"), args...)
	return exec.Command(argv[0], argv[1:]...).Run()
}

// Start starts (or restarts) the server and waits until it accepts
// connections.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	p.run(t, "pg_ctl", "-D", p.dir+"/data", "-l", p.dir+"/log", "-w", "-o",
		fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c synchronous_commit=off", p.port, p.dir), "start")
}

// Stop shuts the server down at once, as a crash would. What was committed
// is checkpointed first: the test servers run with synchronous_commit off,
// and crash recovery would otherwise lose the latest commits (the seed's).
func (p *Postgres) Stop(t testing.TB) {
	t.Helper()
	if c, err := pgx.Connect(context.Background(), p.URL); err == nil {
		c.Exec(context.Background(), "CHECKPOINT")
		c.Close(context.Background())
	}
	p.run(t, "pg_ctl", "-D", p.dir+"/data", "-w", "-m", "immediate", "stop")
}

// Redis is a redis-server owned by one test, which may stop and restart it.
type Redis struct {
	URL  string
	port int
	dir  string
	cmd  *exec.Cmd
}

// StartRedis starts a private Redis on a free port.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		Require(t, "TEST_REDIS_URL") // skip, or fail under the test script
	}
	r := &Redis{port: FreePort(t), dir: t.TempDir()}
	r.URL = fmt.Sprintf("redis://127.0.0.1:%d/0", r.port)
	r.Start(t)
	t.Cleanup(func() { r.Stop(t) })
	return r
}

// Start (re)starts the server and waits until it answers.
func (r *Redis) Start(t testing.TB) {
	t.Helper()
	r.cmd = exec.Command("redis-server", "--port", fmt.Sprint(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.dir)
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.Contains(sc.Text(), "Ready to accept connections") {
				signalled = true
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("redis-server did not start")
	}
}

// Stop kills the server.
func (r *Redis) Stop(t testing.TB) {
	if r.cmd == nil || r.cmd.Process == nil || r.cmd.ProcessState != nil {
		return
	}
	r.cmd.Process.Kill()
	r.cmd.Wait()
}
