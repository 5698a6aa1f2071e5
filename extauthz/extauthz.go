// Package extauthz is the Envoy front end of caddy-betterauth: an
// envoy.service.auth.v3.Authorization gRPC server, and an HTTP endpoint for
// Envoy's http_service and for forward-auth callers (Caddy forward_auth,
// nginx auth_request, Traefik ForwardAuth). Both render the one request
// decision, betterauth.Gate, as the Caddy handler does.
package extauthz

import (
	"context"
	"net/http"
	"net/netip"
	"net/textproto"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/caddy-betterauth/caddy-betterauth/audit"
	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/mcp"
	"github.com/caddy-betterauth/caddy-betterauth/metrics"
)

// Server answers Check calls and forward-auth requests.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	gate  *betterauth.Gate
	guard *mcp.Guard // per-tool authorization; nil without
	audit *audit.Log // nil: no audit trail

	tracer trace.Tracer // nil: decisions are not traced
	prop   propagation.TextMapPropagator
}

// New returns a Server rendering gate's decisions.
func New(gate *betterauth.Gate, opts ...Option) *Server {
	s := &Server{gate: gate}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Option adds to a Server.
type Option func(*Server)

// WithMCP judges MCP requests with guard (nil: none) beside the gate.
func WithMCP(guard *mcp.Guard) Option { return func(s *Server) { s.guard = guard } }

// WithAudit records decisions in log (nil: none).
func WithAudit(log *audit.Log) Option { return func(s *Server) { s.audit = log } }

// origin is where a decided request went: its host and path (without
// the query, which may carry a secret), and the name of its span.
type origin struct{ host, path, span string }

// verdict is a Result as Envoy and forward-auth callers take it.
type verdict struct {
	betterauth.Result
	set    []betterauth.Header // identity headers, when allowed
	remove []string            // request headers to drop, lower case
	// upstream is the Cookie header as the upstream should get it: for
	// Envoy only when cookieSet (the session cookies removed, the others
	// kept), always for the HTTP mode, whose callers (nginx) cannot tell a
	// header left alone from one to drop.
	upstream  string
	cookieSet bool
}

// decide runs the gate on headers named in any letter case (Envoy sends
// them in lower case); with a guard, req says what else is known of the
// request (its headers are filled in here); at says where it went, for
// the audit trail and the span.
func (s *Server) decide(ctx context.Context, in map[string][]string, client netip.Addr, req mcp.Request, at origin) (v verdict) {
	if s.tracer != nil {
		var sp trace.Span
		ctx, sp = s.startSpan(ctx, at.span, in)
		defer endSpan(sp, &v)
	}
	h := make(betterauth.HTTPHeader, len(in))
	for k, vs := range in {
		k = textproto.CanonicalMIMEHeaderKey(k)
		h[k] = append(h[k], vs...)
	}
	if s.guard != nil {
		req.Header = h
		call := s.guard.Begin(req)
		defer call.End()
		v.Result = s.gate.DecideFor(ctx, h, client, call)
		s.audit.Decided(metrics.FrontExtAuthz, &v.Result, at.host, at.path, call)
		if !v.Allowed() {
			v.Status, v.Headers, v.Body = call.Answer(&v.Result)
		}
	} else {
		v.Result = s.gate.Decide(ctx, h, client)
		s.audit.Decided(metrics.FrontExtAuthz, &v.Result, at.host, at.path, nil)
	}
	if !v.Allowed() {
		return v
	}
	var removed []string
	v.cookieSet = v.Strip(h, &removed)
	for _, name := range removed {
		v.remove = append(v.remove, strings.ToLower(name))
	}
	v.set = v.Decision.AppendHeaders(nil)
	if cs := h["Cookie"]; len(cs) > 0 {
		v.upstream = strings.Join(cs, "; ")
	}
	return v
}

// Check implements the ext_authz v3 gRPC service. It always answers
// (status in the response); a failing database is UNAVAILABLE with a 503,
// never OK.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	in := map[string][]string{}
	httpReq := req.GetAttributes().GetRequest().GetHttp()
	for k, v := range httpReq.GetHeaders() {
		in[k] = []string{v}
	}
	for _, hv := range httpReq.GetHeaderMap().GetHeaders() {
		v := hv.GetValue()
		if v == "" {
			v = string(hv.GetRawValue())
		}
		in[hv.GetKey()] = append(in[hv.GetKey()], v)
	}
	// Envoy's downstream address: the peer, or the client its
	// use_remote_address and xff_num_trusted_hops settings trust.
	client, _ := netip.ParseAddr(req.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress())
	path, _, _ := strings.Cut(httpReq.GetPath(), "?")
	v := s.decide(ctx, in, client.Unmap(), checkRequest(req), origin{httpReq.GetHost(), path, checkSpan})
	if !v.Allowed() {
		return &authv3.CheckResponse{
			Status: &status.Status{Code: int32(grpcCode(v.Status))},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode(v.Status)},
				Headers: options(v.Headers),
				Body:    string(v.Body),
			}},
		}, nil
	}
	ok := &authv3.OkHttpResponse{Headers: options(v.set), HeadersToRemove: v.remove}
	if u := v.Decision.Usage; u != nil {
		// The key's limits, for the client: the IETF RateLimit fields.
		ok.ResponseHeadersToAdd = options(u.AppendClientHeaders(nil))
	}
	if v.cookieSet {
		ok.Headers = append(ok.Headers, option("cookie", v.upstream))
	}
	return &authv3.CheckResponse{
		Status:       &status.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
	}, nil
}

func options(hs []betterauth.Header) []*corev3.HeaderValueOption {
	out := make([]*corev3.HeaderValueOption, 0, len(hs))
	for _, h := range hs {
		out = append(out, option(strings.ToLower(h.Name), h.Value))
	}
	return out
}

// option sets a header, replacing any value the client sent.
func option(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

func grpcCode(status int) codes.Code {
	switch status {
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusRequestEntityTooLarge:
		return codes.ResourceExhausted
	}
	return codes.Unknown
}

// ServeHTTP is the HTTP mode: the request's own headers are the original
// request's (Envoy's http_service and forward-auth callers pass them on),
// whatever its path, which is the original's too: this listener answers
// nothing but decisions. Allowed: 200 with the identity headers, the Cookie
// header the upstream should get (without the session cookies) when the
// request had cookies, and, for Envoy, x-envoy-auth-headers-to-remove;
// denied: the same answer as the Caddy handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The caller: a forward-auth proxy, whose own address is what address
	// rules see here (headers naming the client are the client's to forge).
	var client netip.Addr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		client = ap.Addr().Unmap()
	}
	host, path := r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Uri")
	if host == "" {
		host = r.Host
	}
	if path == "" {
		path = r.URL.EscapedPath()
	}
	path, _, _ = strings.Cut(path, "?")
	v := s.decide(r.Context(), r.Header, client, forwardRequest(r), origin{host, path, forwardSpan})
	hdr := w.Header()
	if v.Allowed() {
		for _, hd := range v.set {
			hdr.Set(hd.Name, hd.Value)
		}
		if len(v.remove) > 0 {
			hdr.Set("X-Envoy-Auth-Headers-To-Remove", strings.Join(v.remove, ","))
		}
		if u := v.Decision.Usage; u != nil {
			// For the client, where the proxy passes them on (Envoy's
			// allowed_client_headers_on_success).
			for _, hd := range u.AppendClientHeaders(nil) {
				hdr.Set(hd.Name, hd.Value)
			}
		}
		if v.upstream != "" {
			// The cookies the upstream may see: Envoy (allowed_upstream_headers)
			// and nginx (auth_request_set) copy this over the client's.
			hdr.Set("Cookie", v.upstream)
		}
	} else {
		for _, hd := range v.Headers {
			hdr.Set(hd.Name, hd.Value)
		}
	}
	w.WriteHeader(v.Status)
	// A failed write means the caller left.
	_, _ = w.Write(v.Body)
}

var (
	_ authv3.AuthorizationServer = (*Server)(nil)
	_ http.Handler               = (*Server)(nil)
)
