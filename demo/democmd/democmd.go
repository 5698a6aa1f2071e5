// Package democmd adds `caddy better-auth demo`: a gateway in front of a
// small MCP server, with a local Better-Auth database and a key to try.
//
// It is a package of its own, imported by cmd/caddy only, because the MCP
// server links the MCP Go SDK: a Caddy built with just the module's root
// package (xcaddy --with github.com/caddy-betterauth/caddy-betterauth) has
// the other better-auth commands and not this one.
package democmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/caddyauth"
	"github.com/caddy-betterauth/caddy-betterauth/cli"
	"github.com/caddy-betterauth/caddy-betterauth/demo"
)

func init() {
	caddyauth.AddCommand(demoCommand)
}

func demoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the gateway in front of a small MCP server, with a local Better-Auth database",
		Long: `Creates (or reuses) a SQLite database in Better-Auth's own schema with a demo
user, adds a new API key and session, starts a small MCP server (Streamable
HTTP, tools whoami and countdown) on loopback, and the better_auth gateway in
front of it. Prints the key and commands to try. Ctrl-C stops everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			listen, _ := cmd.Flags().GetString("listen")
			dbPath, _ := cmd.Flags().GetString("db")
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := runDemo(ctx, listen, dbPath, cmd.OutOrStdout()); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "demo:", err)
				return cli.Exit(1)
			}
			return nil
		},
	}
	cmd.Flags().String("listen", "127.0.0.1:8080", "address of the gateway")
	cmd.Flags().String("db", filepath.Join(caddy.AppDataDir(), "better-auth-demo.db"), "the demo's SQLite database")
	return cmd
}

// runDemo runs until ctx ends, then stops the gateway and the MCP server.
func runDemo(ctx context.Context, listen, dbPath string, out io.Writer) error {
	dbPath, err := filepath.Abs(dbPath)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o700); err != nil {
		return err
	}
	creds, err := demo.Create(ctx, dbPath, time.Now())
	if err != nil {
		return err
	}
	secret := demo.GenerateSecret()
	signed := betterauth.NewSigner(secret).Sign(creds.SessionToken)

	mcpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mcpSrv := &http.Server{Handler: demo.MCPHandler(), ReadHeaderTimeout: 10 * time.Second}
	go mcpSrv.Serve(mcpLn)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		mcpSrv.Shutdown(sctx)
	}()

	cfg, err := demoConfig(listen, "sqlite://"+dbPath, secret, mcpLn.Addr().String())
	if err != nil {
		return err
	}
	if err := caddy.Load(cfg, true); err != nil {
		return fmt.Errorf("starting the gateway on %s: %w", listen, err)
	}
	defer caddy.Stop()

	base := "http://" + listen
	state := "reused"
	if creds.Created {
		state = "created"
	}
	fmt.Fprintf(out, `
caddy-betterauth demo
  gateway:     %[1]s  ->  MCP server at %[1]s/mcp (Streamable HTTP)
  database:    %[2]s (%[3]s; Better-Auth's own schema)
  user:        %[4]s <%[5]s>

  API key:        %[6]s
  session token:  %[7]s

Try it:
  curl -i %[1]s/mcp                                              # 401, no credential
  curl -s %[1]s/mcp -H 'x-api-key: %[6]s' \
       -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
       -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'

Add it to an MCP client (Streamable HTTP, with a header):
  {"mcpServers": {"better-auth-demo": {"url": "%[1]s/mcp", "headers": {"x-api-key": "%[6]s"}}}}
  claude mcp add --transport http better-auth-demo %[1]s/mcp --header "x-api-key: %[6]s"

Then call the whoami tool: it answers with the identity the gateway injected.
Ctrl-C stops the gateway and the MCP server.
`, base, dbPath, state, creds.UserID, demo.UserEmail, creds.APIKey, signed)
	<-ctx.Done()
	fmt.Fprintln(out, "stopping")
	return nil
}

// demoConfig is the gateway's Caddy config: better_auth, then reverse_proxy
// to the MCP server, with flushing for streams.
func demoConfig(listen, database, secret, upstream string) ([]byte, error) {
	if strings.TrimSpace(listen) == "" {
		return nil, errors.New("--listen is empty")
	}
	route := map[string]any{"handle": []any{
		map[string]any{"handler": "better_auth", "database": database, "secret": secret, "api_key_prefixes": []string{demo.KeyPrefix}},
		map[string]any{"handler": "reverse_proxy", "flush_interval": -1, "upstreams": []any{map[string]any{"dial": upstream}}},
	}}
	return json.Marshal(map[string]any{
		"admin": map[string]any{"disabled": true},
		"apps": map[string]any{"http": map[string]any{
			// Open MCP streams would otherwise hold Ctrl-C up forever.
			"grace_period": int64(2 * time.Second),
			"servers": map[string]any{"demo": map[string]any{
				"listen":          []string{listen},
				"routes":          []any{route},
				"automatic_https": map[string]any{"disable": true},
			}}}},
	})
}
