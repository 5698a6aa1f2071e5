package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// runCLI runs `caddy better-auth <args>` with stdin and the environment
// given, and returns its output and exit code.
func runCLI(t *testing.T, stdin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(testenv.CaddyBinary(t), append([]string{"better-auth"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func TestHashKeyCommand(t *testing.T) {
	t.Parallel()
	out, _, code := runCLI(t, "ba_testkey\n", nil, "hash-key")
	if code != 0 || strings.TrimSpace(out) != "I0efQ4nFhajqlLlgwiFSGyfgRDesQvDe-JU-SF3CQLI" {
		t.Fatalf("exit %d, %q", code, out)
	}
	if _, errOut, code := runCLI(t, "", nil, "hash-key"); code != 2 || !strings.Contains(errOut, "no credential") {
		t.Fatalf("empty input: exit %d, %q", code, errOut)
	}
}

func TestCheckCommand(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{})
	env := []string{"DATABASE_URL=" + f.DatabaseURL, "BETTER_AUTH_SECRET=" + testenv.Secret}

	out, _, code := runCLI(t, f.Keys.Valid.Key+"\n", env, "check", "--as", "api-key")
	if code != 0 || !strings.Contains(out, "decision:  allow") || !strings.Contains(out, "X-Auth-User-Id: "+f.Users.Alice.ID) {
		t.Fatalf("valid key: exit %d\n%s", code, out)
	}
	if strings.Contains(out, f.Keys.Valid.Key) {
		t.Fatal("check printed the key")
	}
	out, _, code = runCLI(t, f.Users.Alice.Signed, env, "check")
	if code != 0 || !strings.Contains(out, "X-Auth-Session-Id: "+f.SessionIDs["alice"]) {
		t.Fatalf("session bearer: exit %d\n%s", code, out)
	}
	out, _, code = runCLI(t, f.Keys.Disabled.Key, env, "check")
	if code != 1 || !strings.Contains(out, "code:      KEY_DISABLED") || !strings.Contains(out, "status:    401") {
		t.Fatalf("disabled key: exit %d\n%s", code, out)
	}
	cookie := filepath.Join(t.TempDir(), "cookie")
	os.WriteFile(cookie, []byte(f.Users.Bob.Signed+"\n"), 0o600)
	out, _, code = runCLI(t, "", env, "check", "--as", "cookie", "--credential-file", cookie)
	if code != 1 || !strings.Contains(out, "USER_BANNED") {
		t.Fatalf("banned user's cookie from a file: exit %d\n%s", code, out)
	}
	out, errOut, code := runCLI(t, f.Keys.Valid.Key, []string{"DATABASE_URL=postgres://nobody@127.0.0.1:1/none?connect_timeout=2"}, "check", "--timeout", "3s")
	if code != 2 || !strings.Contains(out, "BACKEND_UNAVAILABLE") || !strings.Contains(errOut, "could not answer") {
		t.Fatalf("unreachable database: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, errOut, code := runCLI(t, "x", []string{"DATABASE_URL="}, "check"); code != 2 || !strings.Contains(errOut, "no database") {
		t.Fatalf("no database: exit %d, %s", code, errOut)
	}
}

func TestDoctorCommand(t *testing.T) {
	t.Parallel()
	t.Run("postgres, Better-Auth's own schema", func(t *testing.T) {
		t.Parallel()
		f := testenv.Seed(t, testenv.SeedOptions{})
		out, _, code := runCLI(t, "", nil, "doctor", "--database", f.DatabaseURL)
		for _, want := range []string{"database: postgres, reachable", "apikey: id, configId", `layout: naming camel, user table "user"`,
			"@better-auth/api-key 1.5+", "admin plugin", "ok: the gateway can use this database"} {
			if !strings.Contains(out, want) {
				t.Errorf("doctor output lacks %q:\n%s", want, out)
			}
		}
		if code != 0 {
			t.Errorf("exit %d", code)
		}
	})
	t.Run("mysql, Better-Auth's own schema; check and install-triggers too", func(t *testing.T) {
		t.Parallel()
		f := testenv.Seed(t, testenv.SeedOptions{MySQL: true})
		env := []string{"DATABASE_URL=" + f.DatabaseURL, "BETTER_AUTH_SECRET=" + testenv.Secret}
		out, _, code := runCLI(t, "", env, "doctor")
		for _, want := range []string{"database: mysql, reachable", "apikey: id, configId", `layout: naming camel, user table "user"`,
			"admin plugin", "ok: the gateway can use this database"} {
			if !strings.Contains(out, want) {
				t.Errorf("doctor output lacks %q:\n%s", want, out)
			}
		}
		if code != 0 {
			t.Errorf("doctor: exit %d", code)
		}
		out, _, code = runCLI(t, f.Keys.Valid.Key+"\n", env, "check", "--as", "api-key")
		if code != 0 || !strings.Contains(out, "X-Auth-User-Id: "+f.Users.Alice.ID) {
			t.Errorf("check: exit %d\n%s", code, out)
		}
		if _, errOut, code := runCLI(t, "", env, "install-triggers"); code != 2 || !strings.Contains(errOut, "MySQL has no LISTEN/NOTIFY") {
			t.Errorf("install-triggers: exit %d, %q", code, errOut)
		}
	})
	t.Run("sqlite, drizzle, no admin plugin", func(t *testing.T) {
		t.Parallel()
		f := testenv.Seed(t, testenv.SeedOptions{SQLite: true, Snake: true, NoAdmin: true})
		out, _, code := runCLI(t, "", []string{"DATABASE_URL=" + f.DatabaseURL}, "doctor")
		if code != 0 || !strings.Contains(out, "database: sqlite, reachable") || !strings.Contains(out, "Drizzle schema (snake_case)") ||
			!strings.Contains(out, "no admin plugin columns") {
			t.Fatalf("exit %d\n%s", code, out)
		}
	})
	t.Run("a table is missing a column", func(t *testing.T) {
		t.Parallel()
		db := testenv.NewDatabase(t)
		testenv.Exec(t, db, `CREATE TABLE "user" (id text PRIMARY KEY, name text, email text)`)
		testenv.Exec(t, db, `CREATE TABLE session (id text PRIMARY KEY, "expiresAt" timestamptz, "userId" text)`)
		out, _, code := runCLI(t, "", []string{"DATABASE_URL=" + db}, "doctor")
		if code != 1 || !strings.Contains(out, `table "session" has no column "token"`) || !strings.Contains(out, "fix: ") {
			t.Fatalf("exit %d\n%s", code, out)
		}
	})
	t.Run("no Better-Auth tables", func(t *testing.T) {
		t.Parallel()
		db := testenv.NewDatabase(t)
		out, _, code := runCLI(t, "", []string{"DATABASE_URL=" + db}, "doctor")
		if code != 1 || !strings.Contains(out, "no user table") || !strings.Contains(out, "npx auth migrate") {
			t.Fatalf("exit %d\n%s", code, out)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		_, errOut, code := runCLI(t, "", []string{"DATABASE_URL=postgres://nobody:hunter2@127.0.0.1:1/none?connect_timeout=2"}, "doctor")
		if code != 2 || !strings.Contains(errOut, "cannot read the postgres database") || strings.Contains(errOut, "hunter2") {
			t.Fatalf("exit %d\n%s", code, errOut)
		}
	})
	t.Run("missing sqlite file", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "none.db")
		_, errOut, code := runCLI(t, "", nil, "doctor", "--database", "sqlite://"+path)
		if code != 2 {
			t.Fatalf("exit %d\n%s", code, errOut)
		}
		if _, err := os.Stat(path); err == nil {
			t.Fatal("doctor created the file")
		}
	})
}

// A mysql:// URL's parameters the store cannot honour are refused with a
// message, by the CLI and by Caddy's provisioning alike: strict=true (on
// which the driver's parser panics, which crashed the process), and the
// session settings the store makes itself. No database is reached.
func TestMySQLURLParametersRefused(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ param, want string }{
		{"strict=true", "strict mode has been removed"},
		{"SQL_MODE=%27TRADITIONAL%27", "sets sql_mode, which the store sets itself"},
		{"autocommit=0", "sets autocommit, which the store sets itself"},
	} {
		dsn := "mysql://gw:S3cretPW@127.0.0.1:1/app?" + c.param
		_, errOut, code := runCLI(t, "", []string{"DATABASE_URL=" + dsn}, "doctor")
		if code == 0 || !strings.Contains(errOut, c.want) || strings.Contains(errOut, "panic") || strings.Contains(errOut, "S3cretPW") {
			t.Errorf("doctor with %s: exit %d, %q", c.param, code, errOut)
		}
		caddyfile := filepath.Join(t.TempDir(), "Caddyfile")
		conf := "{\n\tadmin off\n}\n:0 {\n\tbetter_auth {\n\t\tdatabase " + dsn + "\n\t\tsecret " + testenv.Secret + "\n\t}\n\trespond ok\n}\n"
		if err := os.WriteFile(caddyfile, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(testenv.CaddyBinary(t), "validate", "--adapter", "caddyfile", "--config", caddyfile).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) || strings.Contains(string(out), "panic") {
			t.Errorf("caddy validate with %s: %v, %s", c.param, err, out)
		}
	}
}
