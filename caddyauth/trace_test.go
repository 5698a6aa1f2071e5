package caddyauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/metrics"
)

// traced serves one request under a request span, as Caddy's tracing
// handler starts it, and returns the spans ended.
func traced(t testing.TB, h *Handler, tp *sdktrace.TracerProvider, rec *tracetest.SpanRecorder, hdr http.Header) (trace.Span, []sdktrace.ReadOnlySpan) {
	t.Helper()
	req, _ := newRequest(hdr)
	ctx, sp := tp.Tracer("caddy").Start(req.Context(), "request")
	if err := h.ServeHTTP(httptest.NewRecorder(), req.WithContext(ctx), &recorder{}); err != nil {
		t.Fatal(err)
	}
	sp.End()
	ended := rec.Ended()
	rec.Reset()
	return sp, ended
}

func spanAttrs(s sdktrace.ReadOnlySpan) map[attribute.Key]string {
	m := map[attribute.Key]string{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value.String()
	}
	return m
}

func named(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// The request span says how the caller authenticated, the decision, its
// code and the tier that answered; a miss reads the store in a child span;
// no span holds the credential.
func TestRequestSpanCarriesTheDecision(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	store := newFakeStore()
	h := newHandler(t, &Handler{}, cache.New(store, cache.Options{Backend: metrics.BackendPostgres}))
	for _, tc := range []struct {
		name    string
		hdr     http.Header
		secret  string
		want    map[attribute.Key]string
		lookups int
	}{
		{"allowed key, miss", http.Header{"X-Api-Key": {testKey}}, testKey,
			map[attribute.Key]string{"better_auth.method": "api_key", "better_auth.decision": "allow", "better_auth.code": "OK", "better_auth.cache": "database"}, 1},
		{"allowed key, hit", http.Header{"X-Api-Key": {testKey}}, testKey,
			map[attribute.Key]string{"better_auth.method": "api_key", "better_auth.decision": "allow", "better_auth.code": "OK", "better_auth.cache": "memory"}, 0},
		{"unknown key", http.Header{"X-Api-Key": {testKey + "x"}}, testKey + "x",
			map[attribute.Key]string{"better_auth.method": "api_key", "better_auth.decision": "deny", "better_auth.code": "INVALID_API_KEY", "better_auth.cache": "database"}, 1},
		{"unknown key again", http.Header{"X-Api-Key": {testKey + "x"}}, testKey + "x",
			map[attribute.Key]string{"better_auth.decision": "deny", "better_auth.code": "INVALID_API_KEY", "better_auth.cache": "negative"}, 0},
		{"session", http.Header{"Cookie": {"better-auth.session_token=" + signed(testToken)}}, testToken,
			map[attribute.Key]string{"better_auth.method": "session", "better_auth.decision": "allow", "better_auth.code": "OK"}, 1},
		{"no credential", http.Header{}, "",
			map[attribute.Key]string{"better_auth.decision": "deny", "better_auth.code": "MISSING_CREDENTIAL"}, 0},
	} {
		sp, spans := traced(t, h, tp, rec, tc.hdr)
		req := named(spans, "request")
		if len(req) != 1 {
			t.Fatalf("%s: %d request spans", tc.name, len(req))
		}
		got := spanAttrs(req[0])
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q (all: %v)", tc.name, k, got[k], v, got)
			}
		}
		if _, ok := got["better_auth.method"]; !ok && tc.name != "no credential" {
			t.Errorf("%s: no method", tc.name)
		}
		lookups := named(spans, "better_auth.lookup")
		if len(lookups) != tc.lookups {
			t.Errorf("%s: %d lookup spans, want %d", tc.name, len(lookups), tc.lookups)
		}
		for _, l := range lookups {
			if l.Parent().SpanID() != sp.SpanContext().SpanID() {
				t.Errorf("%s: the lookup span is not the request's child", tc.name)
			}
		}
		for _, s := range spans {
			for k, v := range spanAttrs(s) {
				if tc.secret != "" && strings.Contains(v, tc.secret) {
					t.Errorf("%s: span %s attribute %s holds the credential", tc.name, s.Name(), k)
				}
			}
		}
	}

	store.err = errors.New("connection refused")
	_, spans := traced(t, newHandler(t, &Handler{}, store), tp, rec, http.Header{"X-Api-Key": {testKey}})
	if got := spanAttrs(named(spans, "request")[0]); got["better_auth.decision"] != "error" || got["better_auth.code"] != "BACKEND_UNAVAILABLE" {
		t.Errorf("failing store: %v", got)
	}
}

// Tracing off costs no allocation: a request under a span that is not
// recorded (Caddy's tracing with the request not sampled) allocates what
// one without tracing does.
func TestUntracedRequestCostsNothing(t *testing.T) {
	h := newHandler(t, &Handler{}, cache.New(newFakeStore(), cache.Options{}))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	serve := func(ctx context.Context) func() {
		return func() {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r = r.WithContext(context.WithValue(ctx, caddy.ReplacerCtxKey, caddy.NewReplacer()))
			r.Header = http.Header{"X-Api-Key": {testKey}}
			_ = h.ServeHTTP(httptest.NewRecorder(), r, nopNext{})
		}
	}
	ctx, sp := tp.Tracer("caddy").Start(context.Background(), "request")
	defer sp.End()
	serve(ctx)() // fills the cache
	plain := testing.AllocsPerRun(100, serve(context.Background()))
	if untraced := testing.AllocsPerRun(100, serve(ctx)); untraced != plain {
		t.Errorf("%v allocations under an unsampled span, %v without tracing", untraced, plain)
	}
}

// The handler on a cached API key with tracing on, every request sampled,
// the spans handed to a processor that keeps nothing (what the exporter
// costs is not the handler's).
func BenchmarkServeHTTPAPIKeyHitTraced(b *testing.B) {
	h := newHandler(b, &Handler{}, cache.New(newFakeStore(), cache.Options{}))
	tp := sdktrace.NewTracerProvider()
	tr := tp.Tracer("caddy")
	benchRequests(b, func(w http.ResponseWriter, r *http.Request) {
		ctx, sp := tr.Start(r.Context(), "request")
		h.ServeHTTP(w, r.WithContext(ctx), nopNext{})
		sp.End()
	})
}

// The same with the request not sampled: tracing on in Caddy, off for
// this request.
func BenchmarkServeHTTPAPIKeyHitUnsampled(b *testing.B) {
	h := newHandler(b, &Handler{}, cache.New(newFakeStore(), cache.Options{}))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	tr := tp.Tracer("caddy")
	benchRequests(b, func(w http.ResponseWriter, r *http.Request) {
		ctx, sp := tr.Start(r.Context(), "request")
		h.ServeHTTP(w, r.WithContext(ctx), nopNext{})
		sp.End()
	})
}

var setupSink *http.Request

// What starting and ending the request span costs (Caddy's tracing
// handler, not this one): subtract it from the two above.
func BenchmarkRequestSetupTraced(b *testing.B) {
	tr := sdktrace.NewTracerProvider().Tracer("caddy")
	benchRequests(b, func(w http.ResponseWriter, r *http.Request) {
		ctx, sp := tr.Start(r.Context(), "request")
		setupSink = r.WithContext(ctx)
		sp.End()
	})
}

func BenchmarkRequestSetupUnsampled(b *testing.B) {
	tr := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample())).Tracer("caddy")
	benchRequests(b, func(w http.ResponseWriter, r *http.Request) {
		ctx, sp := tr.Start(r.Context(), "request")
		setupSink = r.WithContext(ctx)
		sp.End()
	})
}
