package caddyauth

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/gateway"
)

const benchToolsCall = `{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"search_issues","arguments":{"query":"is:open label:bug","limit":20},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`

// readNext is the next handler of a proxy: it reads the body.
type readNext struct{}

func (readNext) ServeHTTP(_ http.ResponseWriter, r *http.Request) error {
	_, err := io.Copy(io.Discard, r.Body)
	return err
}

// benchPosts runs serve on a tools/call POST as Caddy hands it over.
func benchPosts(b *testing.B, serve func(w http.ResponseWriter, r *http.Request)) {
	base := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	w := httptest.NewRecorder()
	body := strings.NewReader(benchToolsCall)
	b.ReportAllocs()
	for b.Loop() {
		repl := caddy.NewReplacer()
		r := base.WithContext(context.WithValue(context.Background(), caddy.ReplacerCtxKey, repl))
		r.Header = http.Header{"X-Api-Key": {testKey}, "Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"},
			"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/call"}, "Mcp-Name": {"search_issues"}}
		body.Reset(benchToolsCall)
		r.Body, r.ContentLength = io.NopCloser(body), int64(len(benchToolsCall))
		serve(w, r)
	}
}

// The handler on a tools/call POST without an mcp block (the baseline),
// and with one: the body peeked, parsed, checked against the headers,
// the tool judged by a rule list and a default, the body given back.
func BenchmarkServeHTTPToolsCall(b *testing.B) {
	for _, tc := range []struct {
		name  string
		block *gateway.MCP
	}{{"no mcp block", nil}, {"mcp block", testMCP}} {
		b.Run(tc.name, func(b *testing.B) {
			store := newFakeStore()
			store.key.Permissions = map[string][]string{"tools": {"call"}}
			h := newHandler(b, &Handler{Options: gateway.Options{MCP: tc.block}}, cache.New(store, cache.Options{}))
			var err error
			if h.guard, err = h.Options.Guard(h.gate, true); err != nil {
				b.Fatal(err)
			}
			benchPosts(b, func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r, readNext{}) })
		})
	}
}
