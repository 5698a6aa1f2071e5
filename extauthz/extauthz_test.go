package extauthz

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// noStore knows no credential.
type noStore struct{}

func (noStore) Lookup(context.Context, betterauth.Lookup) (betterauth.Record, error) {
	return betterauth.Record{}, nil
}

// Every request to the HTTP mode is a decision, "OPTIONS *" too: net/http
// would otherwise answer it 200 itself, without asking the gate.
func TestHTTPModeAnswersEveryRequestWithADecision(t *testing.T) {
	t.Parallel()
	v, err := betterauth.NewVerifier(betterauth.Options{Store: noStore{}})
	if err != nil {
		t.Fatal(err)
	}
	sv, err := Listeners{HTTP: "127.0.0.1:0"}.Serve(New(betterauth.NewGate(betterauth.GateConfig{Verifier: v})),
		func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer sv.Stop(context.Background())
	addr := sv.lns[0].Addr().String()
	for _, line := range []string{"OPTIONS * HTTP/1.1", "OPTIONS / HTTP/1.1", "HEAD /healthz HTTP/1.1", "GET /healthz HTTP/1.1", "POST /mcp HTTP/1.1"} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte(line + "\r\nHost: auth\r\nX-Auth-User-Id: forged\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: strings.Fields(line)[0]})
		conn.Close()
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s without a credential: %d %v, want 401 with a challenge", line, resp.StatusCode, resp.Header)
		}
	}
}
