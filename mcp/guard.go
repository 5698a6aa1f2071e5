package mcp

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// Config configures a Guard.
type Config struct {
	// Rules say what tools, resources and prompts need; the first whose
	// kind and pattern match a name decides.
	Rules []Rule
	// Default is what names no rule matches need; nil lets them pass.
	Default *Requirement
	// MaxBody bounds what is read of a POST body: a longer one is refused
	// with 413 (never passed on unread). Default: DefaultMaxBody.
	MaxBody int64
	// Sessions says how sessions are bound to principals (default
	// SessionsStrict), SessionTTL how long an unused binding is kept
	// (default 24h), MaxSessions how many (default 100000; past it the
	// least recently used go first).
	Sessions    SessionMode
	SessionTTL  time.Duration
	MaxSessions int
	// StepUp makes the insufficient_scope answer to a token holding held
	// and short of a rule's scopes, more (betterauth.Gate.StepUp, which
	// names the route's scopes too). Default: the realm's, without
	// resource metadata.
	StepUp func(held, more []string) (scope, challenge string)
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// DefaultMaxBody is the default bound on a POST body the gateway reads.
const DefaultMaxBody = 1 << 20

// Guard is per-tool authorization for one MCP endpoint.
type Guard struct {
	policy   *Policy
	maxBody  int64
	mode     SessionMode
	sessions *sessions // nil when sessions are left alone
	stepUp   func(held, more []string) (scope, challenge string)
	calls    sync.Pool
}

// New checks cfg and returns its Guard.
func New(cfg Config) (*Guard, error) {
	p, err := NewPolicy(cfg.Rules, cfg.Default)
	if err != nil {
		return nil, err
	}
	if cfg.MaxBody < 0 || cfg.SessionTTL < 0 || cfg.MaxSessions < 0 {
		return nil, errors.New("max_body, session_ttl and max_sessions must not be negative")
	}
	g := &Guard{policy: p, maxBody: cfg.MaxBody, mode: cfg.Sessions, stepUp: cfg.StepUp}
	if g.maxBody == 0 {
		g.maxBody = DefaultMaxBody
	}
	if g.stepUp == nil {
		g.stepUp = betterauth.NewAnswers("").StepUp
	}
	if cfg.Sessions != SessionsOff {
		ttl, max, now := cfg.SessionTTL, cfg.MaxSessions, cfg.Now
		if ttl == 0 {
			ttl = 24 * time.Hour
		}
		if max == 0 {
			max = 100000
		}
		if now == nil {
			now = time.Now
		}
		g.sessions = newSessions(ttl, max, now)
	}
	g.calls.New = func() any { return new(Call) }
	return g, nil
}

// Request is what a front end knows of a request before its credential is
// checked.
type Request struct {
	// Method is the HTTP method.
	Method string
	// Header is the request's headers, canonical names (read, never
	// changed).
	Header map[string][]string
	// Body, when set, is read for a POST, at most MaxBody bytes and one
	// more, and given back whole by Call.Body. ContentLength is its
	// declared length, -1 when unknown.
	Body          io.ReadCloser
	ContentLength int64
	// Bytes is a body the front end already holds, all of it (Envoy's
	// with_request_body); nil when it holds none, or only part.
	Bytes []byte
	// Metadata is what Envoy's MCP filter read, when it did.
	Metadata *Metadata
}

// Metadata is what Envoy's MCP filter (envoy.filters.http.mcp) publishes
// as dynamic metadata about a JSON-RPC POST.
type Metadata struct {
	Method string // "method"; empty for a response
	// ID is "id", as JSON; empty when absent.
	ID string
	// params.name, params.uri and params.ref's type, name and uri, with
	// whether each is present (as a string).
	Name, URI, RefType, RefName, RefURI                string
	HasName, HasURI, HasRefType, HasRefName, HasRefURI bool
	// NotMCP is is_mcp_request false: Envoy did not read a JSON-RPC
	// message. Truncated is is_exceeding_limit: it read only the first
	// max_request_body_size bytes.
	NotMCP, Truncated bool
}

var (
	errTooLarge    = &Error{http.StatusRequestEntityTooLarge, CodeInvalidRequest, "Invalid request: the body is larger than the gateway reads"}
	errRead        = badRequest(CodeInvalidRequest, "Invalid request: the body could not be read")
	errUnseen      = badRequest(CodeInvalidRequest, "Invalid request: the gateway cannot see what this request asks for (no body, no MCP filter metadata, no Mcp-Method header it may trust)")
	errEnvoyPart   = &Error{http.StatusRequestEntityTooLarge, CodeInvalidRequest, "Invalid request: the MCP filter read only part of the body"}
	errSuspectURI  = badRequest(CodeInvalidParams, "Invalid params: the resource URI is not in normal form (dot segments, backslashes, or percent-encoded '/', '\\' or unreserved characters)")
	errEncodedBody = badRequest(CodeInvalidRequest, "Invalid request: the gateway reads no Content-Encoding")
	errCharset     = badRequest(CodeInvalidRequest, "Invalid request: JSON-RPC messages are UTF-8; the Content-Type names another charset")
)

// Call is one request on the guard's endpoint: Begin it before the
// credential is checked, give it to betterauth.Gate.DecideFor as the
// Authorizer, render a refusal with Answer, or pass the request on with
// Body and Wrap; End it when the response is written.
type Call struct {
	g   *Guard
	req Request
	hdr requestHeaders

	body   Body
	parsed bool              // body holds the request's messages
	replay *replay           // req.Body given back
	err    *Error            // why the request cannot be judged
	why    betterauth.Reason // the refusal Authorize gave, if any
	needed []*Rule           // the rules with scopes the request met, for a step-up
	who    caller
	rw     responseWriter
	lister lister
}

// Begin starts judging a request.
func (g *Guard) Begin(req Request) *Call {
	c := g.calls.Get().(*Call)
	c.g, c.req = g, req
	c.hdr.read(req.Header)
	return c
}

// End releases c; it must not be used after.
func (c *Call) End() {
	g := c.g
	// Keep the storage, not what it held.
	fresh := Call{body: c.body, needed: c.needed[:0]}
	fresh.body.reset()
	fresh.body.scratch = reuse(fresh.body.scratch)
	fresh.lister = lister{scan: c.lister.scan, edits: c.lister.edits[:0], text: reuse(c.lister.text), spans: c.lister.spans[:0]}
	fresh.lister.scan.reset()
	fresh.lister.scan.scratch = reuse(fresh.lister.scan.scratch)
	fresh.rw = responseWriter{buf: reuse(c.rw.buf), out: reuse(c.rw.out),
		sse: sse{data: reuse(c.rw.sse.data), out: reuse(c.rw.sse.out)}}
	*c = fresh
	g.calls.Put(c)
}

// reuse empties a buffer for the next call, unless it grew large.
func reuse(b []byte) []byte {
	if cap(b) > 64<<10 {
		return nil
	}
	return b[:0]
}

// Authorize implements betterauth.Authorizer: once the credential is
// verified, it checks the session, reads what the request asks for and
// judges it.
func (c *Call) Authorize(d betterauth.Decision) betterauth.Reason {
	c.who.set(&d)
	post := c.req.Method == http.MethodPost
	if post {
		if err := c.read(); err != nil {
			c.err = err
			if err.Status == http.StatusRequestEntityTooLarge {
				return betterauth.BodyTooLarge
			}
			return betterauth.InvalidMCPRequest
		}
	}
	if why := c.session(); why != betterauth.Allowed || !post {
		return why
	}
	c.why = c.judge()
	return c.why
}

// session checks a session id against its principal, whatever protocol
// version the request names: 2026-07-28 has no sessions, but a stateful
// server (the Go SDK's default) still finds the session of a GET, a
// DELETE, a notification or a response that names one at that version.
func (c *Call) session() betterauth.Reason {
	id := c.hdr.sessionID
	if c.g.sessions == nil || id == "" {
		return betterauth.Allowed
	}
	if !c.g.sessions.check(id, c.who.principal, c.g.mode == SessionsFirstUse) {
		return betterauth.MCPSessionNotFound
	}
	return betterauth.Allowed
}

// read establishes the request's messages: from the body, else from
// Envoy's MCP filter, else (2026-07-28 only) from the headers, and checks
// the headers against them. The body comes first whenever there is one:
// it is what the upstream executes, and Envoy's reader is not the
// gateway's (it may stop at the first name of a duplicated member).
func (c *Call) read() *Error {
	switch {
	case c.req.Body != nil || c.req.Bytes != nil:
		if enc, ok := c.req.Header["Content-Encoding"]; ok && (len(enc) != 1 || !strings.EqualFold(enc[0], "identity")) {
			return errEncodedBody
		}
		if !utf8Charset(c.req.Header["Content-Type"]) {
			return errCharset
		}
		b := c.req.Bytes
		if b == nil {
			var err *Error
			if b, err = c.readBody(); err != nil {
				return err
			}
		}
		if err := parse(b, &c.body); err != nil {
			return err
		}
		c.parsed = true
	case c.req.Metadata != nil:
		if err := c.fromMetadata(c.req.Metadata); err != nil {
			return err
		}
	default:
		return c.fromHeaders()
	}
	return c.hdr.check(&c.body)
}

// utf8Charset reports whether Content-Type values leave the body UTF-8:
// no charset parameter, or utf-8. Servers decode the body in the charset
// named (the TypeScript SDK through iconv-lite): in UTF-7, ASCII the
// gateway reads as "+AGQ-elete" is "delete" to them.
func utf8Charset(cts []string) bool {
	for _, ct := range cts {
		if !strings.Contains(strings.ToLower(ct), "charset") {
			continue
		}
		_, params, err := mime.ParseMediaType(ct)
		if cs := params["charset"]; err != nil || cs != "" && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
			return false
		}
	}
	return true
}

// readBody reads the body, up to the bound and one byte more.
func (c *Call) readBody() ([]byte, *Error) {
	max := c.g.maxBody
	if c.req.ContentLength > max {
		return nil, errTooLarge
	}
	c.replay = &replay{rest: c.req.Body}
	buf := c.replay.small[:0]
	if n := c.req.ContentLength; n >= int64(len(c.replay.small)) {
		buf = make([]byte, 0, n+1) // n+1: the read that sees the end
	}
	for int64(len(buf)) <= max {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		end := min(int64(cap(buf)), max+1)
		n, err := c.req.Body.Read(buf[len(buf):end])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			c.replay.head = buf
			return nil, errRead
		}
	}
	c.replay.head = buf
	if int64(len(buf)) > max {
		return nil, errTooLarge
	}
	return buf, nil
}

// fromMetadata reads the one message Envoy's MCP filter saw.
func (c *Call) fromMetadata(md *Metadata) *Error {
	switch {
	case md.Truncated:
		return errEnvoyPart
	case md.NotMCP:
		return errNotMessage
	}
	p := params{
		name:    field{set: md.HasName, str: md.HasName, val: []byte(md.Name)},
		uri:     field{set: md.HasURI, str: md.HasURI, val: []byte(md.URI)},
		ref:     md.HasRefType,
		refType: field{set: md.HasRefType, str: md.HasRefType, val: []byte(md.RefType)},
		refName: field{set: md.HasRefName, str: md.HasRefName, val: []byte(md.RefName)},
		refURI:  field{set: md.HasRefURI, str: md.HasRefURI, val: []byte(md.RefURI)},
	}
	m := Message{}
	if md.Method != "" {
		m.Method = []byte(md.Method)
	}
	if md.ID != "" {
		m.ID = []byte(md.ID)
	}
	return c.single(m, &p)
}

// fromHeaders reads the message a request of 2026-07-28 or later
// describes in its headers, when nothing else says what it asks for.
// Servers of those versions must refuse a body that disagrees.
func (c *Call) fromHeaders() *Error {
	if !c.hdr.requires() || !c.hdr.hasMethod {
		if c.g.policy.any() {
			return errUnseen
		}
		return nil
	}
	if c.hdr.err != nil {
		return c.hdr.err
	}
	p := params{name: field{set: c.hdr.hasName, str: c.hdr.hasName, val: []byte(c.hdr.name)}}
	p.uri = p.name
	return c.single(Message{Method: []byte(c.hdr.method)}, &p)
}

// single makes c's body the one message m with params p, as Parse would.
func (c *Call) single(m Message, p *params) *Error {
	b := &c.body
	b.reset()
	switch string(m.Method) {
	case "completion/complete", "subscriptions/listen":
		// What they name is not in the headers, nor in the filter's
		// metadata (which skips arrays).
		if !p.ref && (c.g.policy.Judges(Prompt) || c.g.policy.Judges(Resource)) {
			return errUnseen
		}
	}
	if err := p.targets(b, m.Method, 0); err != nil {
		return err
	}
	m.end = len(b.Targets)
	b.Messages = append(b.Messages, m)
	c.parsed = true
	return nil
}

// Target returns what the request asked for, for the audit trail, once
// Authorize has read it: the method and the first tool, resource or
// prompt named, or "batch" and the first name for a batch; "" when
// unknown (also for a nil Call).
func (c *Call) Target() (method, name string) {
	if c == nil {
		return "", ""
	}
	b := &c.body
	if !c.parsed || len(b.Messages) == 0 {
		return "", ""
	}
	method = string(b.Messages[0].Method)
	if len(b.Messages) > 1 {
		method = "batch"
	}
	if len(b.Targets) > 0 {
		name = string(b.Targets[0].Name)
	}
	return method, name
}

// judge applies the policy to every target of the request; a batch passes
// only if all of it does. A refusal no new token can lift (no scope would
// do) is given before one that stepping up would.
func (c *Call) judge() betterauth.Reason {
	p := c.g.policy
	why := betterauth.Allowed
	for i := range c.body.Targets {
		t := &c.body.Targets[i]
		if t.Kind == Resource && p.Judges(Resource) && !plainURI(t.Name) {
			c.err = errSuspectURI
			return betterauth.InvalidMCPRequest
		}
		w, r := p.judge(&c.who, t.Kind, t.Name)
		if r != nil && len(r.Scopes) > 0 {
			c.needed = append(c.needed, r)
		}
		if w != betterauth.Allowed && (why == betterauth.Allowed || why == betterauth.InsufficientScope && w != betterauth.InsufficientScope) {
			why = w
		}
	}
	return why
}
