package betterauth

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// GateConfig configures a Gate.
type GateConfig struct {
	// Verifier checks credentials. Required.
	Verifier *Verifier
	// Extract says where credentials are read from.
	Extract ExtractorConfig
	// Realm of WWW-Authenticate challenges. Default: "better-auth".
	Realm string
	// ResourceMetadata and Scope, when set, go in 401 challenges too
	// (RFC 9728 §5.1): where MCP clients find the authorization server,
	// and what a token needs.
	ResourceMetadata, Scope string
	// KeepCredential forwards the credential upstream; by default Strip
	// removes it.
	KeepCredential bool
	// Rules are what this front end (a route, in Caddy) asks beyond a
	// valid credential.
	Rules Rules
	// Shield, when set, refuses a client that has failed too often before
	// its credential is read, and hears each unknown credential.
	Shield Shield
	// Meter, when set, counts each allowed API key's use and enforces its
	// quota and rate limit, after every other check.
	Meter Meter
	// KeyAllowedIPs says the store reads API keys' own allow-lists (see
	// APIKey.AllowedIPs): decisions then depend on the client's address,
	// which WantsClient asks the front end for.
	KeyAllowedIPs bool
	// OnKeyIPProblem, when set, hears each refusal of an API key whose
	// allow-list was malformed (see IPAllowList.Problem), with the key's
	// id; it is for logging, at most once per key. It must not block.
	OnKeyIPProblem func(keyID, problem string)
	// Limiter, when set, spends one request of the route's rate limits on
	// every request that passed the credential and the rules.
	Limiter Limiter
	// OnError, when set, hears every lookup the store could not answer while
	// the caller was still waiting (the request gets 503). It must not
	// block.
	OnError func(c Credential, err error)
	// Observer, when set, hears every decision (package metrics counts
	// them).
	Observer Observer
}

// Observer hears the method and reason of each decision a Gate makes: the
// decision's method, or on a denial that has none the kind of credential
// presented, when it was one kind (an API-key header, a signed session, a
// JWT), and MethodNone otherwise. It is on the request path: it must not
// block, and should not allocate.
type Observer interface {
	Decided(m Method, r Reason)
}

// Shield limits failed authentications by client address (package shield
// implements it).
type Shield interface {
	// Blocked reports whether client may not try now, and for how long.
	Blocked(client netip.Addr) (retryAfter time.Duration, blocked bool)
	// Failed counts an unknown credential from client.
	Failed(client netip.Addr)
}

// Limiter enforces rate limits on verified requests (package ratelimit
// implements it).
type Limiter interface {
	// Limit spends one request on each of the limits d (an allowed
	// decision) and client fall under, all or none: when one is exhausted,
	// none is spent, and retryAfter says when it allows again. It must not
	// fail: a limiter that cannot tell lets the request through.
	Limit(ctx context.Context, d Decision, client netip.Addr) (retryAfter time.Duration, limited bool)
	// UsesClient reports whether a limit is kept per client address.
	UsesClient() bool
}

// Gate is the one request decision every front end renders: the Caddy
// handler, the ext_authz gRPC service and its HTTP mode. It turns a
// request's headers into a Result, and says how the headers must change on
// their way upstream, so that a rule written here holds everywhere.
type Gate struct {
	extractor *Extractor
	verifier  *Verifier
	answers   *Answers
	keep      bool
	rules     Rules
	ruled     bool // the rules ask anything
	shield    Shield
	meter     Meter
	keyIPs    bool // API keys carry allow-lists
	onKeyIP   func(keyID, problem string)
	limiter   Limiter
	onError   func(Credential, error)
	observer  Observer
}

// NewGate returns a Gate for cfg.
func NewGate(cfg GateConfig) *Gate {
	return &Gate{
		extractor: NewExtractor(cfg.Extract),
		verifier:  cfg.Verifier,
		answers: NewAnswersFor(Challenge{Realm: cfg.Realm, ResourceMetadata: cfg.ResourceMetadata, Scope: cfg.Scope,
			NeededScope: strings.Join(cfg.Rules.Scopes, " ")}),
		keep:     cfg.KeepCredential,
		rules:    cfg.Rules,
		ruled:    cfg.Rules.asks(),
		shield:   cfg.Shield,
		meter:    cfg.Meter,
		keyIPs:   cfg.KeyAllowedIPs,
		onKeyIP:  cfg.OnKeyIPProblem,
		limiter:  cfg.Limiter,
		onError:  cfg.OnError,
		observer: cfg.Observer,
	}
}

// WantsClient reports whether decisions depend on the client's address, so
// that a front end finds it only then.
func (g *Gate) WantsClient() bool {
	return g.shield != nil || g.keyIPs || len(g.rules.AllowIPs)+len(g.rules.DenyIPs) > 0 ||
		g.limiter != nil && g.limiter.UsesClient()
}

// Extractor returns the gate's extractor.
func (g *Gate) Extractor() *Extractor { return g.extractor }

// StepUp returns the scope parameter and the WWW-Authenticate value of
// the 403 insufficient_scope answer to an OAuth token holding held, for a
// request that needs more scopes than the route does (see
// Answers.StepUp).
func (g *Gate) StepUp(held, more []string) (scope, challenge string) {
	return g.answers.StepUp(held, more)
}

// Authorizer judges what a request asks to do, beyond who sent it (package
// mcp: the tools an MCP request calls). The Gate asks it once per request,
// after the credential verified and the route's rules passed and before
// any limit or usage is spent, so that a request it refuses spends
// nothing; it returns Allowed, or why not.
type Authorizer interface {
	Authorize(d Decision) Reason
}

// Result is the verdict on one request.
type Result struct {
	// Decision is the Verifier's; on a failed lookup its Reason is
	// BackendUnavailable and Err is set.
	Decision Decision
	// Credential is the one credential read (a secret: log its
	// Fingerprint, never its Value).
	Credential Credential
	// Verified is who the credential proved to be, also when the gateway
	// then refused the request (a rule, an address, a tool, a limit, a
	// quota): for the audit trail. Zero when it did not verify.
	Verified Identity
	// Client is the client address the decision was made for (the zero
	// Addr when the front end could not tell, or was not asked: see
	// WantsClient).
	Client netip.Addr
	// Err is why the store could not answer.
	Err error
	// Status is the HTTP status: 200 when allowed.
	Status int
	// Headers and Body are the answer to a denied request (canonical names,
	// shared: never change them). An allowed request's identity headers
	// come from Decision.AppendHeaders.
	Headers []Header
	Body    []byte

	gate *Gate
}

// Allowed reports whether the request may go on.
func (r *Result) Allowed() bool { return r.Err == nil && r.Decision.Allowed() }

// Decide verifies the request whose headers are h (canonical names, as
// net/http keeps them) from the client at client (the zero Addr when the
// front end cannot tell).
func (g *Gate) Decide(ctx context.Context, h HTTPHeader, client netip.Addr) Result {
	return g.DecideFor(ctx, h, client, nil)
}

// DecideFor is Decide with an Authorizer (nil for none) judging what the
// request asks to do.
func (g *Gate) DecideFor(ctx context.Context, h HTTPHeader, client netip.Addr, a Authorizer) (res Result) {
	// Written in place: the result is returned by value, and copies of it
	// showed on the hot path.
	res.gate, res.Client = g, client
	if g.observer != nil {
		defer g.observe(ctx, &res)
	}
	if g.ruled && !g.rules.admits(client) {
		// Before any lookup: a refused address costs no database work.
		res.Decision = Decision{Reason: IPNotAllowed}
		res.Status, res.Headers, res.Body = g.answers.For(res.Decision)
		return res
	}
	if g.shield != nil {
		if wait, blocked := g.shield.Blocked(client); blocked {
			res.Decision = Decision{Reason: TooManyFailures, RetryAfter: wait}
			res.Status, res.Headers, res.Body = g.answers.For(res.Decision)
			return res
		}
	}
	res.Credential = g.extractor.Extract(h)
	res.Decision, res.Err = g.verifier.Verify(ctx, res.Credential)
	if g.shield != nil && res.Err == nil && g.guessed(&res) {
		g.shield.Failed(client)
	}
	if res.Err != nil {
		if g.onError != nil && ctx.Err() == nil {
			g.onError(res.Credential, res.Err)
		}
		res.Decision = Decision{Reason: BackendUnavailable}
	}
	if res.Decision.Allowed() {
		res.Verified = res.Decision.identity()
	}
	g.enforce(&res.Decision)
	g.keyAddress(&res.Decision, client)
	if a != nil && res.Decision.Allowed() {
		if why := a.Authorize(res.Decision); why != Allowed {
			res.Decision = Decision{Reason: why, Method: res.Decision.Method, Scopes: res.Decision.Scopes}
		}
	}
	if res.Decision.Allowed() && g.limiter != nil {
		// After the gateway's other refusals: a request refused for any
		// of them spends no limit.
		if wait, limited := g.limiter.Limit(ctx, res.Decision, client); limited {
			res.Decision = Decision{Reason: RateLimitExceeded, Method: res.Decision.Method, RetryAfter: wait}
		}
	}
	if g.meter != nil && res.Decision.key != nil && res.Decision.Allowed() {
		// Last: only a request the gateway lets through spends the key's
		// Better-Auth quota and rate limit.
		g.count(ctx, &res)
	}
	if res.Decision.Allowed() {
		res.Status = http.StatusOK
		return res
	}
	res.Status, res.Headers, res.Body = g.answers.For(res.Decision)
	return res
}

// observe reports a decision to the observer, unless its lookup failed
// because the request itself ended (the client left, Envoy gave up): no
// one got that answer, and counting it as BACKEND_UNAVAILABLE would show
// impatient clients as a database outage.
func (g *Gate) observe(ctx context.Context, res *Result) {
	if res.Err != nil && ctx.Err() != nil {
		return
	}
	g.observer.Decided(res.Method(), res.Decision.Reason)
}

// Method is the decision's method or, when none verified, the kind of
// credential presented when it was of one kind (an unknown API key is
// MethodAPIKey); MethodNone without a credential.
func (r *Result) Method() Method {
	if m := r.Decision.Method; m != MethodNone {
		return m
	}
	if m := r.Verified.Method; m != MethodNone {
		return m
	}
	switch r.Credential.Kind {
	case KindAPIKey:
		return MethodAPIKey
	case KindSession:
		return MethodSession
	case KindOAuth, KindJWT:
		return MethodOAuth
	}
	return MethodNone
}

// count asks the meter about an allowed key's use.
func (g *Gate) count(ctx context.Context, res *Result) {
	u, err := g.meter.Use(ctx, res.Decision.key)
	switch {
	case err != nil:
		res.Err = err
		if g.onError != nil && ctx.Err() == nil {
			g.onError(res.Credential, err)
		}
		res.Decision = Decision{Reason: BackendUnavailable}
	case u.Reason != Allowed:
		res.Decision = Decision{Reason: u.Reason, Method: res.Decision.Method, RetryAfter: u.RetryAfter, Usage: &u}
	default:
		res.Decision.Usage = &u
	}
}

// guessed reports whether a refusal looks like guessing, which the shield
// counts: an unknown API key or OAuth token, or a session token that is raw or carries a
// signature that does not verify. A correctly signed token the database no
// longer knows is a browser's stale cookie, issued by the app itself: a
// NAT full of those must not lock everyone behind it out.
func (g *Gate) guessed(res *Result) bool {
	switch res.Decision.Reason {
	case InvalidAPIKey, InvalidToken:
		return true
	case InvalidSession:
		if res.Credential.Kind == KindInvalid || isRawSessionToken(res.Credential.Value) {
			return true
		}
		_, signed := g.verifier.unsign(res.Credential)
		return !signed
	}
	return false
}

// Recheck verifies a credential again, for a stream from client whose key,
// session or user may have been revoked: true only if it still passes.
func (g *Gate) Recheck(ctx context.Context, c Credential, client netip.Addr) bool {
	d, err := g.verifier.Verify(ctx, c)
	if err != nil {
		return false
	}
	g.enforce(&d)
	g.keyAddress(&d, client)
	return d.Allowed()
}

// keyAddress applies an allowed API key's own allow-list (read from its
// metadata) to the client: after the lookup, since the key must be known,
// and after the route's rules. A client outside the list, or unknown, gets
// 403 IP_NOT_ALLOWED; a key whose list was malformed admits nobody.
func (g *Gate) keyAddress(d *Decision, client netip.Addr) {
	l := d.AllowedIPs
	if l == nil || !d.Allowed() || l.Admits(client) {
		return
	}
	if l.Problem != "" && g.onKeyIP != nil {
		g.onKeyIP(d.CredentialID, l.Problem)
	}
	*d = Decision{Reason: IPNotAllowed, Method: d.Method}
}

// enforce applies the rules to an allowed decision: a refusal keeps the
// method (for logs) and drops the identity.
func (g *Gate) enforce(d *Decision) {
	if !g.ruled || !d.Allowed() {
		return
	}
	if why := g.rules.check(d); why != Allowed {
		// An OAuth token short of a scope keeps the ones it holds: the
		// step-up challenge names them.
		*d = Decision{Reason: why, Method: d.Method, Scopes: d.Scopes}
	}
}

// Strip edits a request's headers as the upstream must get them, whatever
// the outcome: it removes every header the gateway owns (X-Auth-*, in any
// letter case, '_' for '-'), and on an allowed request, unless the
// credential is kept, the credential (see Extractor.RemoveCredentials); the
// front end then sets the identity headers. With removed not nil, for a
// front end that reports the edits rather than makes them (ext_authz), it
// appends to removed each name it deletes, except the identity headers
// about to be set (those are overwritten), and says whether it rewrote the
// Cookie header (the session cookies taken out, others kept); with nil, it
// reports nothing and allocates nothing.
func (r *Result) Strip(h HTTPHeader, removed *[]string) (cookieSet bool) {
	var set [MaxHeaders]Header
	var hs []Header // the identity headers, computed at the first owned name reported
	for name := range h {
		if !IsOwnedHeader(name) {
			continue
		}
		delete(h, name)
		if removed == nil {
			continue
		}
		if hs == nil {
			hs = r.Decision.AppendHeaders(set[:0])
		}
		if !setsName(hs, name) {
			*removed = append(*removed, name)
		}
	}
	if !r.Allowed() || r.gate.keep {
		return false
	}
	if removed == nil {
		r.gate.extractor.RemoveCredentials(h)
		return false
	}
	rec := recorder{HTTPHeader: h, removed: removed}
	r.gate.extractor.RemoveCredentials(&rec)
	return rec.cookieSet
}

// setsName reports whether name is, exactly but for letter case, one of the
// identity headers: the front end then replaces the client's value.
func setsName(hs []Header, name string) bool {
	for _, hd := range hs {
		if strings.EqualFold(hd.Name, name) {
			return true
		}
	}
	return false
}

// recorder is an HTTPHeader that notes its edits.
type recorder struct {
	HTTPHeader
	removed   *[]string
	cookieSet bool
}

func (e *recorder) Del(name string) {
	e.HTTPHeader.Del(name)
	*e.removed = append(*e.removed, name)
}

func (e *recorder) Set(name, value string) {
	e.HTTPHeader.Set(name, value)
	e.cookieSet = e.cookieSet || name == "Cookie"
}
