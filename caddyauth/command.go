package caddyauth

import (
	"errors"
	"os"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-betterauth/caddy-betterauth/audit"
	"github.com/caddy-betterauth/caddy-betterauth/cli"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "better-auth",
		Usage: "check|doctor|hash-key|install-triggers|install-audit [flags]",
		Short: "Try the better_auth gateway, and check a Better-Auth database or credential",
		Long: `
Tools for the better_auth gateway:

  check      verify a credential (read from stdin) against a database, as the
             gateway would
  doctor     inspect a database and say whether the gateway can use it
  hash-key   print the hash Better-Auth stores for an API key read from stdin
  install-triggers, uninstall-triggers
             add (or remove) the PostgreSQL triggers that tell gateways at
             once when a key, session or user changes
  install-audit
             create the table the audit block's database writes to

Credentials are read from stdin or a file, never from the command line, so
they stay out of shell history and process lists. The database URL is taken
from --database or, better, from the DATABASE_URL environment variable.
`,
		CobraFunc: func(cmd *cobra.Command) { addCommands(cmd, os.Exit) },
	})
}

// added holds the commands of AddCommand.
var added []func() *cobra.Command

// AddCommand adds a subcommand to `caddy better-auth`; cmd/caddy adds
// `demo` so. Call it from an init function: newCommand is called when Caddy
// builds its command line. A command that returns a *cli.ExitStatus ends the
// process with that status; any other error is Caddy's to report (status 1).
func AddCommand(newCommand func() *cobra.Command) {
	added = append(added, newCommand)
}

// addCommands adds the subcommands to cmd, those of AddCommand first (as
// the usage line lists them). They return a *cli.ExitStatus for a status
// other than 0, which caddycmd would turn into 1 (and check and doctor tell
// 1 from 2), so each is wrapped to call exit with it, once its own deferred
// cleanup has run.
func addCommands(cmd *cobra.Command, exit func(code int)) {
	var names []string
	for _, newCommand := range added {
		sub := newCommand()
		cmd.AddCommand(sub)
		names = append(names, sub.Name())
	}
	cmd.Use = cmd.Name() + " " + strings.Join(append(names, "check", "doctor", "hash-key"), "|") + " [flags]"
	cmd.AddCommand(checkCommand(), doctorCommand(), hashKeyCommand(), triggersCommand(true), triggersCommand(false), auditCommand())
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
			orgIDs, _ := cmd.Flags().GetStringSlice("org-config-id")
			return cli.Exit(cli.CheckDatabase(cmd.Context(), database(cmd), cli.CheckOptions{
				Secret: os.Getenv(secretEnv), As: as, APIKeyPrefixes: prefixes, ConfigIDs: configIDs, OrgConfigIDs: orgIDs,
			}, file, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	databaseFlags(cmd)
	cmd.Flags().String("credential-file", "", "read the credential from this file instead of stdin")
	cmd.Flags().String("as", "bearer", "how the credential is sent: api-key (x-api-key), bearer (Authorization) or cookie")
	cmd.Flags().String("secret-env", "BETTER_AUTH_SECRET", "environment variable holding Better-Auth's secret")
	cmd.Flags().StringSlice("api-key-prefix", nil, "API-key prefixes, as in the better_auth block")
	cmd.Flags().StringSlice("config-id", nil, "accepted api-key configurations (default: default)")
	cmd.Flags().StringSlice("org-config-id", nil, "api-key configurations whose references is organization")
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
			orgIDs, _ := cmd.Flags().GetStringSlice("org-config-id")
			resource, _ := cmd.Flags().GetString("oauth-resource")
			return cli.Exit(cli.DoctorDatabase(cmd.Context(), database(cmd), cli.DoctorOptions{OrgConfigIDs: orgIDs, OAuthResource: resource},
				cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	databaseFlags(cmd)
	cmd.Flags().StringSlice("org-config-id", nil, "api-key configurations whose references is organization: their keys need the organization table")
	cmd.Flags().String("oauth-resource", "", "the oauth block's resource: check the OAuth provider has it registered")
	return cmd
}

func auditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "install-audit",
		Short: "Create the table audit events are written to (idempotent)",
		Long: `Create the table audit events are written to (idempotent).

The table (default ` + audit.DefaultPostgresTable + ` on PostgreSQL, in a schema
of the gateway's own, and ` + audit.DefaultSQLiteTable + ` on SQLite)
has one row per decision: when, the front end, the credential's kind, the
decision and its code and status, the user, organization, API key, session or
OAuth token and client ids, the credential's fingerprint (never the
credential), the client address, host and path, and the MCP method and tool.
It is indexed for the events of a user, of a key, and of a period. --table
names another table; give the audit block's database the same name. When the
gateway connects as another role than the one running this, --grant <role>
gives that role what writing events takes (USAGE on the schema, INSERT on
the table) and nothing more. --print writes the SQL instead of running it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			printSQL, _ := cmd.Flags().GetBool("print")
			table, _ := cmd.Flags().GetString("table")
			grant, _ := cmd.Flags().GetString("grant")
			return cli.Exit(cli.InstallAudit(cmd.Context(), cli.AuditOptions{Database: database(cmd), Table: table, Grant: grant, Print: printSQL},
				cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	databaseFlags(cmd)
	cmd.Flags().String("table", "", "the audit table, [schema.]table")
	cmd.Flags().String("grant", "", "the gateway's role, given USAGE on the schema and INSERT on the table (PostgreSQL)")
	cmd.Flags().Bool("print", false, "print the SQL instead of running it")
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
and user tables (not updates of a key's usage columns alone), and of the
organization plugin's organization (name, slug) and member (role, and
inserts) tables when present, and NOTIFY the gateways' listeners on the channel
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
