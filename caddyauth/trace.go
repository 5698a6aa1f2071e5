package caddyauth

import (
	"context"

	"go.opentelemetry.io/otel/trace"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/metrics"
)

// traceDecision puts the decision on the request's span when Caddy's
// tracing handler records one (the cache adds the tier that answered, and
// child spans for its reads); otherwise it costs one context lookup. No
// credential, key or token goes on a span.
func (h *Handler) traceDecision(ctx context.Context, res *betterauth.Result) {
	if sp := trace.SpanFromContext(ctx); sp.IsRecording() {
		sp.SetAttributes(metrics.DecisionAttributes(res)...)
	}
}
