package demo

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// IdentityHeaders are the headers the whoami tool reports.
var IdentityHeaders = []string{
	"X-Auth-User-Id", "X-Auth-User-Email", "X-Auth-User-Name", "X-Auth-User-Role",
	"X-Auth-Method", "X-Auth-Key-Id", "X-Auth-Session-Id",
}

// Whoami is the whoami tool's structured result: the identity the gateway
// passed on.
type Whoami struct {
	UserID    string `json:"userId"`
	Email     string `json:"email,omitempty"`
	Name      string `json:"name,omitempty"`
	Role      string `json:"role,omitempty"`
	Method    string `json:"method"`
	KeyID     string `json:"keyId,omitempty"`
	SessionID string `json:"sessionId,omitempty"`
}

type countdownIn struct {
	From int `json:"from" jsonschema:"the number to count down from, at most 10"`
}

type countdownOut struct {
	Done bool `json:"done"`
}

// NewMCPServer returns an MCP server with two tools: whoami, which returns
// the identity headers the gateway injected, and countdown, which sends a
// progress notification per step before it answers, to show that
// server-sent events stream through the gateway.
func NewMCPServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "better-auth-demo", Version: "1.0.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "whoami", Description: "Returns the user the gateway authenticated."},
		func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, Whoami, error) {
			h := req.Extra.Header
			if h == nil || h.Get("X-Auth-User-Id") == "" {
				return nil, Whoami{}, fmt.Errorf("no identity: this server must sit behind the better_auth gateway")
			}
			w := Whoami{
				UserID: h.Get("X-Auth-User-Id"), Email: h.Get("X-Auth-User-Email"), Name: h.Get("X-Auth-User-Name"),
				Role: h.Get("X-Auth-User-Role"), Method: h.Get("X-Auth-Method"), KeyID: h.Get("X-Auth-Key-Id"),
				SessionID: h.Get("X-Auth-Session-Id"),
			}
			text := fmt.Sprintf("You are %s (%s), authenticated by %s.", w.UserID, w.Email, strings.ReplaceAll(w.Method, "_", " "))
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, w, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "countdown", Description: "Counts down, reporting progress at each step."},
		func(ctx context.Context, req *mcp.CallToolRequest, in countdownIn) (*mcp.CallToolResult, countdownOut, error) {
			from := min(max(in.From, 1), 10)
			token := req.Params.GetProgressToken()
			for i := from; i > 0 && token != nil; i-- {
				err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
					ProgressToken: token, Progress: float64(from - i + 1), Total: float64(from), Message: fmt.Sprint(i),
				})
				if err != nil {
					return nil, countdownOut{}, err
				}
			}
			return nil, countdownOut{Done: true}, nil
		})
	return s
}

// MCPHandler serves NewMCPServer over Streamable HTTP.
func MCPHandler() http.Handler {
	s := NewMCPServer()
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
}
