package integration

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	cryptorand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/caddy-betterauth/caddy-betterauth/demo"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// startExtAuthz builds and starts the standalone server with args, on a
// SQLite database the demo writes, and waits until it serves.
func startExtAuthz(t *testing.T, args ...string) (*exec.Cmd, *demo.Credentials, *strings.Builder) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "betterauth-extauthz")
	build := exec.Command("go", "build", "-o", bin, "./cmd/betterauth-extauthz")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	db := filepath.Join(dir, "auth.db")
	creds, err := demo.Create(context.Background(), db, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL=sqlite://"+db, "BETTER_AUTH_SECRET=standalone-secret-0123456789abcdefghijkl")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	ready := make(chan struct{})
	logs := &strings.Builder{}
	go func() {
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if !signalled && strings.Contains(sc.Text(), "serving ext_authz") {
				signalled = true
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not start")
	}
	return cmd, creds, logs
}

// The standalone server, started as a process: health-checked, sent real
// Check calls, and stopped cleanly.
func TestStandaloneExtAuthz(t *testing.T) {
	t.Parallel()
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cmd, creds, logs := startExtAuthz(t, "-grpc", grpcAddr, "-http", httpAddr, "-api-key-prefix", demo.KeyPrefix)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hr, err)
	}
	client := authv3.NewAuthorizationClient(conn)
	check := func(headers map[string]string) *authv3.CheckResponse {
		resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/mcp", Headers: headers},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := check(map[string]string{"authorization": "Bearer " + creds.APIKey}); codes.Code(r.GetStatus().GetCode()) != codes.OK || r.GetOkResponse() == nil {
		t.Fatalf("valid key: %v", r)
	}
	if r := check(map[string]string{}); codes.Code(r.GetStatus().GetCode()) != codes.Unauthenticated || r.GetDeniedResponse().GetStatus().GetCode() != 401 {
		t.Fatalf("no key: %v", r)
	}
	// Envoy's http_service sends the original method and path: no request
	// to the HTTP mode may answer 200 without a credential (it once had a
	// /healthz, and net/http answers "OPTIONS *" itself unless told not to).
	for _, line := range []string{"GET /healthz", "GET /", "POST /mcp", "HEAD /", "OPTIONS /", "OPTIONS *"} {
		if status := rawStatus(t, httpAddr, line+" HTTP/1.1\r\nHost: auth\r\nContent-Length: 0\r\n\r\n"); status != http.StatusUnauthorized {
			t.Fatalf("%s without a credential: %d, want 401", line, status)
		}
	}

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("did not stop on SIGTERM")
	}
	for _, addr := range []string{grpcAddr, httpAddr} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s still listens", addr)
		}
	}
}

// rawStatus sends one raw HTTP/1.1 request to addr and returns the status
// of the answer.
func rawStatus(t *testing.T, addr, raw string) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: strings.Fields(raw)[0]})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The same service from inside Caddy, configured as a global option; the
// site's handler shares its database pool and cache.
func TestCaddyServesExtAuthz(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "auth.db")
	creds, err := demo.Create(context.Background(), db, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	up := newUpstream(t)
	gw := testenv.StartCaddy(t, fmt.Sprintf(`better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		grpc %s
		http %s
	}`, grpcAddr, httpAddr), fmt.Sprintf(`
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
	}
	reverse_proxy %s`, up.addr()), "DATABASE_URL=sqlite://"+db, "BETTER_AUTH_SECRET=app-secret-0123456789abcdefghijklmnopqrstu")
	gw.WaitForLog(t, "serving ext_authz HTTP", 10*time.Second)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hr, err)
	}
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Headers: map[string]string{"x-api-key": creds.APIKey}},
	}}})
	if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("Check: %v %v", resp, err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/", nil)
	req.Header.Set("X-Api-Key", "ba_wrong")
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 401 {
		t.Fatalf("HTTP mode: %v %v", r, err)
	}
	if status := rawStatus(t, httpAddr, "OPTIONS * HTTP/1.1\r\nHost: auth\r\n\r\n"); status != 401 {
		t.Fatalf("HTTP mode, OPTIONS * without a credential: %d, want 401", status)
	}
	if r := send(t, gw, "/", h("X-Api-Key", creds.APIKey)); r.status != 200 {
		t.Fatalf("the site's handler: %d %s", r.status, r.raw)
	}
	gw.Stop(t)
	for _, addr := range []string{grpcAddr, httpAddr} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s still listens after Caddy stopped", addr)
		}
	}
}

// With -tls-cert and -tls-key the gRPC listener speaks TLS only.
func TestStandaloneExtAuthzTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ext-authz"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(cryptorand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	startExtAuthz(t, "-grpc", grpcAddr, "-http", "", "-tls-cert", certFile, "-tls-key", keyFile)

	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tlsConn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	defer tlsConn.Close()
	if hr, err := healthpb.NewHealthClient(tlsConn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health over TLS: %v %v", hr, err)
	}
	plain, _ := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer plain.Close()
	pctx, pcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer pcancel()
	if _, err := healthpb.NewHealthClient(plain).Check(pctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("a plaintext client was served")
	}
}
