package extauthz

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	grpcmd "google.golang.org/grpc/metadata"

	"github.com/caddy-betterauth/caddy-betterauth/metrics"
)

// WithTracing traces every decision in a server span from tp, a child of
// the trace context the caller propagated (read with prop): a Check call's
// own gRPC metadata (Envoy's span for the call, when Envoy traces), else
// the original request's headers it carries; an HTTP-mode request's
// headers. The span holds the decision's attributes (see
// metrics.DecisionAttributes), the cache's tier and child spans for its
// reads. Without it, nothing is traced.
func WithTracing(tp trace.TracerProvider, prop propagation.TextMapPropagator) Option {
	return func(s *Server) {
		s.tracer, s.prop = tp.Tracer(metrics.TracerName), prop
	}
}

// Span names.
const (
	checkSpan   = "better_auth.ext_authz.check"
	forwardSpan = "better_auth.ext_authz.http"
)

// startSpan starts the decision's server span under the incoming context.
func (s *Server) startSpan(ctx context.Context, name string, in map[string][]string) (context.Context, trace.Span) {
	parent := ctx
	if md, ok := grpcmd.FromIncomingContext(ctx); ok {
		parent = s.prop.Extract(ctx, metadataCarrier(md))
	}
	if !trace.SpanContextFromContext(parent).IsValid() {
		parent = s.prop.Extract(ctx, headerCarrier(in))
	}
	return s.tracer.Start(parent, name, trace.WithSpanKind(trace.SpanKindServer))
}

// endSpan puts v's decision on sp and ends it.
func endSpan(sp trace.Span, v *verdict) {
	if sp.IsRecording() {
		sp.SetAttributes(metrics.DecisionAttributes(&v.Result)...)
		sp.SetAttributes(attribute.Int("http.response.status_code", v.Status))
		if v.Err != nil {
			sp.SetStatus(codes.Error, "the authentication backend is unavailable")
		}
	}
	sp.End()
}

// metadataCarrier reads gRPC metadata (lower-case keys).
type metadataCarrier grpcmd.MD

func (c metadataCarrier) Get(key string) string {
	if vs := grpcmd.MD(c).Get(key); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

func (c metadataCarrier) Set(key, value string) { grpcmd.MD(c).Set(key, value) }

func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// headerCarrier reads request headers named in any letter case: Envoy's
// are lower case, net/http's canonical.
type headerCarrier map[string][]string

func (c headerCarrier) Get(key string) string {
	if vs := c[key]; len(vs) > 0 {
		return vs[0]
	}
	for k, vs := range c {
		if len(vs) > 0 && strings.EqualFold(k, key) {
			return vs[0]
		}
	}
	return ""
}

func (c headerCarrier) Set(string, string) {} // read only

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, strings.ToLower(k))
	}
	return keys
}
