package extauthz

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"

	"github.com/caddy-betterauth/caddy-betterauth/audit"
	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/ratelimit"
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

// Check takes whatever Envoy (or anyone reaching the port) sends: missing
// messages, nil header entries, raw bytes, the same name in headers and
// header_map, pseudo-headers. It never panics, and never allows without a
// credential.
func TestCheckMalformedRequests(t *testing.T) {
	t.Parallel()
	v, err := betterauth.NewVerifier(betterauth.Options{Store: noStore{}})
	if err != nil {
		t.Fatal(err)
	}
	s := New(betterauth.NewGate(betterauth.GateConfig{Verifier: v}))
	httpReq := func(h *authv3.AttributeContext_HttpRequest) *authv3.CheckRequest {
		return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: h}}}
	}
	for name, req := range map[string]*authv3.CheckRequest{
		"nil":           nil,
		"no attributes": {},
		"no request":    {Attributes: &authv3.AttributeContext{}},
		"no http":       {Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}},
		"nil entries":   httpReq(&authv3.AttributeContext_HttpRequest{HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{nil, {}}}}),
		"pseudo-headers and raw bytes": httpReq(&authv3.AttributeContext_HttpRequest{
			Headers:   map[string]string{":authority": "x", ":path": "/", "x-auth-user-id": "forged", "": ""},
			HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "x-api-key", RawValue: []byte{0xff, 0}}, {Key: "X-AUTH-USER-ID", RawValue: []byte("forged")}}},
		}),
		"one key in both": httpReq(&authv3.AttributeContext_HttpRequest{
			Headers:   map[string]string{"x-api-key": "ba_a"},
			HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "x-api-key", Value: "ba_b"}}},
		}),
	} {
		resp, err := s.Check(context.Background(), req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if resp.GetOkResponse() != nil || codes.Code(resp.GetStatus().GetCode()) == codes.OK || resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
			t.Errorf("%s: %v, want a 401 denial", name, resp)
		}
	}
}

// Address rules see Envoy's downstream address in a Check, and the caller
// in the HTTP mode; never a header the client sets.
func TestAddressRulesSeeTheRightAddress(t *testing.T) {
	t.Parallel()
	v, err := betterauth.NewVerifier(betterauth.Options{Store: noStore{}})
	if err != nil {
		t.Fatal(err)
	}
	s := New(betterauth.NewGate(betterauth.GateConfig{Verifier: v,
		Rules: betterauth.Rules{AllowIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}))
	check := func(source string) int32 {
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: source}}}},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Headers: map[string]string{"x-forwarded-for": "10.1.2.3"}}},
		}}
		resp, err := s.Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return int32(resp.GetDeniedResponse().GetStatus().GetCode())
	}
	// Inside the prefix the request gets as far as the credential (none:
	// 401); outside, or unknown, it is refused first (403), whatever
	// X-Forwarded-For says.
	for source, want := range map[string]int32{"10.9.9.9": 401, "::ffff:10.9.9.9": 401, "192.168.1.1": 403, "": 403} {
		if got := check(source); got != want {
			t.Errorf("source %q: %d, want %d", source, got, want)
		}
	}
	for remote, want := range map[string]int{"10.9.9.9:5000": 401, "127.0.0.1:5000": 403} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", "10.1.2.3")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("HTTP mode from %s: %d, want %d", remote, w.Code, want)
		}
	}
}

// oneKey knows one API key.
type oneKey struct{}

func (oneKey) Lookup(context.Context, betterauth.Lookup) (betterauth.Record, error) {
	return betterauth.Record{APIKey: &betterauth.APIKey{ID: "k1", ConfigID: "default", Enabled: true,
		User: &betterauth.User{ID: "u1", Name: "Alice", Email: "alice@example.com"}}}.Seal(), nil
}

// A rate_limit refusal reaches Envoy as 429 with Retry-After, in the gRPC
// answer and in the HTTP mode alike.
func TestRateLimitedAnswersCarryRetryAfter(t *testing.T) {
	t.Parallel()
	v, err := betterauth.NewVerifier(betterauth.Options{Store: oneKey{}})
	if err != nil {
		t.Fatal(err)
	}
	lim, err := ratelimit.NewStore(ratelimit.Options{}).Limiter([]ratelimit.Tier{{Name: "u", Key: ratelimit.KeyUser, Rate: 1, Per: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	s := New(betterauth.NewGate(betterauth.GateConfig{Verifier: v, Limiter: lim}))
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Headers: map[string]string{"x-api-key": "ba_anything"}}}}}
	if resp, _ := s.Check(context.Background(), req); resp.GetOkResponse() == nil {
		t.Fatalf("first request: %v", resp)
	}
	resp, _ := s.Check(context.Background(), req)
	denied := resp.GetDeniedResponse()
	if denied == nil || denied.GetStatus().GetCode() != 429 || codes.Code(resp.GetStatus().GetCode()) != codes.ResourceExhausted {
		t.Fatalf("second request: %v", resp)
	}
	retry := ""
	for _, h := range denied.GetHeaders() {
		if strings.EqualFold(h.GetHeader().GetKey(), "Retry-After") {
			retry = h.GetHeader().GetValue()
		}
	}
	if retry != "3600" || !strings.Contains(denied.GetBody(), "RATE_LIMIT_EXCEEDED") {
		t.Fatalf("Retry-After %q, body %s", retry, denied.GetBody())
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("X-Api-Key", "ba_anything")
	s.ServeHTTP(w, r)
	if w.Code != 429 || w.Header().Get("Retry-After") != "3600" {
		t.Fatalf("HTTP mode: %d %v", w.Code, w.Header())
	}
}

// countingMeter allows every use, with a rate limit of 5 a minute.
type countingMeter struct{ n int64 }

func (m *countingMeter) Use(context.Context, *betterauth.APIKey) (betterauth.Usage, error) {
	m.n++
	return betterauth.Usage{HasRemaining: true, Remaining: 100 - m.n, Limit: 5, Window: time.Minute, Left: 5 - m.n, Reset: time.Minute}, nil
}

// A counted key's limits reach the client through Envoy: the gRPC answer
// adds the RateLimit fields to the response, the HTTP mode's 200 carries
// them; upstream gets what is left of the quota.
func TestUsageHeaders(t *testing.T) {
	t.Parallel()
	v, err := betterauth.NewVerifier(betterauth.Options{Store: oneKey{}, Metered: true})
	if err != nil {
		t.Fatal(err)
	}
	s := New(betterauth.NewGate(betterauth.GateConfig{Verifier: v, Meter: &countingMeter{}}))
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Headers: map[string]string{"x-api-key": "ba_anything", "x-auth-key-remaining": "1000"}}}}}
	resp, _ := s.Check(context.Background(), req)
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("%v", resp)
	}
	find := func(hs []*corev3.HeaderValueOption, name string) string {
		for _, h := range hs {
			if strings.EqualFold(h.GetHeader().GetKey(), name) {
				return h.GetHeader().GetValue()
			}
		}
		return ""
	}
	if got := find(ok.GetHeaders(), "X-Auth-Key-Remaining"); got != "99" {
		t.Errorf("upstream X-Auth-Key-Remaining %q", got)
	}
	if got := find(ok.GetResponseHeadersToAdd(), "RateLimit"); got != `"api-key-rate-limit";r=4;t=60` {
		t.Errorf("client RateLimit %q (%v)", got, ok.GetResponseHeadersToAdd())
	}
	if find(ok.GetResponseHeadersToAdd(), "RateLimit-Policy") != `"api-key-rate-limit";q=5;w=60` {
		t.Errorf("client RateLimit-Policy: %v", ok.GetResponseHeadersToAdd())
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("X-Api-Key", "ba_anything")
	s.ServeHTTP(w, r)
	if w.Code != 200 || w.Header().Get("RateLimit") != `"api-key-rate-limit";r=3;t=60` || w.Header().Get("X-Auth-Key-Remaining") != "98" {
		t.Fatalf("HTTP mode: %d %v", w.Code, w.Header())
	}
}

// Both modes record their decisions in the audit trail, with the original
// request's host and path (never its query), the client and the code.
func TestAuditEvents(t *testing.T) {
	t.Parallel()
	v, err := betterauth.NewVerifier(betterauth.Options{Store: noStore{}})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	s := New(betterauth.NewGate(betterauth.GateConfig{Verifier: v}), WithAudit(audit.NewLog(audit.Denials, zap.New(core), nil)))
	s.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "203.0.113.9"}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Host: "mcp.example.com", Path: "/mcp?token=secret", Method: "GET",
			Headers: map[string]string{"x-api-key": "ba_not_a_real_key"}}}}})
	r := httptest.NewRequest(http.MethodGet, "http://auth/check", nil)
	r.Header.Set("X-Forwarded-Host", "app.example.com")
	r.Header.Set("X-Forwarded-Uri", "/tools?session=secret")
	s.ServeHTTP(httptest.NewRecorder(), r)
	if logs.Len() != 2 {
		t.Fatalf("%d events", logs.Len())
	}
	grpc, forward := logs.All()[0].ContextMap(), logs.All()[1].ContextMap()
	for k, want := range map[string]string{"front_end": "ext_authz", "host": "mcp.example.com", "path": "/mcp",
		"client_ip": "203.0.113.9", "code": "INVALID_API_KEY", "decision": "deny", "method": "api_key"} {
		if grpc[k] != want {
			t.Errorf("Check: %s = %v, want %q", k, grpc[k], want)
		}
	}
	for k, want := range map[string]string{"host": "app.example.com", "path": "/tools", "code": "MISSING_CREDENTIAL"} {
		if forward[k] != want {
			t.Errorf("HTTP mode: %s = %v, want %q", k, forward[k], want)
		}
	}
}
