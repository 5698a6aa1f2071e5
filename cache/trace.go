package cache

import (
	"context"
	"errors"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/metrics"
)

// Tracing follows the request's own span: when ctx carries a recording
// span (Caddy's tracing handler, the ext_authz server's), the answering
// tier goes on it and the database and Redis reads get child spans from
// its provider. Without one, nothing is created and no global provider is
// read: the cost is one context lookup.

// traceTier notes on ctx's span which tier answered.
func traceTier(ctx context.Context, t metrics.Tier) {
	if sp := trace.SpanFromContext(ctx); sp.IsRecording() {
		sp.SetAttributes(metrics.TierAttribute(t))
	}
}

// startSpan starts a child span of ctx's recording span for a read of
// backend, or returns ctx and nil.
func startSpan(ctx context.Context, name string, backend metrics.Backend, k betterauth.Kind) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, nil
	}
	attrs := make([]attribute.KeyValue, 0, 3)
	if backend != metrics.BackendSecondary {
		attrs = append(attrs, attribute.String("db.system.name", backend.String()))
	}
	attrs = append(attrs, attribute.String("better_auth.backend", backend.String()),
		attribute.String("better_auth.lookup.kind", kindLabel(k)))
	return parent.TracerProvider().Tracer(metrics.TracerName).Start(ctx, name,
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// endSpan ends sp (nil: none), marking a failure by its class only
// (timeout, canceled, error): a driver's message may quote a value it was
// given, and a lookup is given a secret.
func endSpan(sp trace.Span, err error) {
	if sp == nil {
		return
	}
	if err != nil {
		class := "error"
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			class = "timeout"
		case errors.Is(err, context.Canceled):
			class = "canceled"
		}
		sp.SetAttributes(attribute.String("error.type", class))
		sp.SetStatus(codes.Error, class)
	}
	sp.End()
}

// kindLabel names a lookup kind: the tables it reads, e.g. "api_key,session".
func kindLabel(k betterauth.Kind) string {
	var names []string
	for _, n := range [...]struct {
		k    betterauth.Kind
		name string
	}{{betterauth.KindAPIKey, "api_key"}, {betterauth.KindSession, "session"}, {betterauth.KindOAuth, "oauth"}, {betterauth.KindJWT, "jwt"}} {
		if k&n.k != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}
