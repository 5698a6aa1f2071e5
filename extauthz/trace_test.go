package extauthz

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	grpcmd "google.golang.org/grpc/metadata"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/cache"
)

const traceKey = "ba_tracedKeyForExtAuthz0123456789abcdefghijklmnop"

// keyStore knows traceKey.
type keyStore struct{}

func (keyStore) Lookup(_ context.Context, l betterauth.Lookup) (betterauth.Record, error) {
	if l.Secret != traceKey {
		return betterauth.Record{}, nil
	}
	return betterauth.Record{APIKey: &betterauth.APIKey{ID: "k1", ConfigID: "default", Enabled: true, User: &betterauth.User{ID: "u1"}}}, nil
}

func tracedServer(t *testing.T) (*Server, *tracetest.SpanRecorder) {
	t.Helper()
	v, err := betterauth.NewVerifier(betterauth.Options{Store: cache.New(keyStore{}, cache.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	return New(betterauth.NewGate(betterauth.GateConfig{Verifier: v}), WithTracing(tp, propagation.TraceContext{})), rec
}

// One decision's spans: the server span, and the rest.
func oneDecision(t *testing.T, rec *tracetest.SpanRecorder, name string) (sdktrace.ReadOnlySpan, map[attribute.Key]string, []sdktrace.ReadOnlySpan) {
	t.Helper()
	spans := rec.Ended()
	rec.Reset()
	var server []sdktrace.ReadOnlySpan
	for _, s := range spans {
		for _, kv := range s.Attributes() {
			if strings.Contains(kv.Value.String(), traceKey) {
				t.Errorf("span %s attribute %s holds the key", s.Name(), kv.Key)
			}
		}
		if s.Name() == name {
			server = append(server, s)
		}
	}
	if len(server) != 1 {
		t.Fatalf("%d %s spans among %d", len(server), name, len(spans))
	}
	attrs := map[attribute.Key]string{}
	for _, kv := range server[0].Attributes() {
		attrs[kv.Key] = kv.Value.String()
	}
	if server[0].SpanKind() != trace.SpanKindServer {
		t.Errorf("span kind %v", server[0].SpanKind())
	}
	return server[0], attrs, spans
}

const (
	envoyParent  = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	clientParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
)

// A Check call continues Envoy's trace (its gRPC metadata) before the
// client's (the original request's headers), and starts one when neither
// has any; the span carries the decision.
func TestCheckSpanContinuesTheIncomingTrace(t *testing.T) {
	t.Parallel()
	s, rec := tracedServer(t)
	check := func(ctx context.Context, hdrs map[string]string) {
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Headers: hdrs}}}}
		if _, err := s.Check(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	envoy := grpcmd.NewIncomingContext(context.Background(), grpcmd.Pairs("traceparent", envoyParent))

	check(envoy, map[string]string{"x-api-key": traceKey, "traceparent": clientParent})
	sp, attrs, spans := oneDecision(t, rec, checkSpan)
	if got := sp.Parent(); got.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" || got.SpanID().String() != "b7ad6b7169203331" || !got.IsRemote() {
		t.Errorf("parent %v, want Envoy's span", got)
	}
	want := map[attribute.Key]string{"better_auth.method": "api_key", "better_auth.decision": "allow", "better_auth.code": "OK",
		"better_auth.cache": "database", "http.response.status_code": "200"}
	for k, v := range want {
		if attrs[k] != v {
			t.Errorf("%s = %q, want %q (%v)", k, attrs[k], v, attrs)
		}
	}
	if len(spans) != 2 || spans[0].Name() != "better_auth.lookup" || spans[0].Parent().SpanID() != sp.SpanContext().SpanID() {
		t.Errorf("spans %v: want the lookup as the check's child", spans)
	}

	check(context.Background(), map[string]string{"x-api-key": traceKey + "x", "traceparent": clientParent})
	sp, attrs, _ = oneDecision(t, rec, checkSpan)
	if sp.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace %v, want the client's", sp.SpanContext().TraceID())
	}
	if attrs["better_auth.decision"] != "deny" || attrs["better_auth.code"] != "INVALID_API_KEY" || attrs["http.response.status_code"] != "401" {
		t.Errorf("denied: %v", attrs)
	}

	check(context.Background(), map[string]string{"x-api-key": traceKey})
	sp, attrs, _ = oneDecision(t, rec, checkSpan)
	if sp.Parent().IsValid() || attrs["better_auth.cache"] != "memory" {
		t.Errorf("no incoming context: parent %v, attributes %v", sp.Parent(), attrs)
	}
}

// The HTTP mode continues the trace of the request it was sent.
func TestHTTPModeSpanContinuesTheIncomingTrace(t *testing.T) {
	t.Parallel()
	s, rec := tracedServer(t)
	r := httptest.NewRequest(http.MethodGet, "/anything", nil)
	r.Header.Set("X-Api-Key", traceKey)
	r.Header.Set("Traceparent", clientParent)
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	sp, attrs, _ := oneDecision(t, rec, forwardSpan)
	if sp.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || attrs["better_auth.decision"] != "allow" {
		t.Errorf("trace %v, attributes %v", sp.SpanContext().TraceID(), attrs)
	}
}
