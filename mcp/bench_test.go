package mcp

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// A typical tools/call, as the Go SDK sends it at 2026-07-28.
const toolsCall = `{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"search_issues","arguments":{"query":"is:open label:bug","repo":"caddy-betterauth/caddy-betterauth","limit":20},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"example-client","version":"1.4.2"},"io.modelcontextprotocol/clientCapabilities":{}}}}`

func BenchmarkParseToolsCall(b *testing.B) {
	body := []byte(toolsCall)
	var parsed Body
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Parse(body, &parsed); err != nil {
			b.Fatal(err)
		}
	}
}

// nopCloser is a reusable body.
type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }

// The whole peek of a tools/call on an MCP endpoint: begin, read the body
// from its reader, parse it, check the headers against it, judge the tool
// by a rule list and a default, give the body back, end.
func BenchmarkPeekToolsCall(b *testing.B) {
	g := testGuard(b, Config{Rules: []Rule{
		{Kind: Tool, Pattern: "delete_*", Requirement: Requirement{Roles: []string{"admin"}}},
		{Kind: Tool, Pattern: "admin_*", Requirement: Requirement{Deny: true}},
		{Kind: Resource, Pattern: "file:///secret/*", Requirement: Requirement{Roles: []string{"admin"}}},
	}, Default: &Requirement{Permissions: betterauth.Permissions{"tools": {"call"}}, Roles: []string{"user"}}})
	h := map[string][]string{"Content-Type": {"application/json"}, HeaderProtocolVersion: {"2026-07-28"},
		HeaderMethod: {"tools/call"}, HeaderName: {"search_issues"}}
	d := *keyCaller(betterauth.Permissions{"tools": {"call"}})
	body := nopCloser{strings.NewReader(toolsCall)}
	buf := make([]byte, 512)
	b.SetBytes(int64(len(toolsCall)))
	b.ReportAllocs()
	for b.Loop() {
		body.Reset(toolsCall)
		c := g.Begin(Request{Method: http.MethodPost, Header: h, Body: body, ContentLength: int64(len(toolsCall))})
		if why := c.Authorize(d); why != betterauth.Allowed {
			b.Fatal(why)
		}
		if n, _ := io.ReadFull(c.Body(), buf[:len(toolsCall)]); n != len(toolsCall) {
			b.Fatal(n)
		}
		c.End()
	}
}

// listAnswer is a tools/list result of n tools, every fourth refused.
func listAnswer(n int) string {
	var tools []string
	for i := range n {
		name := fmt.Sprintf("tool_%d", i)
		if i%4 == 0 {
			name = fmt.Sprintf("delete_%d", i)
		}
		tools = append(tools, fmt.Sprintf(`{"name":%q,"description":"Does thing number %d, at length, as descriptions go.","inputSchema":{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}}`, name, i))
	}
	return `{"jsonrpc":"2.0","id":1,"result":{"tools":[` + strings.Join(tools, ",") + `],"ttlMs":60000,"cacheScope":"public"}}`
}

func BenchmarkListFilterJSON(b *testing.B) {
	l := testLister(b)
	in := []byte(listAnswer(40))
	var out []byte
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		var changed bool
		if out, changed, _ = l.filter(out[:0], in); !changed {
			b.Fatal("unchanged")
		}
	}
}

// The list filter on an event stream through the response writer: the
// answer split in 4 KiB writes, flushed after each.
func BenchmarkListFilterSSE(b *testing.B) {
	g := testGuard(b, Config{Sessions: SessionsOff, Rules: []Rule{{Kind: Tool, Pattern: "delete_*", Requirement: Requirement{Roles: []string{"admin"}}}}})
	stream := []byte("event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n" +
		"event: message\ndata: " + listAnswer(40) + "\n\n")
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	d := *sessionCaller("user")
	req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	rec := &discard{h: http.Header{}}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		c := g.Begin(Request{Method: http.MethodPost, Header: map[string][]string{}, Bytes: []byte(list)})
		c.Authorize(d)
		w := c.Wrap(rec, req)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for i := 0; i < len(stream); i += 4096 {
			w.Write(stream[i:min(i+4096, len(stream))])
			w.(http.Flusher).Flush()
		}
		c.Finish(nil)
		c.End()
	}
}

// discard is a ResponseWriter that keeps nothing.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Flush()                      {}
