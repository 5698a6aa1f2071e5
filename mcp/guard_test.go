package mcp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

var testChallenge = betterauth.Challenge{ResourceMetadata: "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
	Scope: "mcp:read mcp:admin", NeededScope: "mcp:read"}

func testGuard(t testing.TB, cfg Config) *Guard {
	t.Helper()
	if cfg.Rules == nil {
		cfg.Rules = []Rule{
			{Kind: Tool, Pattern: "whoami"},
			{Kind: Tool, Pattern: "delete_*", Requirement: Requirement{Scopes: []string{"mcp:admin"},
				Permissions: betterauth.Permissions{"tools": {"delete"}}, Roles: []string{"admin"}}},
			{Kind: Resource, Pattern: "file:///secret/*", Requirement: Requirement{Roles: []string{"admin"}}},
			{Kind: Prompt, Pattern: "review", Requirement: Requirement{Scopes: []string{"mcp:review"}}},
		}
	}
	cfg.StepUp = betterauth.NewAnswersFor(testChallenge).StepUp
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// post begins a call for a POST of body with headers kv.
func post(g *Guard, body string, kv ...string) *Call {
	h := map[string][]string{"Content-Type": {"application/json"}}
	for i := 0; i < len(kv); i += 2 {
		h[kv[i]] = append(h[kv[i]], kv[i+1])
	}
	return g.Begin(Request{Method: http.MethodPost, Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))})
}

// refusal is the gate's answer to d, as a front end gets it.
func refusal(d betterauth.Decision) *betterauth.Result {
	res := &betterauth.Result{Decision: d}
	res.Status, res.Headers, res.Body = betterauth.NewAnswersFor(testChallenge).For(d)
	return res
}

// rpc decodes a JSON-RPC error body.
type rpc struct {
	ID    json.RawMessage `json:"id"`
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    struct {
			Code  string `json:"code"`
			Scope string `json:"scope"`
		} `json:"data"`
	} `json:"error"`
}

func header(hs []betterauth.Header, name string) string {
	for _, h := range hs {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

// An allowed call reads the body once and gives it back byte for byte; a
// refused OAuth token is told to step up to the tool's scopes and the
// route's, in the header and in a JSON-RPC error with the request's id.
func TestCallJudgesToolsAndAnswersInJSONRPC(t *testing.T) {
	t.Parallel()
	g := testGuard(t, Config{})
	body := `{"jsonrpc":"2.0","id":"call-1","method":"tools/call","params":{"name":"delete_item","arguments":{"id":7}}}` + "\n"

	c := post(g, body, HeaderProtocolVersion, "2026-07-28", HeaderMethod, "tools/call", HeaderName, "delete_item")
	if why := c.Authorize(*oauthCaller("mcp:admin")); why != betterauth.Allowed {
		t.Fatal(why)
	}
	if got, _ := io.ReadAll(c.Body()); string(got) != body {
		t.Fatalf("upstream gets %q", got)
	}
	c.End()

	c = post(g, body)
	d := oauthCaller("mcp:read")
	why := c.Authorize(*d)
	if why != betterauth.InsufficientScope {
		t.Fatal(why)
	}
	status, hs, raw := c.Answer(refusal(betterauth.Decision{Reason: why, Method: d.Method}))
	_, wantChallenge := betterauth.NewAnswersFor(testChallenge).StepUp([]string{"mcp:read", "mcp:admin"}, nil)
	if status != 403 || header(hs, "WWW-Authenticate") != wantChallenge || header(hs, "Content-Type") != "application/json" {
		t.Fatalf("%d %v", status, hs)
	}
	var e rpc
	if err := json.Unmarshal(raw, &e); err != nil || string(e.ID) != `"call-1"` || e.Error.Code != CodeRefused ||
		e.Error.Data.Code != "INSUFFICIENT_SCOPE" || e.Error.Data.Scope != "mcp:read mcp:admin" {
		t.Fatalf("%s", raw)
	}
	c.End()

	// An API key and a session cannot step up: a plain 403.
	for _, d := range []*betterauth.Decision{keyCaller(betterauth.Permissions{"tools": {"call"}}), sessionCaller("user")} {
		c = post(g, body)
		why := c.Authorize(*d)
		status, hs, raw := c.Answer(refusal(betterauth.Decision{Reason: why, Method: d.Method}))
		if status != 403 || header(hs, "WWW-Authenticate") != "" || !bytes.Contains(raw, []byte(`"id":"call-1"`)) {
			t.Fatalf("%v: %d %v %s", d.Method, status, hs, raw)
		}
		c.End()
	}
}

// A batch passes whole or not at all; its refusal answers each request
// with its id, and a token is asked for every scope the batch needs.
func TestCallBatch(t *testing.T) {
	t.Parallel()
	g := testGuard(t, Config{})
	batch := `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}},` +
		`{"jsonrpc":"2.0","method":"notifications/progress"},` +
		`{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"review"}},` +
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete_all"}}]`
	c := post(g, batch, HeaderProtocolVersion, "2025-03-26")
	d := oauthCaller("mcp:review")
	why := c.Authorize(*d)
	status, hs, raw := c.Answer(refusal(betterauth.Decision{Reason: why, Method: d.Method}))
	var errs []rpc
	if err := json.Unmarshal(raw, &errs); err != nil || status != 403 || len(errs) != 3 ||
		string(errs[0].ID) != "1" || string(errs[1].ID) != "2" || string(errs[2].ID) != "3" {
		t.Fatalf("%d %s", status, raw)
	}
	if _, want := betterauth.NewAnswersFor(testChallenge).StepUp([]string{"mcp:review", "mcp:read", "mcp:admin"}, nil); header(hs, "WWW-Authenticate") != want {
		t.Fatalf("challenge %s", header(hs, "WWW-Authenticate"))
	}
	c.End()
	// A refusal that no scope would lift comes first.
	c = post(g, `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_x"}},`+
		`{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///secret/k"}}]`)
	if why := c.Authorize(*oauthCaller()); why != betterauth.ToolNotAllowed {
		t.Fatal(why)
	}
	c.End()
	c = post(g, batch)
	if why := c.Authorize(*oauthCaller("mcp:review", "mcp:admin")); why != betterauth.Allowed {
		t.Fatal(why)
	}
	c.End()
}

// What the gateway cannot judge is refused with the JSON-RPC error that
// says why, and 400 or 413.
func TestCallRefusesWhatItCannotJudge(t *testing.T) {
	t.Parallel()
	g := testGuard(t, Config{MaxBody: 200})
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}}`
	big := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{"x":"` + strings.Repeat("a", 200) + `"}}}`
	for _, tc := range []struct {
		why    string
		c      *Call
		reason betterauth.Reason
		status int
		code   int
	}{
		{"header mismatch", post(g, call, HeaderProtocolVersion, "2026-07-28", HeaderMethod, "tools/call", HeaderName, "delete_all"),
			betterauth.InvalidMCPRequest, 400, CodeHeaderMismatch},
		{"modern without headers", post(g, call, HeaderProtocolVersion, "2026-07-28"), betterauth.InvalidMCPRequest, 400, CodeHeaderMismatch},
		{"not JSON", post(g, `tools/call delete_all`), betterauth.InvalidMCPRequest, 400, CodeParseError},
		{"no name", post(g, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}`), betterauth.InvalidMCPRequest, 400, CodeInvalidParams},
		{"a resource URI with a dot segment", post(g, `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x/../secret/k"}}`),
			betterauth.InvalidMCPRequest, 400, CodeInvalidParams},
		{"too large, declared", post(g, big), betterauth.BodyTooLarge, 413, CodeInvalidRequest},
		{"too large, chunked", g.Begin(Request{Method: "POST", Header: map[string][]string{}, Body: io.NopCloser(strings.NewReader(big)), ContentLength: -1}),
			betterauth.BodyTooLarge, 413, CodeInvalidRequest},
		{"compressed", post(g, call, "Content-Encoding", "gzip"), betterauth.InvalidMCPRequest, 400, CodeInvalidRequest},
		// UTF-7 reads "+AGQ-elete_all" as "delete_all": another charset is
		// another body.
		{"UTF-7", post(g, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"+AGQ-elete_all"}}`, "Content-Type", `application/json; charset="UTF-7"`),
			betterauth.InvalidMCPRequest, 400, CodeInvalidRequest},
		{"a malformed charset", post(g, call, "Content-Type", `application/json; charset`), betterauth.InvalidMCPRequest, 400, CodeInvalidRequest},
	} {
		why := tc.c.Authorize(*oauthCaller("mcp:admin"))
		if why != tc.reason {
			t.Errorf("%s: %v", tc.why, why)
			continue
		}
		status, _, raw := tc.c.Answer(refusal(betterauth.Decision{Reason: why, Method: betterauth.MethodOAuth}))
		var e rpc
		if err := json.Unmarshal(raw, &e); err != nil || status != tc.status || e.Error.Code != tc.code || e.Error.Data.Code != why.String() {
			t.Errorf("%s: %d %s", tc.why, status, raw)
		}
		tc.c.End()
	}
	for _, ct := range []string{"application/json; charset=utf-8", "application/json; Charset=UTF8", "text/plain", "application/json;charset=\"utf-8\""} {
		c := post(g, call, "Content-Type", ct)
		if why := c.Authorize(*oauthCaller()); why != betterauth.Allowed {
			t.Errorf("%s: %v", ct, why)
		}
		c.End()
	}
	// A body of exactly the bound passes; a byte more does not.
	exact := `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"p":"` + strings.Repeat("x", 200-58) + `"}}`
	if len(exact) != 200 {
		t.Fatalf("len %d", len(exact))
	}
	for _, n := range []int64{200, -1} {
		c := g.Begin(Request{Method: "POST", Header: map[string][]string{}, Body: io.NopCloser(strings.NewReader(exact)), ContentLength: n})
		if why := c.Authorize(*oauthCaller()); why != betterauth.Allowed {
			t.Fatalf("length %d: %v", n, why)
		}
		if got, _ := io.ReadAll(c.Body()); string(got) != exact {
			t.Fatal("replayed body")
		}
		c.End()
	}
}

// A refusal before the body is read (the credential itself) is a JSON-RPC
// error with a null id, for a POST; other methods get the gate's body.
func TestCallAnswersGateRefusals(t *testing.T) {
	t.Parallel()
	g := testGuard(t, Config{})
	c := post(g, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"x"}}`)
	res := refusal(betterauth.Decision{Reason: betterauth.MissingCredential})
	status, hs, raw := c.Answer(res)
	var e rpc
	if err := json.Unmarshal(raw, &e); err != nil || status != 401 || string(e.ID) != "null" || e.Error.Code != CodeRefused ||
		e.Error.Data.Code != "MISSING_CREDENTIAL" || !strings.Contains(header(hs, "WWW-Authenticate"), "resource_metadata=") {
		t.Fatalf("%d %v %s", status, hs, raw)
	}
	c.End()
	c = g.Begin(Request{Method: http.MethodGet, Header: map[string][]string{}})
	if _, _, raw := c.Answer(res); !bytes.Equal(raw, res.Body) {
		t.Fatalf("GET: %s", raw)
	}
	c.End()
}

// Envoy: the MCP filter's metadata, when present; else the headers of a
// version that requires them; else nothing the gateway may trust.
func TestCallFromEnvoy(t *testing.T) {
	t.Parallel()
	g := testGuard(t, Config{Sessions: SessionsOff})
	begin := func(md *Metadata, h map[string][]string) *Call {
		return g.Begin(Request{Method: http.MethodPost, Header: h, Metadata: md})
	}
	key := keyCaller(betterauth.Permissions{"tools": {"call"}})
	for _, tc := range []struct {
		why  string
		c    *Call
		want betterauth.Reason
	}{
		{"metadata: an open tool", begin(&Metadata{Method: "tools/call", Name: "whoami", HasName: true, ID: "1"}, nil), betterauth.Allowed},
		{"metadata: a guarded tool", begin(&Metadata{Method: "tools/call", Name: "delete_x", HasName: true, ID: "1"}, nil), betterauth.InsufficientPermissions},
		{"metadata: no name", begin(&Metadata{Method: "tools/call", ID: "1"}, nil), betterauth.InvalidMCPRequest},
		{"metadata: a list", begin(&Metadata{Method: "tools/list", ID: "1"}, nil), betterauth.Allowed},
		{"metadata: a completion reference", begin(&Metadata{Method: "completion/complete", HasRefType: true, RefType: "ref/resource",
			RefURI: "file:///secret/a", HasRefURI: true}, nil), betterauth.ToolNotAllowed},
		{"metadata: a listen, whose resources Envoy does not extract", begin(&Metadata{Method: "subscriptions/listen", ID: "1"}, nil), betterauth.InvalidMCPRequest},
		{"metadata: only part of the body read", begin(&Metadata{Method: "tools/call", Name: "whoami", HasName: true, Truncated: true}, nil), betterauth.BodyTooLarge},
		{"metadata: not JSON-RPC", begin(&Metadata{NotMCP: true}, nil), betterauth.InvalidMCPRequest},
		{"metadata against lying headers", begin(&Metadata{Method: "tools/call", Name: "whoami", HasName: true, ID: "1"},
			hdr("2026-07-28", "tools/call", "other")), betterauth.InvalidMCPRequest},
		{"modern headers alone", begin(nil, hdr("2026-07-28", "tools/call", "delete_x")), betterauth.InsufficientPermissions},
		{"modern headers alone, encoded", begin(nil, hdr("2026-07-28", "tools/call", "=?base64?d2hvYW1p?=")), betterauth.Allowed},
		{"modern headers without a name", begin(nil, hdr("2026-07-28", "tools/call", "")), betterauth.InvalidMCPRequest},
		{"legacy headers are not trusted", begin(nil, hdr("2025-11-25", "tools/call", "whoami")), betterauth.InvalidMCPRequest},
		{"nothing at all", begin(nil, nil), betterauth.InvalidMCPRequest},
		{"the body Envoy sent", g.Begin(Request{Method: "POST", Bytes: []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_x"}}`)}),
			betterauth.InsufficientPermissions},
	} {
		if got := tc.c.Authorize(*key); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.why, got, tc.want)
		}
		tc.c.End()
	}
	// With no rule, nothing needs seeing.
	open := testGuard(t, Config{Rules: []Rule{}, Sessions: SessionsOff})
	c := open.Begin(Request{Method: http.MethodPost})
	if got := c.Authorize(*key); got != betterauth.Allowed {
		t.Fatal(got)
	}
	c.End()
}

// A session the upstream opens belongs to the principal that opened it:
// another gets 404, as for an unknown session; a DELETE ends it.
func TestCallBindsSessions(t *testing.T) {
	t.Parallel()
	g := testGuard(t, Config{})
	alice, aliceAgain, bob := sessionCaller("user"), oauthCaller(), &betterauth.Decision{Method: betterauth.MethodSession, User: &betterauth.User{ID: "bob"}}
	alice.User.ID, aliceAgain.User.ID = "alice", "alice"

	init := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}`
	c := post(g, init, HeaderProtocolVersion, "2025-11-25")
	if why := c.Authorize(*alice); why != betterauth.Allowed {
		t.Fatal(why)
	}
	req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	rec := httptest.NewRecorder()
	w := c.Wrap(rec, req)
	w.Header().Set(HeaderSessionID, "sess-1")
	w.WriteHeader(200)
	if err := c.Finish(nil); err != nil {
		t.Fatal(err)
	}
	c.End()

	use := func(d *betterauth.Decision, method, session, version string) betterauth.Reason {
		h := map[string][]string{HeaderSessionID: {session}}
		if version != "" {
			h[HeaderProtocolVersion] = []string{version}
		}
		c := g.Begin(Request{Method: method, Header: h})
		defer c.End()
		why := c.Authorize(*d)
		if why == betterauth.Allowed && method == http.MethodDelete {
			rec := httptest.NewRecorder()
			c.Wrap(rec, httptest.NewRequest(method, "/mcp", nil)).WriteHeader(http.StatusNoContent)
		}
		return why
	}
	for _, tc := range []struct {
		who           *betterauth.Decision
		method, id, v string
		want          betterauth.Reason
	}{
		{alice, http.MethodGet, "sess-1", "2025-11-25", betterauth.Allowed},
		{aliceAgain, http.MethodGet, "sess-1", "2025-11-25", betterauth.Allowed}, // the user, by another credential
		{bob, http.MethodGet, "sess-1", "2025-11-25", betterauth.MCPSessionNotFound},
		{bob, http.MethodGet, "sess-1", "", betterauth.MCPSessionNotFound},
		// 2026-07-28 has no sessions, but a stateful server still finds
		// one a request names at that version.
		{bob, http.MethodGet, "sess-1", "2026-07-28", betterauth.MCPSessionNotFound},
		{bob, http.MethodGet, "never-opened", "2025-11-25", betterauth.MCPSessionNotFound},
		{bob, http.MethodDelete, "sess-1", "2025-11-25", betterauth.MCPSessionNotFound},
		{alice, http.MethodDelete, "sess-1", "2025-11-25", betterauth.Allowed},
		{alice, http.MethodGet, "sess-1", "2025-11-25", betterauth.MCPSessionNotFound}, // ended
	} {
		if got := use(tc.who, tc.method, tc.id, tc.v); got != tc.want {
			t.Errorf("%s %s %s %s: %v, want %v", tc.who.User.ID, tc.method, tc.id, tc.v, got, tc.want)
		}
	}
	c = g.Begin(Request{Method: http.MethodGet, Header: map[string][]string{HeaderSessionID: {"s"}}})
	status, _, raw := c.Answer(refusal(betterauth.Decision{Reason: betterauth.MCPSessionNotFound}))
	if status != 404 || !strings.Contains(string(raw), "MCP_SESSION_NOT_FOUND") {
		t.Fatalf("%d %s", status, raw)
	}
	c.End()

	first := testGuard(t, Config{Sessions: SessionsFirstUse})
	for _, tc := range []struct {
		who  *betterauth.Decision
		want betterauth.Reason
	}{{bob, betterauth.Allowed}, {alice, betterauth.MCPSessionNotFound}, {bob, betterauth.Allowed}} {
		c := first.Begin(Request{Method: http.MethodGet, Header: map[string][]string{HeaderSessionID: {"replica-2"}}})
		if got := c.Authorize(*tc.who); got != tc.want {
			t.Fatalf("first use by %s: %v", tc.who.User.ID, got)
		}
		c.End()
	}
}

// A list answer is filtered for the caller, in JSON (its length fixed)
// and in events, however the upstream splits its writes; streaming is
// kept: complete events go out as they come, flushed.
func TestCallFiltersListAnswers(t *testing.T) {
	t.Parallel()
	g := testGuard(t, Config{Sessions: SessionsOff})
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	user := sessionCaller("user")

	c := post(g, list)
	if why := c.Authorize(*user); why != betterauth.Allowed {
		t.Fatal(why)
	}
	req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	rec := httptest.NewRecorder()
	w := c.Wrap(rec, req)
	if req.Header.Get("Accept-Encoding") != "" {
		t.Fatal("the upstream may still compress")
	}
	answer := `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete_item"},{"name":"whoami"}]}}`
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", "999")
	w.WriteHeader(200)
	for i := 0; i < len(answer); i += 7 {
		w.Write([]byte(answer[i:min(i+7, len(answer))]))
		w.(http.Flusher).Flush()
	}
	if rec.Body.Len() != 0 || rec.Flushed {
		t.Fatal("a JSON answer went out before it was whole")
	}
	if err := c.Finish(nil); err != nil {
		t.Fatal(err)
	}
	want := `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"whoami"}]}}`
	if rec.Body.String() != want || rec.Header().Get("Content-Length") != "63" || rec.Code != 200 {
		t.Fatalf("%d %s %q", rec.Code, rec.Header().Get("Content-Length"), rec.Body)
	}
	c.End()

	// Events, split at every byte.
	for size := 1; size <= len(stream); size++ {
		c := post(g, list)
		c.Authorize(*user)
		rec := &flushRecorder{ResponseRecorder: httptest.NewRecorder()}
		w := c.Wrap(rec, httptest.NewRequest(http.MethodPost, "/mcp", nil))
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for i := 0; i < len(stream); i += size {
			if _, err := w.Write([]byte(stream[i:min(i+size, len(stream))])); err != nil {
				t.Fatal(err)
			}
			w.(http.Flusher).Flush()
			// Whatever went out is whole events, as the stream filtered
			// has them.
			if got := rec.Body.String(); !strings.HasPrefix(filtered, got) {
				t.Fatalf("size %d: sent %q", size, got)
			}
		}
		if err := c.Finish(nil); err != nil {
			t.Fatal(err)
		}
		if rec.Body.String() != filtered {
			t.Fatalf("size %d: %q", size, rec.Body)
		}
		if size == 1 && rec.flushes < 5 {
			t.Fatalf("flushed %d times", rec.flushes)
		}
		c.End()
	}
}

type flushRecorder struct {
	*httptest.ResponseRecorder
	flushes int
}

func (f *flushRecorder) Flush() { f.flushes++; f.ResponseRecorder.Flush() }

// A stream that ends without its last empty line is filtered all the
// same; a response the gateway cannot read (compressed, too large) is
// not passed on.
func TestCallListAnswerEdges(t *testing.T) {
	t.Parallel()
	g := testGuard(t, Config{Sessions: SessionsOff})
	user := sessionCaller("user")
	run := func(ct, enc string, body string) *httptest.ResponseRecorder {
		c := post(g, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
		defer c.End()
		c.Authorize(*user)
		rec := httptest.NewRecorder()
		w := c.Wrap(rec, httptest.NewRequest(http.MethodPost, "/mcp", nil))
		w.Header().Set("Content-Type", ct)
		if enc != "" {
			w.Header().Set("Content-Encoding", enc)
		}
		w.Write([]byte(body))
		c.Finish(nil)
		return rec
	}
	rec := run("text/event-stream", "", `data: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete_x"},{"name":"y"}]}}`)
	if rec.Body.String() != "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"y\"}]}}\n" {
		t.Fatalf("%q", rec.Body)
	}
	// A large event in small writes, its data over one line.
	var tools []string
	for i := range 5000 {
		tools = append(tools, fmt.Sprintf(`{"name":"t%d"},{"name":"delete_%d"}`, i, i))
	}
	big := `{"jsonrpc":"2.0","id":1,"result":{"tools":[` + strings.Join(tools, ",") + `]}}`
	c := post(g, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	c.Authorize(*user)
	rec = httptest.NewRecorder()
	w := c.Wrap(rec, httptest.NewRequest(http.MethodPost, "/mcp", nil))
	w.Header().Set("Content-Type", "text/event-stream")
	event := "data: " + big + "\n\n"
	for i := 0; i < len(event); i += 100 {
		w.Write([]byte(event[i:min(i+100, len(event))]))
	}
	c.Finish(nil)
	c.End()
	var got struct {
		Result struct{ Tools []struct{ Name string } } `json:"result"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(rec.Body.String(), "data: "))), &got); err != nil ||
		len(got.Result.Tools) != 5000 || got.Result.Tools[4999].Name != "t4999" {
		t.Fatalf("%v: %d tools", err, len(got.Result.Tools))
	}
	rec = run("application/json", "gzip", "\x1f\x8b...")
	if rec.Code != 502 || !strings.Contains(rec.Body.String(), "UNFILTERABLE_ANSWER") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	rec = run("application/json", "", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete_x"}]}}{}`)
	if rec.Code != 502 || !strings.Contains(rec.Body.String(), "not JSON the gateway can read") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	rec = run("application/json", "", strings.Repeat(" ", MaxFilteredMessage+1))
	if rec.Code != 502 {
		t.Fatalf("%d", rec.Code)
	}
	rec = run("text/plain", "", "delete_x")
	if rec.Code != 200 || rec.Body.String() != "delete_x" {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	// The upstream failed: nothing held is written; the front end answers.
	c = post(g, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	c.Authorize(*user)
	rec = httptest.NewRecorder()
	w = c.Wrap(rec, httptest.NewRequest(http.MethodPost, "/mcp", nil))
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"jsonrpc"`))
	boom := io.ErrUnexpectedEOF
	if err := c.Finish(boom); err != boom || rec.Body.Len() != 0 {
		t.Fatalf("%v %q", err, rec.Body)
	}
	c.End()
}

// Requests that need nothing of the response are not wrapped.
func TestCallWrapsOnlyWhatItMust(t *testing.T) {
	t.Parallel()
	g := testGuard(t, Config{})
	c := post(g, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}}`)
	c.Authorize(*oauthCaller())
	rec := httptest.NewRecorder()
	if w := c.Wrap(rec, httptest.NewRequest(http.MethodPost, "/mcp", nil)); w != http.ResponseWriter(rec) {
		t.Fatal("a tools/call was wrapped")
	}
	c.End()
	// A resumed stream may replay a list answer.
	c = g.Begin(Request{Method: http.MethodGet, Header: map[string][]string{}})
	c.Authorize(*oauthCaller())
	req := httptest.NewRequest(http.MethodGet, "/mcp", nil)
	req.Header.Set("Last-Event-ID", "7")
	if w := c.Wrap(rec, req); w == http.ResponseWriter(rec) {
		t.Fatal("a resumed stream was not wrapped")
	}
	c.End()
}

func TestNewRefusesBadConfigs(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{{MaxBody: -1}, {SessionTTL: -time.Second}, {Rules: []Rule{{Kind: Tool}}}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("accepted %+v", cfg)
		}
	}
}
