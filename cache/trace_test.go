package cache

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/caddy-betterauth/caddy-betterauth/metrics"
)

// tracedCtx starts a request span, as Caddy's tracing handler does, on a
// provider that records every span.
func tracedCtx(t *testing.T, sampled bool) (context.Context, trace.Span, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	sampler := sdktrace.NeverSample()
	if sampled {
		sampler = sdktrace.AlwaysSample()
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sampler))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, sp := tp.Tracer("test").Start(context.Background(), "request")
	return ctx, sp, rec
}

func attrsOf(s sdktrace.ReadOnlySpan) map[attribute.Key]string {
	m := map[attribute.Key]string{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value.String()
	}
	return m
}

// endRequest ends the request span and returns every ended span by name.
func endRequest(sp trace.Span, rec *tracetest.SpanRecorder) map[string][]sdktrace.ReadOnlySpan {
	sp.End()
	out := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		out[s.Name()] = append(out[s.Name()], s)
	}
	return out
}

// A miss reads the database in a child span of the request's; the request
// span says which tier answered: database, then memory, and for an unknown
// key database, then negative.
func TestTracedLookupTiersAndChildSpan(t *testing.T) {
	t.Parallel()
	const secret = "ba_tracedSecretKeyValue0123456789"
	s := New(&countingStore{rec: keyRecord(time.Time{})}, Options{Backend: metrics.BackendPostgres})
	for i, want := range []string{"database", "memory"} {
		ctx, sp, rec := tracedCtx(t, true)
		if _, err := s.Lookup(ctx, lookup(secret)); err != nil {
			t.Fatal(err)
		}
		spans := endRequest(sp, rec)
		if got := attrsOf(spans["request"][0])[metrics.AttrCache]; got != want {
			t.Errorf("lookup %d: tier %q, want %q", i, got, want)
		}
		lookups := spans["better_auth.lookup"]
		if i == 0 {
			if len(lookups) != 1 {
				t.Fatalf("miss: %d lookup spans", len(lookups))
			}
			l := lookups[0]
			if l.Parent().SpanID() != sp.SpanContext().SpanID() || l.SpanKind() != trace.SpanKindClient {
				t.Errorf("lookup span: parent %v kind %v", l.Parent().SpanID(), l.SpanKind())
			}
			a := attrsOf(l)
			if a["db.system.name"] != "postgresql" || a["better_auth.lookup.kind"] != "api_key" {
				t.Errorf("lookup span attributes %v", a)
			}
		} else if len(lookups) != 0 {
			t.Errorf("hit: %d lookup spans", len(lookups))
		}
		noSecret(t, spans, secret)
	}

	unknown := New(&countingStore{}, Options{Backend: metrics.BackendSQLite})
	for _, want := range []string{"database", "negative"} {
		ctx, sp, rec := tracedCtx(t, true)
		unknown.Lookup(ctx, lookup(secret))
		if got := attrsOf(endRequest(sp, rec)["request"][0])[metrics.AttrCache]; got != want {
			t.Errorf("unknown key: tier %q, want %q", got, want)
		}
	}
}

// A failed lookup marks its span failed by class, never with the driver's
// text, which may quote what it was given.
func TestTracedLookupErrorCarriesNoMessage(t *testing.T) {
	t.Parallel()
	const secret = "ba_tracedSecretKeyValue0123456789"
	s := New(&countingStore{err: errors.New("driver said: " + secret)}, Options{})
	ctx, sp, rec := tracedCtx(t, true)
	if _, err := s.Lookup(ctx, lookup(secret)); err == nil {
		t.Fatal("no error")
	}
	spans := endRequest(sp, rec)
	l := spans["better_auth.lookup"]
	if len(l) != 1 || l[0].Status().Code != codes.Error || attrsOf(l[0])["error.type"] != "error" {
		t.Fatalf("lookup spans %v", l)
	}
	if _, ok := attrsOf(spans["request"][0])[metrics.AttrCache]; ok {
		t.Error("a failed lookup named a tier")
	}
	noSecret(t, spans, secret)
}

// The shared tier's read and write get spans of their own, and a hit there
// is the shared tier.
func TestTracedSharedTier(t *testing.T) {
	t.Parallel()
	remote := newFakeRemote()
	clk := &clock{t0}
	a := New(&countingStore{rec: keyRecord(time.Time{})}, sharedOpts(remote, Options{Now: clk.now}))
	b := New(&countingStore{rec: keyRecord(time.Time{})}, sharedOpts(remote, Options{Now: clk.now}))
	clk.advance(ClockSkew) // past b's start: b takes what a writes now
	ctx, sp, rec := tracedCtx(t, true)
	a.Lookup(ctx, lookup("k"))
	spans := endRequest(sp, rec)
	if len(spans["better_auth.redis.get"]) != 1 || len(spans["better_auth.redis.set"]) != 1 || len(spans["better_auth.lookup"]) != 1 {
		t.Fatalf("spans on a miss everywhere: %v", spans)
	}
	if a := attrsOf(spans["better_auth.redis.get"][0]); a["db.system.name"] != "redis" || a["better_auth.hit"] != "false" {
		t.Errorf("redis read attributes %v", a)
	}
	<-remote.sets

	ctx, sp, rec = tracedCtx(t, true)
	b.Lookup(ctx, lookup("k"))
	spans = endRequest(sp, rec)
	if got := attrsOf(spans["request"][0])[metrics.AttrCache]; got != "shared" || len(spans["better_auth.lookup"]) != 0 {
		t.Errorf("second gateway: tier %q, %d database spans", got, len(spans["better_auth.lookup"]))
	}
	if a := attrsOf(spans["better_auth.redis.get"][0]); a["better_auth.hit"] != "true" {
		t.Errorf("redis read attributes %v", a)
	}
}

// Tracing off (no span, or one not sampled): no span is made, and a hit
// still allocates nothing.
func TestUntracedLookupMakesNoSpans(t *testing.T) {
	s := New(&countingStore{rec: keyRecord(time.Time{})}, Options{})
	ctx, sp, rec := tracedCtx(t, false)
	l := lookup("k")
	if _, err := s.Lookup(ctx, l); err != nil {
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(100, func() { s.Lookup(ctx, l) }); a != 0 {
		t.Errorf("a hit under an unsampled span allocates %v times", a)
	}
	if spans := endRequest(sp, rec); len(spans) != 0 {
		t.Errorf("spans recorded while not sampled: %v", spans)
	}
}

func noSecret(t *testing.T, spans map[string][]sdktrace.ReadOnlySpan, secret string) {
	t.Helper()
	for name, ss := range spans {
		for _, s := range ss {
			for k, v := range attrsOf(s) {
				if strings.Contains(v, secret) {
					t.Errorf("span %s attribute %s holds the secret", name, k)
				}
			}
			if strings.Contains(s.Status().Description, secret) {
				t.Errorf("span %s status holds the secret", name)
			}
		}
	}
}
