package caddyauth

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
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/cli"
	"github.com/caddy-betterauth/caddy-betterauth/demo"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "better-auth",
		Usage: "demo|check|doctor|hash-key [flags]",
		Short: "Try the better_auth gateway, and check a Better-Auth database or credential",
		Long: `
Tools for the better_auth gateway:

  demo       run a gateway in front of a small MCP server, with a local
             Better-Auth database and a key to try
  check      verify a credential (read from stdin) against a database, as the
             gateway would
  doctor     inspect a database and say whether the gateway can use it
  hash-key   print the hash Better-Auth stores for an API key read from stdin
  install-triggers, uninstall-triggers
             add (or remove) the PostgreSQL triggers that tell gateways at
             once when a key, session or user changes

Credentials are read from stdin or a file, never from the command line, so
they stay out of shell history and process lists. The database URL is taken
from --database or, better, from the DATABASE_URL environment variable.
`,
		CobraFunc: func(cmd *cobra.Command) { addCommands(cmd, os.Exit) },
	})
}

// addCommands adds the subcommands to cmd. They return a *cli.ExitStatus
// for a status other than 0, which caddycmd would turn into 1 (and check
// and doctor tell 1 from 2), so each is wrapped to call exit with it, once
// its own deferred cleanup has run.
func addCommands(cmd *cobra.Command, exit func(code int)) {
	cmd.AddCommand(demoCommand(), checkCommand(), doctorCommand(), hashKeyCommand(),
		triggersCommand(true), triggersCommand(false))
	for _, sub := range cmd.Commands() {
		if run := sub.RunE; run != nil {
			sub.RunE = func(cmd *cobra.Command, args []string) error {
				err := run(cmd, args)
				if st, ok := errors.AsType[*cli.ExitStatus](err); ok {
					exit(st.Code)
					return nil
				}
				return err
			}
		}
	}
}

func hashKeyCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "hash-key",
		Short: "Print the value Better-Auth stores in apikey.key for a key read from stdin",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cli.Exit(cli.HashKey(cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
}

// databaseFlags adds the flags that name a database.
func databaseFlags(cmd *cobra.Command) {
	cmd.Flags().String("database", "", "PostgreSQL URL or sqlite:///path (default: $DATABASE_URL)")
	cmd.Flags().String("pg-schema", "", "PostgreSQL schema holding the tables (default: the search_path)")
	cmd.Flags().Duration("timeout", 5*time.Second, "how long to wait for the database")
}

func database(cmd *cobra.Command) cli.Database {
	url, _ := cmd.Flags().GetString("database")
	pgSchema, _ := cmd.Flags().GetString("pg-schema")
	timeout, _ := cmd.Flags().GetDuration("timeout")
	return cli.Database{URL: url, PGSchema: pgSchema, Timeout: timeout}
}

func checkCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Verify a credential read from stdin (or --credential-file) as the gateway would",
		Long: `Reads one credential from stdin, or from --credential-file, and prints the
gateway's decision, its code and the identity headers it would send.
Exit status: 0 allowed, 1 denied, 2 error (no database, bad input).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			file, _ := cmd.Flags().GetString("credential-file")
			secretEnv, _ := cmd.Flags().GetString("secret-env")
			as, _ := cmd.Flags().GetString("as")
			prefixes, _ := cmd.Flags().GetStringSlice("api-key-prefix")
			configIDs, _ := cmd.Flags().GetStringSlice("config-id")
			return cli.Exit(cli.CheckDatabase(cmd.Context(), database(cmd), cli.CheckOptions{
				Secret: os.Getenv(secretEnv), As: as, APIKeyPrefixes: prefixes, ConfigIDs: configIDs,
			}, file, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	databaseFlags(cmd)
	cmd.Flags().String("credential-file", "", "read the credential from this file instead of stdin")
	cmd.Flags().String("as", "bearer", "how the credential is sent: api-key (x-api-key), bearer (Authorization) or cookie")
	cmd.Flags().String("secret-env", "BETTER_AUTH_SECRET", "environment variable holding Better-Auth's secret")
	cmd.Flags().StringSlice("api-key-prefix", nil, "API-key prefixes, as in the better_auth block")
	cmd.Flags().StringSlice("config-id", nil, "accepted api-key configurations (default: default)")
	return cmd
}

func doctorCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Inspect a Better-Auth database and say whether the gateway can use it",
		Long: `Connects to the database, lists the Better-Auth tables and columns it finds,
the layout the gateway will use and what is missing, with the fix.
Exit status: 0 usable, 1 not usable, 2 unreachable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cli.Exit(cli.DoctorDatabase(cmd.Context(), database(cmd), cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	databaseFlags(cmd)
	return cmd
}

func triggersCommand(install bool) *cobra.Command {
	name, short := "install-triggers", "Add the PostgreSQL triggers that push revocations to gateways (idempotent)"
	if !install {
		name, short = "uninstall-triggers", "Remove the revocation triggers"
	}
	cmd := &cobra.Command{
		Use:   name,
		Short: short,
		Long: short + `.

The triggers run after an update or delete of a row of the api-key, session
and user tables, and NOTIFY the gateways' listeners on the channel
"` + pgstore.Channel + `" with the row's kind, id and user id: never a key, a
key hash or a token. The table and column names come from the detected
layout. --print writes the SQL instead of running it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			printSQL, _ := cmd.Flags().GetBool("print")
			return cli.Exit(cli.Triggers(cmd.Context(), cli.TriggerOptions{Database: database(cmd), Uninstall: !install, Print: printSQL},
				cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	databaseFlags(cmd)
	cmd.Flags().Bool("print", false, "print the SQL instead of running it")
	return cmd
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
