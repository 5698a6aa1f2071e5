package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// collector is an OTLP gRPC trace collector: it keeps every span exported
// to it, and every attribute it saw (resources' and scopes' included).
type collector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu      sync.Mutex
	spans   []*tracepb.Span
	attrs   []*commonpb.KeyValue
	changed chan struct{}
}

// startCollector serves a collector on a free local port; env points an
// OpenTelemetry SDK at it, with a short batch delay.
func startCollector(t *testing.T) (c *collector, env []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c = &collector{changed: make(chan struct{})}
	gs := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(gs, c)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return c, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + ln.Addr().String(),
		"OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
		"OTEL_EXPORTER_OTLP_INSECURE=true",
		"OTEL_TRACES_EXPORTER=otlp",
		"OTEL_TRACES_SAMPLER=parentbased_always_on",
		"OTEL_BSP_SCHEDULE_DELAY=50",
	}
}

func (c *collector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		c.attrs = append(c.attrs, rs.GetResource().GetAttributes()...)
		for _, ss := range rs.GetScopeSpans() {
			c.attrs = append(c.attrs, ss.GetScope().GetAttributes()...)
			for _, sp := range ss.GetSpans() {
				c.spans = append(c.spans, sp)
				c.attrs = append(c.attrs, sp.GetAttributes()...)
				for _, ev := range sp.GetEvents() {
					c.attrs = append(c.attrs, ev.GetAttributes()...)
				}
			}
		}
	}
	close(c.changed)
	c.changed = make(chan struct{})
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// trace waits until the span named name of trace id has arrived, and
// returns it with every span of that trace received so far (its children
// end before it, and are exported no later).
func (c *collector) trace(t *testing.T, id, name string) (*tracepb.Span, []*tracepb.Span) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		c.mu.Lock()
		var root *tracepb.Span
		var all []*tracepb.Span
		for _, sp := range c.spans {
			if hex.EncodeToString(sp.GetTraceId()) == id {
				all = append(all, sp)
				if sp.GetName() == name {
					root = sp
				}
			}
		}
		changed := c.changed
		c.mu.Unlock()
		if root != nil {
			return root, all
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no %s span of trace %s within 15s", name, id)
		}
	}
}

// holdsNone fails if any attribute seen holds one of secrets.
func (c *collector) holdsNone(t *testing.T, secrets ...string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, kv := range c.attrs {
		v := kv.GetValue().String()
		for _, s := range secrets {
			if s != "" && strings.Contains(v, s) {
				t.Errorf("span attribute %s holds a secret", kv.GetKey())
			}
		}
	}
	for _, sp := range c.spans {
		for _, s := range secrets {
			if s != "" && (strings.Contains(sp.GetStatus().GetMessage(), s) || strings.Contains(sp.GetName(), s)) {
				t.Errorf("span %s holds a secret", sp.GetName())
			}
		}
	}
}

func attrMap(sp *tracepb.Span) map[string]string {
	m := map[string]string{}
	for _, kv := range sp.GetAttributes() {
		v := kv.GetValue()
		switch {
		case v.GetStringValue() != "":
			m[kv.GetKey()] = v.GetStringValue()
		default:
			m[kv.GetKey()] = strconv.FormatInt(v.GetIntValue(), 10)
		}
	}
	return m
}

// traceparent returns a new sampled W3C trace context: the header, and its
// trace and span ids.
func traceparent() (header, traceID, spanID string) {
	b := make([]byte, 24)
	rand.Read(b)
	traceID, spanID = hex.EncodeToString(b[:16]), hex.EncodeToString(b[16:])
	return "00-" + traceID + "-" + spanID + "-01", traceID, spanID
}

// wantSpan checks a decision's span: its attributes, and its lookup
// children (lookups: how many read the database).
func wantSpan(t *testing.T, what string, sp *tracepb.Span, all []*tracepb.Span, want map[string]string, lookups int) {
	t.Helper()
	got := attrMap(sp)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s = %q, want %q (all: %v)", what, k, got[k], v, got)
		}
	}
	n := 0
	for _, c := range all {
		if c.GetName() != "better_auth.lookup" {
			continue
		}
		n++
		if hex.EncodeToString(c.GetParentSpanId()) != hex.EncodeToString(sp.GetSpanId()) {
			t.Errorf("%s: the lookup span is not the decision's child", what)
		}
		if a := attrMap(c); a["db.system.name"] != "postgresql" || c.GetKind() != tracepb.Span_SPAN_KIND_CLIENT {
			t.Errorf("%s: lookup span %v, kind %v", what, a, c.GetKind())
		}
	}
	if n != lookups {
		t.Errorf("%s: %d lookup spans, want %d", what, n, lookups)
	}
}

// With Caddy's tracing handler around better_auth, each request's span
// (continuing the client's trace) carries the method, the decision, its
// code and the tier that answered, a miss has a child span for the
// database read, and no span holds a key or a session token.
func TestTracingThroughCaddy(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	col, otel := startCollector(t)
	up := newUpstream(t)
	gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	tracing {
		span better_auth_request
	}
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
	}
	reverse_proxy %s`, up.addr()),
		append(otel, "DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret)...)
	settle(t, gw, false)

	unknown := f.Keys.Valid.Key[:len(f.Keys.Valid.Key)-4] + "zzzz"
	for _, c := range []struct {
		what    string
		hdr     http.Header
		status  int
		want    map[string]string
		lookups int
	}{
		{"allowed key, miss", h("X-Api-Key", f.Keys.Valid.Key), 200,
			map[string]string{"better_auth.method": "api_key", "better_auth.decision": "allow", "better_auth.code": "OK", "better_auth.cache": "database"}, 1},
		{"allowed key, hit", h("X-Api-Key", f.Keys.Valid.Key), 200,
			map[string]string{"better_auth.method": "api_key", "better_auth.decision": "allow", "better_auth.code": "OK", "better_auth.cache": "memory"}, 0},
		{"disabled key", h("X-Api-Key", f.Keys.Disabled.Key), 401,
			map[string]string{"better_auth.method": "api_key", "better_auth.decision": "deny", "better_auth.code": "KEY_DISABLED", "better_auth.cache": "database"}, 1},
		{"unknown key", h("X-Api-Key", unknown), 401,
			map[string]string{"better_auth.method": "api_key", "better_auth.decision": "deny", "better_auth.code": "INVALID_API_KEY", "better_auth.cache": "database"}, 1},
		{"unknown key again", h("X-Api-Key", unknown), 401,
			map[string]string{"better_auth.decision": "deny", "better_auth.cache": "negative"}, 0},
		{"session", h("Authorization", "Bearer "+f.Users.Alice.Signed), 200,
			map[string]string{"better_auth.method": "session", "better_auth.decision": "allow", "better_auth.code": "OK", "better_auth.cache": "database"}, 1},
	} {
		tp, traceID, parent := traceparent()
		c.hdr.Set("Traceparent", tp)
		if r := send(t, gw, "/", c.hdr); r.status != c.status {
			t.Fatalf("%s: %d %s", c.what, r.status, r.raw)
		}
		sp, all := col.trace(t, traceID, "better_auth_request")
		if hex.EncodeToString(sp.GetParentSpanId()) != parent {
			t.Errorf("%s: the request span's parent is not the client's span", c.what)
		}
		wantSpan(t, c.what, sp, all, c.want, c.lookups)
	}
	col.holdsNone(t, f.Keys.Valid.Key, f.Keys.Disabled.Key, unknown, f.Users.Alice.Token, f.Users.Alice.Signed,
		f.DatabaseURL, testenv.Secret)
}

// The standalone ext_authz server, with the standard OTEL_* environment,
// traces each decision in a server span that continues Envoy's trace (the
// Check call's metadata), else the client's (the request's headers, over
// gRPC and in the HTTP mode).
func TestTracingStandaloneExtAuthz(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	col, otel := startCollector(t)
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	sa := testenv.StartProcess(t, "serving ext_authz HTTP",
		append(otel, "DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret),
		testenv.ExtAuthzBinary(t), "-grpc", grpcAddr, "-http", httpAddr)
	sa.WaitForLog(t, "tracing decisions", 10*time.Second)
	front := httpFront("http://" + httpAddr)
	front(t, h("X-Api-Key", "ba_start_the_listener")) // which purges the cache once it listens
	sa.WaitForLog(t, "listening for revocations", 10*time.Second)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	check := func(ctx context.Context, headers map[string]string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/", Headers: headers}}}})
		if err != nil {
			t.Fatal(err)
		}
	}

	// Envoy's span (metadata) wins over the client's (headers).
	envoyTP, envoyTrace, envoySpan := traceparent()
	clientTP, _, _ := traceparent()
	check(metadata.AppendToOutgoingContext(context.Background(), "traceparent", envoyTP),
		map[string]string{"x-api-key": f.Keys.Valid.Key, "traceparent": clientTP})
	sp, all := col.trace(t, envoyTrace, "better_auth.ext_authz.check")
	if hex.EncodeToString(sp.GetParentSpanId()) != envoySpan || sp.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("check span: parent %x kind %v, want Envoy's span as parent", sp.GetParentSpanId(), sp.GetKind())
	}
	wantSpan(t, "gRPC, allowed", sp, all, map[string]string{"better_auth.method": "api_key", "better_auth.decision": "allow",
		"better_auth.code": "OK", "better_auth.cache": "database", "http.response.status_code": "200"}, 1)

	// Without metadata, the client's trace goes on.
	clientTP, clientTrace, clientSpan := traceparent()
	check(context.Background(), map[string]string{"x-api-key": f.Keys.Disabled.Key, "traceparent": clientTP})
	sp, all = col.trace(t, clientTrace, "better_auth.ext_authz.check")
	if hex.EncodeToString(sp.GetParentSpanId()) != clientSpan {
		t.Errorf("check span: parent %x, want the client's span", sp.GetParentSpanId())
	}
	wantSpan(t, "gRPC, denied", sp, all, map[string]string{"better_auth.decision": "deny", "better_auth.code": "KEY_DISABLED",
		"http.response.status_code": "401"}, 1)

	// The HTTP mode, on the key cached above.
	clientTP, clientTrace, _ = traceparent()
	if v := front(t, h("X-Api-Key", f.Keys.Valid.Key, "Traceparent", clientTP)); v.status != 200 {
		t.Fatalf("HTTP mode: %d", v.status)
	}
	sp, all = col.trace(t, clientTrace, "better_auth.ext_authz.http")
	wantSpan(t, "HTTP mode", sp, all, map[string]string{"better_auth.decision": "allow", "better_auth.cache": "memory"}, 0)

	col.holdsNone(t, f.Keys.Valid.Key, f.Keys.Disabled.Key, f.DatabaseURL, testenv.Secret)
}
