package extauthz

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/mcp"
)

// mcpServer judges tools with one rule: delete_* needs a permission the
// one key lacks.
func mcpServer(t *testing.T) *Server {
	t.Helper()
	v, err := betterauth.NewVerifier(betterauth.Options{Store: oneKey{}})
	if err != nil {
		t.Fatal(err)
	}
	gate := betterauth.NewGate(betterauth.GateConfig{Verifier: v})
	guard, err := mcp.New(mcp.Config{Sessions: mcp.SessionsOff, StepUp: gate.StepUp, Rules: []mcp.Rule{
		{Kind: mcp.Tool, Pattern: "delete_*", Requirement: mcp.Requirement{Permissions: betterauth.Permissions{"tools": {"delete"}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return New(gate, WithMCP(guard))
}

// metadata is what Envoy's MCP filter publishes for a tools/call.
func metadata(t *testing.T, fields map[string]any) *corev3.Metadata {
	t.Helper()
	st, err := structpb.NewStruct(fields)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{MCPNamespace: st}}
}

func check(t *testing.T, s *Server, headers map[string]string, md *corev3.Metadata, body string) *authv3.CheckResponse {
	t.Helper()
	h := map[string]string{"x-api-key": "ba_anything", ":method": "POST"}
	for k, v := range headers {
		h[k] = v
	}
	resp, err := s.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request:         &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Headers: h, Body: body}},
		MetadataContext: md,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// The MCP filter's metadata decides when present; else the body Envoy
// sent; else the headers of a version that requires them; else a POST
// cannot be judged and is refused.
func TestCheckJudgesMCPRequests(t *testing.T) {
	t.Parallel()
	s := mcpServer(t)
	call := func(name string, id any) map[string]any {
		return map[string]any{"jsonrpc": "2.0", "method": "tools/call", "id": id, "params": map[string]any{"name": name}, "is_mcp_request": true}
	}
	for _, tc := range []struct {
		why     string
		headers map[string]string
		md      *corev3.Metadata
		body    string
		status  int
		id      string
	}{
		{"metadata, an open tool", nil, metadata(t, call("whoami", 1)), "", 200, ""},
		{"metadata, a guarded tool", nil, metadata(t, call("delete_all", 7)), "", 403, "7"},
		{"metadata, a string id", nil, metadata(t, call("delete_all", "a\"b")), "", 403, `"a\"b"`},
		{"metadata of a body too large for the filter", nil, metadata(t, map[string]any{"method": "tools/call", "is_exceeding_limit": true}), "", 413, "null"},
		{"metadata of something not JSON-RPC", nil, metadata(t, map[string]any{"is_mcp_request": false}), "", 400, "null"},
		{"metadata against the headers", map[string]string{"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "whoami"},
			metadata(t, call("delete_all", 1)), "", 400, "1"},
		{"the body", nil, nil, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete_x"}}`, 403, "3"},
		{"a partial body is no body", map[string]string{"x-envoy-auth-partial-body": "true"}, nil, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete_x"}}`, 400, "null"},
		{"modern headers", map[string]string{"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "delete_x"}, nil, "", 403, "null"},
		{"modern headers, encoded", map[string]string{"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "=?base64?d2hvYW1p?="}, nil, "", 200, ""},
		{"legacy headers cannot be trusted", map[string]string{"mcp-protocol-version": "2025-11-25", "mcp-method": "tools/call", "mcp-name": "whoami"}, nil, "", 400, "null"},
	} {
		resp := check(t, s, tc.headers, tc.md, tc.body)
		if tc.status == 200 {
			if resp.GetOkResponse() == nil {
				t.Errorf("%s: %v", tc.why, resp)
			}
			continue
		}
		denied := resp.GetDeniedResponse()
		var e struct {
			ID    json.RawMessage    `json:"id"`
			Error struct{ Code int } `json:"error"`
		}
		if denied == nil || int(denied.GetStatus().GetCode()) != tc.status || json.Unmarshal([]byte(denied.GetBody()), &e) != nil || string(e.ID) != tc.id {
			t.Errorf("%s: %v", tc.why, resp)
		}
	}
	if resp := check(t, s, nil, metadata(t, call("delete_all", 1)), ""); codes.Code(resp.GetStatus().GetCode()) != codes.PermissionDenied {
		t.Fatalf("gRPC status %v", resp.GetStatus())
	}
	if resp := check(t, s, nil, nil, ""); codes.Code(resp.GetStatus().GetCode()) != codes.InvalidArgument {
		t.Fatalf("gRPC status %v", resp.GetStatus())
	}
	// A GET carries no call.
	resp, _ := s.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Headers: map[string]string{"x-api-key": "ba_anything"}}}}})
	if resp.GetOkResponse() == nil {
		t.Fatalf("GET: %v", resp)
	}
}

// The HTTP mode reads the body the caller passes, and takes a request
// either of whose methods is POST for one.
func TestHTTPModeJudgesMCPRequests(t *testing.T) {
	t.Parallel()
	s := mcpServer(t)
	for _, tc := range []struct {
		why, method, forwarded, body string
		status                       int
	}{
		{"the body Envoy passes", "POST", "", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_x"}}`, 403},
		{"an open tool", "POST", "", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}}`, 200},
		{"a GET for a POST, nothing to judge by", "GET", "POST", "", 400},
		{"a GET", "GET", "", "", 200},
		{"a POST said to be a GET", "POST", "GET", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_x"}}`, 403},
	} {
		r := httptest.NewRequest(tc.method, "/mcp", strings.NewReader(tc.body))
		r.Header.Set("X-Api-Key", "ba_anything")
		if tc.forwarded != "" {
			r.Header.Set("X-Forwarded-Method", tc.forwarded)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != tc.status {
			t.Errorf("%s: %d %s", tc.why, w.Code, w.Body)
		}
		if tc.status != 200 && r.Method == http.MethodPost && !strings.Contains(w.Body.String(), `"jsonrpc":"2.0"`) {
			t.Errorf("%s: not JSON-RPC: %s", tc.why, w.Body)
		}
	}
}
