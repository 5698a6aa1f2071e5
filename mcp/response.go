package mcp

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// replay gives a body back whole: the bytes read, then the rest.
type replay struct {
	head  []byte
	rest  io.ReadCloser
	small [1024]byte // the head of most bodies, in the same allocation
}

func (r *replay) Read(p []byte) (int, error) {
	if len(r.head) > 0 {
		n := copy(p, r.head)
		r.head = r.head[n:]
		return n, nil
	}
	return r.rest.Read(p)
}

func (r *replay) Close() error { return r.rest.Close() }

// Body returns the request body to pass on, byte for byte as the client
// sent it, when Authorize read some of it; otherwise nil (the body was not
// touched).
func (c *Call) Body() io.ReadCloser {
	if c.replay == nil {
		return nil
	}
	return c.replay
}

// Answer renders a refusal: the status and headers res says, with a
// tool's own insufficient_scope challenge when a rule refused an OAuth
// token, and, for a POST (every POST to an MCP endpoint is JSON-RPC), the
// body as JSON-RPC errors: one per request of a batch, each with its id,
// or one with the request's id (null when the gateway refused before
// reading the body, or could not read it). Other requests get res.Body.
func (c *Call) Answer(res *betterauth.Result) (status int, headers []betterauth.Header, body []byte) {
	status, headers = res.Status, res.Headers
	scope := ""
	if c.why == betterauth.InsufficientScope && res.Decision.Reason == c.why && c.who.method == betterauth.MethodOAuth {
		// Refused here, for a rule's scopes: the rule's challenge, not the
		// route's.
		var challenge betterauth.Header
		scope, challenge = c.stepUp()
		hs := make([]betterauth.Header, 0, len(headers))
		for _, h := range headers {
			if h.Name != challenge.Name {
				hs = append(hs, h)
			}
		}
		headers = append(hs, challenge)
	}
	if c.req.Method != http.MethodPost {
		return status, headers, res.Body
	}
	return status, headers, c.errorBody(res.Decision.Reason.Outcome(), scope)
}

// stepUp is what an OAuth token refused for its scopes is asked to get:
// the scopes it holds, the route's, and those of every rule the request
// met (a batch's too), in one challenge.
func (c *Call) stepUp() (scope string, challenge betterauth.Header) {
	var more []string
	for i, r := range c.needed {
		if !slices.Contains(c.needed[:i], r) {
			more = append(more, r.Scopes...)
		}
	}
	scope, value := c.g.stepUp(c.who.scopes, more)
	return scope, betterauth.Header{Name: "WWW-Authenticate", Value: value}
}

// rpcError is a JSON-RPC error response.
type rpcError struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   rpcErrorObject  `json:"error"`
}

type rpcErrorObject struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    struct {
		Code  string `json:"code"`
		Scope string `json:"scope,omitempty"`
	} `json:"data"`
}

var null = json.RawMessage("null")

// errorBody renders a refusal as JSON-RPC: error.data.code is the
// gateway's code for it (o.Code), error.code and error.message JSON-RPC's
// when the request itself is at fault, CodeRefused and o.Message when not.
func (c *Call) errorBody(o betterauth.Outcome, scope string) []byte {
	e := rpcError{JSONRPC: "2.0", ID: null, Error: rpcErrorObject{Code: CodeRefused, Message: o.Message}}
	e.Error.Data.Code, e.Error.Data.Scope = o.Code, scope
	if c.err != nil {
		e.Error.Code, e.Error.Message = c.err.Code, c.err.Message
	}
	var out any = e
	if c.parsed && c.body.Batch {
		var each []rpcError
		for _, m := range c.body.Messages {
			if m.Method != nil && m.ID != nil {
				e.ID = m.ID
				each = append(each, e)
			}
		}
		if len(each) > 0 {
			out = each
		}
	} else if c.parsed && len(c.body.Messages) == 1 && c.body.Messages[0].ID != nil {
		e.ID = c.body.Messages[0].ID
		out = e
	}
	b, _ := json.Marshal(out)
	return b
}

// Wrap returns the writer the response to r must go through: one that
// filters list answers (for a POST that asks for a list, and every GET: a
// stream may replay one, and the HTTP+SSE transport of 2024-11-05 answers
// every request on its GET stream) and binds a session the upstream
// opens (an initialize) or forgets one it closes (a DELETE); otherwise w
// itself. When it filters it also asks the upstream for an
// uncompressed answer (it removes Accept-Encoding from r), since a
// compressed one cannot be read.
func (c *Call) Wrap(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	filters := c.g.policy.any() && (c.body.Lists || r.Method == http.MethodGet)
	binds := c.g.sessions != nil && (c.body.Initialize || r.Method == http.MethodDelete && c.hdr.sessionID != "")
	if !filters && !binds {
		return w
	}
	if filters {
		r.Header.Del("Accept-Encoding")
	}
	c.lister.policy, c.lister.who = c.g.policy, &c.who
	c.rw.w, c.rw.c, c.rw.filters, c.rw.sse.lister = w, c, filters, &c.lister
	return &c.rw
}

// Finish completes the response after the upstream's handler returned: a
// JSON answer held for filtering is written, a last event without its
// empty line too. upstreamErr is what that handler returned; when it
// failed, nothing held is written (the front end answers the error).
func (c *Call) Finish(upstreamErr error) error {
	if c.rw.c == nil || upstreamErr != nil {
		return upstreamErr
	}
	return c.rw.finish()
}

// Write modes of a responseWriter.
const (
	modeHeader = iota // nothing written yet
	modePass          // passed on as it comes
	modeJSON          // held whole, filtered at the end
	modeSSE           // filtered event by event
	modeFailed        // refused: a JSON answer too large, or encoded
)

// responseWriter filters list answers and sees sessions open and close.
type responseWriter struct {
	w       http.ResponseWriter
	c       *Call
	filters bool
	mode    int
	status  int
	buf     []byte // JSON: the answer so far; SSE: what follows the last complete event
	line    int    // SSE: where the line being scanned starts in buf
	at      int    // SSE: how far buf was scanned
	out     []byte
	sse     sse
	failure *Error
}

func (rw *responseWriter) Header() http.Header { return rw.w.Header() }

// Unwrap gives http.ResponseController the writer below.
func (rw *responseWriter) Unwrap() http.ResponseWriter { return rw.w }

func (rw *responseWriter) WriteHeader(status int) {
	if rw.mode != modeHeader {
		return
	}
	if status < 200 { // informational: 103 Early Hints
		rw.w.WriteHeader(status)
		return
	}
	rw.status = status
	rw.sessions(status)
	h := rw.w.Header()
	mode := modePass
	if rw.filters {
		switch mediaType(h.Get("Content-Type")) {
		case "application/json":
			mode = modeJSON
		case "text/event-stream":
			mode = modeSSE
		}
		if enc := h.Get("Content-Encoding"); mode != modePass && enc != "" && !strings.EqualFold(enc, "identity") {
			mode, rw.failure = modeFailed, errUpstreamEncoded
		}
	}
	rw.mode = mode
	switch mode {
	case modeSSE:
		h.Del("Content-Length")
		fallthrough
	case modePass:
		rw.w.WriteHeader(status)
	}
}

// sessions binds the session an initialize opened, and forgets the one a
// DELETE closed.
func (rw *responseWriter) sessions(status int) {
	c := rw.c
	if c.g.sessions == nil || status < 200 || status > 299 {
		return
	}
	switch {
	case c.body.Initialize:
		if id := rw.w.Header().Get(HeaderSessionID); id != "" {
			c.g.sessions.bind(id, c.who.principal)
		}
	case c.req.Method == http.MethodDelete:
		c.g.sessions.forget(c.hdr.sessionID)
	}
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	if rw.mode == modeHeader {
		rw.WriteHeader(http.StatusOK)
	}
	switch rw.mode {
	case modePass:
		return rw.w.Write(p)
	case modeJSON:
		if len(rw.buf)+len(p) > MaxFilteredMessage {
			rw.mode, rw.failure, rw.buf = modeFailed, errAnswerTooLarge, rw.buf[:0]
			return len(p), nil
		}
		rw.buf = append(rw.buf, p...)
		return len(p), nil
	case modeSSE:
		rw.buf = append(rw.buf, p...)
		if err := rw.events(false); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return len(p), nil // failed: the answer is replaced
}

// Flush sends what is complete: the events filtered so far.
func (rw *responseWriter) Flush() {
	if rw.mode == modePass || rw.mode == modeSSE {
		_ = http.NewResponseController(rw.w).Flush()
	}
}

var (
	errAnswerTooLarge   = &Error{http.StatusBadGateway, CodeInternalError, "Internal error: the server's answer is too large for the gateway to filter"}
	errUpstreamEncoded  = &Error{http.StatusBadGateway, CodeInternalError, "Internal error: the server's answer is encoded; the gateway cannot filter it"}
	errUnreadableAnswer = &Error{http.StatusBadGateway, CodeInternalError, "Internal error: the server's answer is not JSON the gateway can read"}
	errEventTooLarge    = &Error{http.StatusBadGateway, CodeInternalError, "Internal error: an event of the server's stream is too large for the gateway to filter"}
)

// events writes every complete event held, filtered; with final, what is
// left too (a stream that ended without an empty line: clients should
// drop it, but one may not).
func (rw *responseWriter) events(final bool) error {
	rest := rw.buf
	rw.out = rw.out[:0]
	for {
		n := scanEvent(rest, &rw.line, &rw.at)
		if n < 0 {
			if !final || len(rest) == 0 {
				break
			}
			n = len(rest)
		}
		rw.out = rw.sse.event(rw.out, rest[:n])
		rest, rw.line, rw.at = rest[n:], 0, 0
	}
	if len(rest) > MaxFilteredMessage {
		return errEventTooLarge
	}
	if len(rest) < len(rw.buf) {
		rw.buf = rw.buf[:copy(rw.buf, rest)]
	}
	if len(rw.out) == 0 {
		return nil
	}
	_, err := rw.w.Write(rw.out)
	return err
}

// finish writes what is held.
func (rw *responseWriter) finish() error {
	switch rw.mode {
	case modeJSON:
		out, _, unreadable := rw.sse.lister.filter(rw.out[:0], rw.buf)
		if unreadable != nil {
			rw.mode, rw.failure = modeFailed, errUnreadableAnswer
			return rw.finish()
		}
		h := rw.w.Header()
		h.Set("Content-Length", strconv.Itoa(len(out)))
		rw.w.WriteHeader(rw.status)
		_, err := rw.w.Write(out)
		return err
	case modeSSE:
		return rw.events(true)
	case modeFailed:
		c := rw.c
		c.err = rw.failure
		body := c.errorBody(betterauth.Outcome{Code: "UNFILTERABLE_ANSWER"}, "")
		h := rw.w.Header()
		for _, name := range []string{"Content-Encoding", "Content-Length", "Etag", "Last-Modified"} {
			h.Del(name)
		}
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		rw.w.WriteHeader(rw.failure.Status)
		_, err := rw.w.Write(body)
		return err
	}
	return nil
}

// mediaType is a Content-Type's media type, in lower case.
func mediaType(ct string) string {
	if ct == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ""
	}
	return mt
}
