// Package extauthz is the Envoy front end of caddy-betterauth: an
// envoy.service.auth.v3.Authorization gRPC server, and an HTTP endpoint for
// Envoy's http_service and for forward-auth callers (Caddy forward_auth,
// nginx auth_request, Traefik ForwardAuth). Both use the same core, and the
// same answers, as the Caddy handler.
package extauthz

import (
	"context"
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// Options configure a Server.
type Options struct {
	Verifier *betterauth.Verifier
	// Extractor config, as for the Caddy handler.
	Extract betterauth.ExtractorConfig
	// CookiePrefix names the cookie cache removed with the session cookie.
	CookiePrefix string
	// KeepCredential forwards the credential upstream.
	KeepCredential bool
	// Realm of WWW-Authenticate challenges.
	Realm  string
	Logger *zap.Logger
}

// Server answers Check calls and forward-auth requests.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	verifier  *betterauth.Verifier
	extractor *betterauth.Extractor
	answers   *betterauth.Answers
	keep      bool
	logger    *zap.Logger
}

// New returns a Server.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if len(opts.Extract.CookieNames) == 0 {
		opts.Extract.CookieNames = betterauth.SessionCookieNames(opts.CookiePrefix, "")
	}
	if opts.Extract.CookiePrefix == "" {
		opts.Extract.CookiePrefix = opts.CookiePrefix
	}
	return &Server{
		verifier: opts.Verifier, extractor: betterauth.NewExtractor(opts.Extract),
		answers: betterauth.NewAnswers(opts.Realm), keep: opts.KeepCredential, logger: opts.Logger,
	}
}

// Result is a front-end-neutral verdict: what to answer when denied, and
// what to set on and remove from the request when allowed.
type Result struct {
	Allowed bool
	Status  int
	Headers []betterauth.Header // on allow: identity headers; on deny: answer headers
	Body    []byte
	// Remove lists request headers to drop (lower case): the credential and
	// every client-supplied X-Auth-* header the gateway does not set.
	Remove []string
	// Cookie, when set, replaces the Cookie header (the session cookies
	// removed, the others kept); Remove holds "cookie" if none is left.
	Cookie *string
	// cookie is the request's Cookie header as the upstream should get it,
	// for the HTTP mode, whose callers (nginx) cannot tell a header left
	// alone from one to drop.
	cookie string
}

// Decide verifies the request described by its headers (any letter case).
func (s *Server) Decide(ctx context.Context, headers map[string][]string) Result {
	h := lower(headers)
	cred := s.extractor.Extract(h)
	d, err := s.verifier.Verify(ctx, cred)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Error("better-auth lookup failed; answering 503",
				zap.String("credential_fingerprint", betterauth.Fingerprint(cred.Value)), zap.Error(err))
		}
		d = betterauth.Decision{Reason: betterauth.BackendUnavailable}
	}
	if !d.Allowed() {
		status, hdrs, body := s.answers.For(d)
		return Result{Status: status, Headers: hdrs, Body: body}
	}
	r := Result{Allowed: true, Status: http.StatusOK, Headers: d.AppendHeaders(nil)}
	set := map[string]bool{}
	for _, hd := range r.Headers {
		set[strings.ToLower(hd.Name)] = true
	}
	for name := range h {
		if betterauth.IsOwnedHeader(name) && !set[name] {
			r.Remove = append(r.Remove, name)
		}
	}
	if !s.keep {
		ed := &editor{h: h}
		s.extractor.RemoveCredentials(ed)
		r.Remove = append(r.Remove, ed.removed...)
		r.Cookie = ed.cookie
	}
	if r.Cookie != nil {
		r.cookie = *r.Cookie
	} else if cs := h["cookie"]; len(cs) > 0 {
		r.cookie = strings.Join(cs, "; ")
	}
	return r
}

// editor records what RemoveCredentials takes out of a request, for the
// front end to tell Envoy.
type editor struct {
	h       lowerHeaders
	removed []string
	cookie  *string
}

func (e *editor) Values(name string) []string { return e.h.Values(name) }

func (e *editor) Del(name string) {
	name = strings.ToLower(name)
	delete(e.h, name)
	e.removed = append(e.removed, name)
}

func (e *editor) Set(name, value string) {
	if strings.EqualFold(name, "Cookie") {
		e.cookie = &value
	}
}

// lowerHeaders is a HeaderGetter over header names in any case.
type lowerHeaders map[string][]string

func (l lowerHeaders) Values(name string) []string { return l[strings.ToLower(name)] }

func lower(in map[string][]string) lowerHeaders {
	out := make(lowerHeaders, len(in))
	for k, v := range in {
		k = strings.ToLower(k)
		out[k] = append(out[k], v...)
	}
	return out
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
	res := s.Decide(ctx, in)
	if !res.Allowed {
		return &authv3.CheckResponse{
			Status: &status.Status{Code: int32(grpcCode(res.Status))},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode(res.Status)},
				Headers: options(res.Headers),
				Body:    string(res.Body),
			}},
		}, nil
	}
	ok := &authv3.OkHttpResponse{Headers: options(res.Headers), HeadersToRemove: res.Remove}
	if res.Cookie != nil {
		ok.Headers = append(ok.Headers, option("cookie", *res.Cookie))
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
	}
	return codes.Unknown
}

// ServeHTTP is the HTTP mode: the request's own headers are the original
// request's (Envoy's http_service and forward-auth callers pass them on).
// Allowed: 200 with the identity headers, the Cookie header the upstream
// should get (without the session cookies) when the request had cookies,
// and, for Envoy, x-envoy-auth-headers-to-remove; denied: the same answer as
// the Caddy handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	res := s.Decide(r.Context(), r.Header)
	hdr := w.Header()
	for _, hd := range res.Headers {
		hdr.Set(hd.Name, hd.Value)
	}
	if res.Allowed && len(res.Remove) > 0 {
		hdr.Set("X-Envoy-Auth-Headers-To-Remove", strings.Join(res.Remove, ","))
	}
	if res.Allowed && res.cookie != "" {
		// The cookies the upstream may see: Envoy (allowed_upstream_headers)
		// and nginx (auth_request_set) copy this over the client's.
		hdr.Set("Cookie", res.cookie)
	}
	w.WriteHeader(res.Status)
	w.Write(res.Body)
}

var (
	_ authv3.AuthorizationServer = (*Server)(nil)
	_ http.Handler               = (*Server)(nil)
)

// NewGRPCServer returns a gRPC server with the ext_authz service and the
// grpc.health.v1 service reporting it as serving.
func NewGRPCServer(s *Server, opts ...grpc.ServerOption) *grpc.Server {
	gs := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(gs, s)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	return gs
}

// GracefulStop stops gs, letting calls in flight finish until ctx ends.
func GracefulStop(ctx context.Context, gs *grpc.Server) {
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		gs.Stop()
	}
}
