// Package audit records who did what through the gateway: one event per
// decision, on a logger of its own (Caddy routes it to files or the
// network as any other) and, optionally, into a table of the app's
// database through a bounded queue that never holds a request up. An
// event names the credential by its row id and a short fingerprint, never
// by its secret.
package audit

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// Mode says which decisions are recorded.
type Mode uint8

const (
	Off     Mode = iota // none
	Denials             // refusals and failures (everything but 200)
	All                 // every decision
)

// ParseMode reads "off", "denials" or "all".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "off":
		return Off, nil
	case "denials":
		return Denials, nil
	case "", "all":
		return All, nil
	}
	return Off, fmt.Errorf("audit: events must be all, denials or off, not %q", s)
}

// Decision values of an event.
const (
	Allow = "allow" // passed on
	Deny  = "deny"  // refused: 4xx
	Fail  = "error" // the gateway could not tell: 503
)

// MaxField bounds each text field of an event: paths, hosts and names are
// the client's, and an audit row is no place for a megabyte of them.
const MaxField = 512

// Event is one decision.
type Event struct {
	Time     time.Time
	FrontEnd string // "caddy" or "ext_authz"
	// Method is the credential's kind: "api_key", "session", "oauth", or
	// "" when none was read.
	Method   string
	Decision string // Allow, Deny or Fail
	Code     string // the reason: OK, INVALID_API_KEY, ...
	Status   int
	// Who the credential proved to be, when it verified (also when the
	// gateway then refused the request).
	UserID, OrgID, ClientID string
	// The credential's row id, named for its kind.
	KeyID, SessionID, TokenID string
	// Fingerprint identifies the credential sent, known or not, without
	// revealing it (betterauth.Fingerprint).
	Fingerprint string
	ClientIP    netip.Addr
	Host, Path  string
	// What an MCP request asked for, when the gateway read it.
	MCPMethod, MCPName string
}

// Set fills e from a gate's result: the decision, who, and the
// credential's fingerprint. The front end adds where (Host, Path) and,
// for MCP, what.
func (e *Event) Set(frontEnd string, res *betterauth.Result) {
	e.Time = time.Now()
	// Without a zone (fe80::1%eth0): PostgreSQL's inet has none, and one
	// row it refuses would cost its whole batch.
	e.FrontEnd, e.Status, e.ClientIP = frontEnd, res.Status, res.Client.WithZone("")
	e.Code = res.Decision.Reason.String()
	switch {
	case res.Allowed():
		e.Decision = Allow
	case res.Decision.Reason == betterauth.BackendUnavailable:
		e.Decision = Fail
	default:
		e.Decision = Deny
	}
	id := res.Verified
	e.Method = res.Method().String()
	e.UserID, e.OrgID, e.ClientID = id.UserID, id.OrgID, id.ClientID
	switch id.Method {
	case betterauth.MethodAPIKey:
		e.KeyID = id.CredentialID
	case betterauth.MethodSession:
		e.SessionID = id.CredentialID
	case betterauth.MethodOAuth:
		e.TokenID = id.CredentialID
	}
	if res.Credential.Value != "" {
		e.Fingerprint = betterauth.Fingerprint(res.Credential.Value)
	}
}

// clean makes a field fit to log and to store: valid UTF-8 (PostgreSQL
// refuses anything else, and one bad row would fail its whole batch),
// no NUL, no control characters, at most MaxField bytes.
func clean(s string) string {
	ok := len(s) <= MaxField && utf8.ValidString(s)
	for i := 0; ok && i < len(s); i++ {
		ok = s[i] >= 0x20 && s[i] != 0x7f
	}
	if ok {
		return s
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if r < 0x20 || r == 0x7f {
			r = '\uFFFD'
		}
		if b.Len()+utf8.RuneLen(r) > MaxField {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// texts are e's text fields that come from the request or the database.
func (e *Event) texts() []*string {
	return []*string{&e.UserID, &e.OrgID, &e.ClientID, &e.KeyID, &e.SessionID, &e.TokenID,
		&e.Host, &e.Path, &e.MCPMethod, &e.MCPName}
}

// cleaned returns e with every text field cleaned.
func (e Event) cleaned() Event {
	for _, f := range e.texts() {
		*f = clean(*f)
	}
	return e
}

// detached returns e with a host and path of their own: a path cut from
// a request line (or an X-Forwarded-Uri) shares its bytes, and a queued
// event would keep the whole line, up to the server's header limit,
// alive instead of its 512 bytes. The other fields are copies already
// (ids read from the database, MCP names from the body).
func (e Event) detached() Event {
	e.Host, e.Path = strings.Clone(e.Host), strings.Clone(e.Path)
	return e
}

// MarshalLogObject writes the event's fields, leaving out empty ones.
func (e *Event) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	str := func(k, v string) {
		if v != "" {
			enc.AddString(k, v)
		}
	}
	str("front_end", e.FrontEnd)
	str("method", e.Method)
	enc.AddString("decision", e.Decision)
	enc.AddString("code", e.Code)
	enc.AddInt("status", e.Status)
	str("user_id", e.UserID)
	str("org_id", e.OrgID)
	str("key_id", e.KeyID)
	str("session_id", e.SessionID)
	str("token_id", e.TokenID)
	str("client_id", e.ClientID)
	str("credential_fingerprint", e.Fingerprint)
	if e.ClientIP.IsValid() {
		enc.AddString("client_ip", e.ClientIP.String())
	}
	str("host", e.Host)
	str("path", e.Path)
	str("mcp_method", e.MCPMethod)
	str("mcp_name", e.MCPName)
	return nil
}

// Log records the events of one front end's route.
type Log struct {
	mode   Mode
	logger *zap.Logger // nil: not logged
	sink   *Sink       // nil: not stored
}

// NewLog returns a Log recording mode's events on logger (nil for none)
// and in sink (nil for none). A nil *Log records nothing.
func NewLog(mode Mode, logger *zap.Logger, sink *Sink) *Log {
	if mode == Off || (logger == nil && sink == nil) {
		return nil
	}
	return &Log{mode: mode, logger: logger, sink: sink}
}

// Wants reports whether a decision that allowed (or not) the request is
// recorded: check it before building the event.
func (l *Log) Wants(allowed bool) bool {
	return l != nil && (l.mode == All || !allowed)
}

// Asked is what a request asked for beyond its route (mcp.Call: an MCP
// method and tool); a nil *mcp.Call answers "".
type Asked interface {
	Target() (method, name string)
}

// Decided records a gate's decision, if the log wants it: made by
// frontEnd, on a request to host and path (without its query, which may
// carry a secret), which asked for asked (nil: nothing known).
func (l *Log) Decided(frontEnd string, res *betterauth.Result, host, path string, asked Asked) {
	if !l.Wants(res.Allowed()) {
		return
	}
	var e Event
	e.Set(frontEnd, res)
	e.Host, e.Path = host, path
	if asked != nil {
		e.MCPMethod, e.MCPName = asked.Target()
		e.MCPName = bareName(e.MCPName)
	}
	l.Record(&e)
}

// Record logs e and queues it for the database; it never blocks.
func (l *Log) Record(e *Event) {
	c := *e
	c = c.cleaned()
	if l.logger != nil {
		if ce := l.logger.Check(zapcore.InfoLevel, "decision"); ce != nil {
			ce.Write(zap.Inline(&c))
		}
	}
	if l.sink != nil {
		l.sink.Offer(&c)
	}
}

// bareName is an MCP name without what a resource URI may carry that is
// a secret, as a path's query may: the query (a signed URL's signature),
// the fragment, and user info (https://user:password@host/...).
func bareName(s string) string {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	authority := rest
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority = rest[:i]
	}
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		s = scheme + "://" + rest[at+1:]
	}
	return s
}
