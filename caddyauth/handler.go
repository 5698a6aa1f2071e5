// Package caddyauth is the Caddy front end of caddy-betterauth: the HTTP
// handler http.handlers.better_auth and its Caddyfile directive better_auth.
//
// Import it (or build with xcaddy) to register the module:
//
//	import _ "github.com/caddy-betterauth/caddy-betterauth/caddyauth"
package caddyauth

import (
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/gateway"
	"github.com/caddy-betterauth/caddy-betterauth/mcp"
	"github.com/caddy-betterauth/caddy-betterauth/metrics"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler authenticates every request against the Better-Auth tables of an
// application's database, the way Better-Auth itself would, before handing
// it on (typically to reverse_proxy).
//
// It reads exactly one credential, in this order: an API-key header
// (x-api-key), an `Authorization: Bearer` value (an API key, or a signed or
// raw session token), or Better-Auth's session cookie. Denied requests get a
// JSON answer `{"code": ..., "message": ...}` with status 401, 403 or 429,
// and a database that cannot answer gives 503 with Retry-After; none of them
// reaches the next handler.
//
// On every request, whatever the outcome, it first removes every incoming
// header whose name starts with X-Auth- (any case, '_' for '-'). An allowed
// request then carries X-Auth-User-Id, X-Auth-User-Email, X-Auth-User-Name,
// X-Auth-User-Role (with Better-Auth's admin plugin), X-Auth-Method
// ("api_key" or "session") and X-Auth-Key-Id or X-Auth-Session-Id, plus
// X-Auth-Org-Id and X-Auth-Org-Role for a session with an active
// organization; an organization's API key carries X-Auth-Org-Id,
// X-Auth-Org-Slug and X-Auth-Org-Name instead of the user headers. Values
// are percent-encoded where they are not printable ASCII; and, unless
// keep_credential is set, the credential it used is removed.
//
// It sets these placeholders on an allowed request:
//
//	{http.auth.user.id}          the user id (Caddy's access log shows it as user_id)
//	{http.auth.user.email}
//	{http.auth.user.name}
//	{http.auth.user.role}
//	{http.auth.user.method}      api_key or session
//	{http.auth.user.key_id}
//	{http.auth.user.session_id}
//	{http.auth.org.id}           an organization's key: the organization; a
//	                             session: its active organization
//	{http.auth.org.slug}         organization keys only
//	{http.auth.org.name}         organization keys only
//	{http.auth.org.role}         sessions: the user's member.role there
//
// and on a denied one {http.auth.better_auth.code}, the deny code.
type Handler struct {
	// The gateway's settings (database, secret, schema, cache, redis,
	// secondary_storage...), shared with the better_auth app and the
	// standalone ext_authz server.
	gateway.Options

	front
	guard *mcp.Guard // per-tool authorization; nil without an mcp block
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.better_auth",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets the handler up. It does no network I/O: the database pool
// connects on first use and is shared with every handler configured alike.
func (h *Handler) Provision(ctx caddy.Context) error {
	if err := h.provision(ctx, h.Options, metrics.FrontCaddy); err != nil {
		return err
	}
	var err error
	if h.guard, err = h.Options.Guard(h.gate, true); err != nil {
		h.release()
		return err
	}
	if !h.KeepRevokedStreams {
		h.streams = h.gw.Streams()
	}
	h.warnAboutAccessLogs(ctx)
	return nil
}

// warnAboutAccessLogs tells the operator, once at load, when an access log
// may record the API key: Caddy copies each request for its logs before any
// handler runs and redacts only Authorization, Cookie, Set-Cookie and
// Proxy-Authorization.
func (h *Handler) warnAboutAccessLogs(ctx caddy.Context) {
	srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if !ok || srv == nil || srv.Logs == nil {
		return
	}
	if srv.Logs.ShouldLogCredentials {
		h.logger.Warn("log_credentials is on: access logs will contain API keys and session tokens in clear text")
	}
	var filters []string
	for _, name := range h.gate.Extractor().APIKeyHeaders() {
		filters = append(filters, "request>headers>"+name+" delete")
	}
	h.logger.Warn("access logging is on for this server: Caddy records request headers before any handler runs, "+
		"so API keys reach the access log unless its format filter deletes them (nothing to do if it already does)",
		zap.String("add_to_the_log_directive", "format filter { "+strings.Join(filters, "; ")+" }"))
}

// Validate checks the configuration; it changes nothing.
func (h *Handler) Validate() error { return h.Options.Validate() }

// Cleanup releases the shared gateway.
func (h *Handler) Cleanup() error { return h.release() }

// ServeHTTP authenticates r and, when allowed, passes it to next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.resource != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) && h.resource.Serves(r.URL.Path) {
		// RFC 9728 metadata: how an MCP client that got a 401 finds the
		// authorization server. Public, for browsers too.
		hdr := w.Header()
		hdr.Set("Content-Type", "application/json")
		hdr.Set("Cache-Control", "public, max-age=3600")
		hdr.Set("Access-Control-Allow-Origin", "*")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(h.resource.Metadata())
		}
		return nil
	}
	hdr := betterauth.HTTPHeader(r.Header)
	var client netip.Addr
	if h.gate.WantsClient() || h.audit != nil {
		client = clientIP(r)
	}
	call := h.beginMCP(r) // nil without an mcp block
	if call != nil {
		defer call.End()
	}
	res := h.gate.DecideFor(r.Context(), hdr, client, authorizer(call))
	h.traceDecision(r.Context(), &res)
	res.Strip(hdr, nil)
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if res.Err != nil && r.Context().Err() != nil {
		// The client went away while its lookup was in flight (the lookup
		// itself goes on for the requests sharing it): nobody to answer.
		if c := h.logger.Check(zapcore.DebugLevel, "client left during lookup"); c != nil {
			c.Write(zap.Error(r.Context().Err()))
		}
		return nil
	}
	if h.audit != nil {
		h.audit.Decided(h.frontEnd, &res, r.Host, originalPath(r), call)
	}
	if !res.Allowed() {
		if c := h.logger.Check(zapcore.DebugLevel, "request denied"); c != nil {
			c.Write(zap.Stringer("code", res.Decision.Reason), zap.String("credential_fingerprint", betterauth.Fingerprint(res.Credential.Value)))
		}
		return h.deny(w, repl, &res, call)
	}

	d := res.Decision
	var buf [betterauth.MaxHeaders]betterauth.Header
	hs := d.AppendHeaders(buf[:0])
	vals := make([]string, len(hs)) // one allocation for every header value
	for i, hd := range hs {
		vals[i] = hd.Value
		r.Header[hd.Name] = vals[i : i+1 : i+1]
	}
	if d.Usage != nil {
		// The key's limits, for the client: the IETF RateLimit fields.
		var ub [2]betterauth.Header
		for _, hd := range d.Usage.AppendClientHeaders(ub[:0]) {
			w.Header().Set(hd.Name, hd.Value)
		}
	}
	if repl != nil {
		repl.Map(placeholders(d))
	}
	out := w
	if call != nil {
		// The body as the client sent it, and the response through the
		// list filter and the session binding.
		if body := call.Body(); body != nil {
			r.Body = body
		}
		out = call.Wrap(w, r)
	}
	h.protect(r)
	if h.streams != nil {
		ctx, st := h.streams.Watch(r.Context(), h.gate, &res)
		defer st.Release()
		r = r.WithContext(ctx)
	}
	err := next.ServeHTTP(out, r)
	if call != nil {
		err = call.Finish(err)
	}
	if why := gateway.Cut(r.Context()); why != nil {
		// The response was already streaming: end it, and say why in the log.
		if c := h.logger.Check(zapcore.InfoLevel, "closed a stream"); c != nil {
			c.Write(zap.String("reason", why.Error()), zap.String("user_id", ownerID(d)))
		}
		return nil
	}
	if err != nil && res.Credential.Source == betterauth.SourceAPIKeyHeader {
		return h.containError(w, r, err)
	}
	return err
}

// originalPath is the path the client asked for, before any handle_path,
// uri or rewrite in front of the handler changed it: what an audit trail
// records (two handle_path routes would otherwise record /admin/users and
// /api/users alike as /users).
func originalPath(r *http.Request) string {
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		return orig.URL.EscapedPath()
	}
	return r.URL.EscapedPath()
}

// clientIP is the client's address as Caddy determined it: the peer, or
// with trusted_proxies the address they vouch for; never a header a client
// could set on its own.
func clientIP(r *http.Request) netip.Addr {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// ownerID is who an allowed request is, for logs: the user, or the
// organization owning an API key.
func ownerID(d betterauth.Decision) string {
	switch {
	case d.User != nil:
		return d.User.ID
	case d.Org != nil:
		return "org:" + d.Org.ID
	}
	return ""
}

// placeholders serves {http.auth.user.*} and {http.auth.org.*} from the
// decision, without allocating a value per placeholder up front. An
// organization's API key has no user.* values but its method and key_id;
// a session has org.id and org.role when it has an active organization it
// is a member of.
func placeholders(d betterauth.Decision) caddy.ReplacerFunc {
	return func(key string) (any, bool) {
		if field, ok := strings.CutPrefix(key, "http.auth.org."); ok {
			return orgPlaceholder(d, field)
		}
		field, ok := strings.CutPrefix(key, "http.auth.user.")
		if !ok {
			return nil, false
		}
		switch field {
		case "id", "email", "name", "role":
			if d.User == nil {
				return nil, false
			}
			id, email, name, role := d.User.HeaderValues()
			switch field {
			case "id":
				return id, true
			case "email":
				return email, true
			case "name":
				return name, true
			}
			return role, true
		case "method":
			return d.Method.String(), true
		case "key_id":
			if d.Method == betterauth.MethodAPIKey {
				return d.CredentialHeader(), true
			}
		case "session_id":
			if d.Method == betterauth.MethodSession {
				return d.CredentialHeader(), true
			}
		case "token_id":
			if d.Method == betterauth.MethodOAuth {
				return d.CredentialHeader(), true
			}
		case "client_id":
			if d.Method == betterauth.MethodOAuth {
				return d.ClientHeader(), true
			}
		case "scopes":
			if d.Method == betterauth.MethodOAuth {
				return d.ScopesHeader(), true
			}
		case "remaining":
			if u := d.Usage; u != nil && u.HasRemaining {
				return u.Remaining, true
			}
		case "rate_limit":
			if u := d.Usage; u != nil && u.Limit > 0 {
				return u.Limit, true
			}
		case "rate_limit_remaining":
			if u := d.Usage; u != nil && u.Limit > 0 {
				return u.Left, true
			}
		case "rate_limit_reset":
			if u := d.Usage; u != nil && u.Limit > 0 {
				return int64((u.Reset + time.Second - 1) / time.Second), true
			}
		}
		return nil, false
	}
}

func orgPlaceholder(d betterauth.Decision, field string) (any, bool) {
	switch {
	case d.Org != nil:
		id, slug, name := d.Org.HeaderValues()
		switch field {
		case "id":
			return id, true
		case "slug":
			return slug, true
		case "name":
			return name, true
		}
	case d.Member != nil:
		id, role := d.Member.HeaderValues()
		switch field {
		case "id":
			return id, true
		case "role":
			return role, true
		}
	}
	return nil, false
}

// protect keeps the client from shaping what reaches the upstream beside
// the identity headers: a Connection header naming them would make
// reverse_proxy delete them after they were set, and request trailers
// arrive after this handler has run. Both lose every protected name.
func (h *Handler) protect(r *http.Request) {
	if vs := r.Header["Connection"]; len(vs) > 0 {
		if rest, changed := h.gate.Extractor().FilterConnection(vs); changed {
			if rest == "" {
				delete(r.Header, "Connection")
			} else {
				r.Header["Connection"] = []string{rest}
			}
		}
	}
	if r.Trailer != nil && r.Body != nil && r.Body != http.NoBody {
		// Declared trailers share this map with the server, which fills in
		// their values when the body reaches EOF: scrub them then, before
		// reverse_proxy copies them.
		h.scrubTrailers(r.Trailer)
		r.Body = &trailerScrubber{ReadCloser: r.Body, trailer: r.Trailer, scrub: h.scrubTrailers}
	}
}

func (h *Handler) scrubTrailers(t http.Header) {
	for name := range t {
		if h.gate.Extractor().Protected(name) {
			delete(t, name)
		}
	}
}

// trailerScrubber removes protected trailers as the body ends.
type trailerScrubber struct {
	io.ReadCloser
	trailer http.Header
	scrub   func(http.Header)
}

func (b *trailerScrubber) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.scrub(b.trailer)
	}
	return n, err
}

// containError keeps a failing upstream from putting the API key in Caddy's
// error log. Caddy logs the copy of the request it took before any handler
// ran, headers included, at error level for 5xx; only Authorization and
// Cookie are redacted there. Without handle_errors routes the handler answers
// with the error's status itself and logs the error without the request
// headers. With handle_errors, Caddy logs at debug level and the error goes
// to those routes as usual.
func (h *Handler) containError(w http.ResponseWriter, r *http.Request, err error) error {
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv != nil &&
		srv.Errors != nil && len(srv.Errors.Routes) > 0 {
		return err
	}
	status := http.StatusInternalServerError
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode != 0 {
		status = he.StatusCode
	}
	lvl := zapcore.DebugLevel
	if status >= 500 {
		lvl = zapcore.ErrorLevel
	}
	if c := h.logger.Check(lvl, "next handler failed"); c != nil {
		c.Write(zap.Int("status", status), zap.String("method", r.Method), zap.String("host", r.Host),
			zap.String("uri", r.RequestURI), zap.String("remote_addr", r.RemoteAddr), zap.Error(err))
	}
	w.WriteHeader(status)
	return nil
}

// deny writes the answer to a denied request: on an MCP endpoint (call
// set), as the call renders it.
func (h *Handler) deny(w http.ResponseWriter, repl *caddy.Replacer, res *betterauth.Result, call *mcp.Call) error {
	if repl != nil {
		repl.Set("http.auth.better_auth.code", res.Decision.Reason.String())
	}
	status, headers, body := res.Status, res.Headers, res.Body
	if call != nil {
		status, headers, body = call.Answer(res)
	}
	hdr := w.Header()
	for _, hd := range headers {
		hdr.Set(hd.Name, hd.Value)
	}
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	// A failed write means the client left; returning it would only make
	// Caddy log the request, headers included.
	_, _ = w.Write(body)
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
