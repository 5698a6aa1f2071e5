package caddyauth

import (
	"bytes"
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/caddy-betterauth/caddy-betterauth/cli"
	"github.com/caddy-betterauth/caddy-betterauth/demo"
)

// runCommand runs `caddy better-auth <args>` in-process, wired as Caddy
// wires it but with exit recorded instead of ending the process.
func runCommand(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	root := &cobra.Command{Use: "better-auth", SilenceUsage: true, SilenceErrors: true}
	exits := 0
	addCommands(root, func(c int) { code = c; exits++ })
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	if exits > 1 || (exits == 1 && code == 0) {
		t.Fatalf("%v: exit called %d times, last with %d", args, exits, code)
	}
	return out.String(), errOut.String(), code
}

// demoDatabase is a SQLite database in Better-Auth's schema with a user,
// a session and an API key.
func demoDatabase(t *testing.T) (url string, creds *demo.Credentials) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth.db")
	creds, err := demo.Create(context.Background(), path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return "sqlite://" + path, creds
}

func TestHashKeyCommand(t *testing.T) {
	t.Parallel()
	out, _, code := runCommand(t, "ba_testkey\n", "hash-key")
	if code != 0 || out != "I0efQ4nFhajqlLlgwiFSGyfgRDesQvDe-JU-SF3CQLI\n" {
		t.Fatalf("exit %d, %q", code, out)
	}
	if _, errOut, code := runCommand(t, "", "hash-key"); code != 2 || errOut != "hash-key: no credential on input\n" {
		t.Fatalf("empty input: exit %d, %q", code, errOut)
	}
}

func TestCheckCommand(t *testing.T) {
	t.Parallel()
	db, creds := demoDatabase(t)
	out, _, code := runCommand(t, creds.APIKey+"\n", "check", "--database", db, "--as", "api-key")
	if code != 0 || !strings.Contains(out, "decision:  allow") || !strings.Contains(out, "X-Auth-User-Id: "+creds.UserID) ||
		!strings.Contains(out, "X-Auth-Key-Id: "+creds.KeyID) {
		t.Errorf("valid key: exit %d\n%s", code, out)
	}
	out, _, code = runCommand(t, demo.KeyPrefix+strings.Repeat("x", 64), "check", "--database", db, "--as", "api-key")
	if code != 1 || !strings.Contains(out, "decision:  deny\ncode:      INVALID_API_KEY\nstatus:    401\n") {
		t.Errorf("unknown key: exit %d\n%s", code, out)
	}
	out, errOut, code := runCommand(t, creds.APIKey, "check", "--database", db, "--as", "x-api-key")
	if code != 2 || out != "" || errOut != "check: --as must be api-key, bearer or cookie, not \"x-api-key\"\n" {
		t.Errorf("bad --as: exit %d, %q, %q", code, out, errOut)
	}
}

// Without --database, DATABASE_URL is read; without either, nothing is.
func TestCommandsNeedADatabase(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	for _, cmd := range []string{"check", "doctor", "install-triggers", "uninstall-triggers"} {
		_, errOut, code := runCommand(t, "x", cmd)
		if code != 2 || !strings.HasSuffix(errOut, "no database: pass --database or set DATABASE_URL\n") {
			t.Errorf("%s: exit %d, %q", cmd, code, errOut)
		}
	}
	db, _ := demoDatabase(t)
	t.Setenv("DATABASE_URL", db)
	if out, _, code := runCommand(t, "", "doctor"); code != 0 || !strings.Contains(out, "database: sqlite, reachable") {
		t.Errorf("doctor on $DATABASE_URL: exit %d\n%s", code, out)
	}
}

func TestDoctorCommand(t *testing.T) {
	t.Parallel()
	db, _ := demoDatabase(t)
	out, _, code := runCommand(t, "", "doctor", "--database", db)
	if code != 0 || !strings.Contains(out, `layout: naming camel, user table "user"`) || !strings.Contains(out, "ok: the gateway can use this database\n") {
		t.Errorf("usable: exit %d\n%s", code, out)
	}

	path := filepath.Join(t.TempDir(), "broken.db")
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, stmt := range []string{
		`CREATE TABLE "user" (id text PRIMARY KEY, name text, email text)`,
		`CREATE TABLE "session" (id text PRIMARY KEY, "expiresAt" text, "userId" text)`,
	} {
		if _, err := raw.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	out, _, code = runCommand(t, "", "doctor", "--database", "sqlite://"+path)
	if code != 1 || !strings.Contains(out, "problem: unusable Better-Auth schema: table \"session\" has no column \"token\" (Better-Auth's session.token)\n") ||
		!strings.Contains(out, "fix: if the app renamed session.token, map it with `schema { column session.token <column> }`") {
		t.Errorf("unusable: exit %d\n%s", code, out)
	}
}

func TestTriggersCommandRefusesSQLite(t *testing.T) {
	t.Parallel()
	db, _ := demoDatabase(t)
	for _, args := range [][]string{
		{"install-triggers", "--print"}, {"install-triggers"}, {"uninstall-triggers", "--print"}, {"uninstall-triggers"},
	} {
		out, errOut, code := runCommand(t, "", append(args, "--database", db)...)
		if code != 2 || out != "" || errOut != "triggers are for PostgreSQL; SQLite databases are read within the cache TTL\n" {
			t.Errorf("%v: exit %d, %q, %q", args, code, out, errOut)
		}
	}
}

// Usage errors are cobra's: returned to Caddy, which exits 1.
func TestCommandUsageErrors(t *testing.T) {
	t.Parallel()
	root := &cobra.Command{Use: "better-auth", SilenceUsage: true, SilenceErrors: true}
	addCommands(root, func(c int) { t.Errorf("exit(%d) on a usage error", c) })
	root.SetArgs([]string{"check", "--no-such-flag"})
	root.SetOut(&bytes.Buffer{})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "unknown flag: --no-such-flag") {
		t.Fatalf("err = %v", err)
	}
}

// AddCommand's commands come first in the usage line, and their exit
// statuses reach exit as the built-in commands' do.
func TestAddCommand(t *testing.T) {
	defer func(saved []func() *cobra.Command) { added = saved }(added)
	root := &cobra.Command{Use: "better-auth"}
	addCommands(root, func(int) {})
	if root.Use != "better-auth check|doctor|hash-key [flags]" {
		t.Errorf("usage %q", root.Use)
	}

	AddCommand(func() *cobra.Command {
		return &cobra.Command{Use: "fail", RunE: func(*cobra.Command, []string) error { return cli.Exit(3) }}
	})
	root = &cobra.Command{Use: "better-auth", SilenceUsage: true, SilenceErrors: true}
	code := 0
	addCommands(root, func(c int) { code = c })
	if root.Use != "better-auth fail|check|doctor|hash-key [flags]" {
		t.Errorf("usage %q", root.Use)
	}
	root.SetArgs([]string{"fail"})
	if err := root.Execute(); err != nil || code != 3 {
		t.Fatalf("err %v, exit %d", err, code)
	}
}
