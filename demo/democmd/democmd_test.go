package democmd

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-betterauth/caddy-betterauth/cli"
)

// Importing the package adds demo to `caddy better-auth`, with its flags.
func TestRegistered(t *testing.T) {
	t.Parallel()
	root := &cobra.Command{Use: "better-auth"}
	caddycmd.Commands()["better-auth"].CobraFunc(root)
	sub, _, err := root.Find([]string{"demo"})
	if err != nil || sub.Name() != "demo" {
		t.Fatalf("no demo command: %v", err)
	}
	if !strings.HasPrefix(root.Use, "better-auth demo|check|") {
		t.Errorf("usage %q", root.Use)
	}
	if f := sub.Flags().Lookup("listen"); f == nil || f.DefValue != "127.0.0.1:8080" {
		t.Errorf("--listen: %+v", f)
	}
	if f := sub.Flags().Lookup("db"); f == nil || filepath.Base(f.DefValue) != "better-auth-demo.db" {
		t.Errorf("--db: %+v", f)
	}
}

// A demo that cannot start says why and exits 1.
func TestDemoFails(t *testing.T) {
	t.Parallel()
	cmd := demoCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs([]string{"--listen", " ", "--db", filepath.Join(t.TempDir(), "demo.db")})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	var st *cli.ExitStatus
	if !errors.As(err, &st) || st.Code != 1 || errOut.String() != "demo: --listen is empty\n" || out.Len() != 0 {
		t.Fatalf("err %v, %q, %q", err, errOut.String(), out.String())
	}
}
