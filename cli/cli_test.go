package cli

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/demo"
)

func TestExit(t *testing.T) {
	t.Parallel()
	if err := Exit(ExitOK); err != nil {
		t.Errorf("Exit(0) = %v", err)
	}
	err := Exit(ExitError)
	if st, ok := err.(*ExitStatus); !ok || st.Code != ExitError || err.Error() != "exit status 2" {
		t.Errorf("Exit(2) = %#v", err)
	}
}

func TestHashKey(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if code := HashKey(strings.NewReader("ba_testkey\n"), &out, &errOut); code != ExitOK || out.String() != "I0efQ4nFhajqlLlgwiFSGyfgRDesQvDe-JU-SF3CQLI\n" {
		t.Fatalf("exit %d, %q", code, out.String())
	}
	out.Reset()
	if code := HashKey(strings.NewReader("  \n"), &out, &errOut); code != ExitError || out.Len() != 0 || errOut.String() != "hash-key: no credential on input\n" {
		t.Fatalf("blank input: exit %d, %q, %q", code, out.String(), errOut.String())
	}
}

// check, on a Better-Auth database: each way of sending a credential, a
// denial, and the errors.
func TestCheckDatabase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.db")
	creds, err := demo.Create(context.Background(), path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	const secret = "a-secret-of-at-least-32-characters!!"
	signed := betterauth.NewSigner(secret).Sign(creds.SessionToken)
	disabled, err := demo.Create(context.Background(), path, time.Now()) // a second key, disabled below
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`UPDATE "apikey" SET "enabled" = 0 WHERE "id" = ?`, disabled.KeyID); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	cookieFile := filepath.Join(dir, "cookie")
	if err := os.WriteFile(cookieFile, []byte(signed+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := Database{URL: "sqlite://" + path}
	run := func(d Database, as, file, in string) (string, string, int) {
		var out, errOut bytes.Buffer
		code := CheckDatabase(context.Background(), d, CheckOptions{Secret: secret, As: as, APIKeyPrefixes: []string{demo.KeyPrefix}},
			file, strings.NewReader(in), &out, &errOut)
		return out.String(), errOut.String(), code
	}

	for _, tt := range []struct{ name, as, file, in, header string }{
		{"api key", "api-key", "", creds.APIKey + "\n", "X-Auth-Key-Id: " + creds.KeyID},
		{"api key as bearer", "", "", creds.APIKey, "X-Auth-Key-Id: " + creds.KeyID},
		{"session as bearer", "bearer", "", signed, "X-Auth-Session-Id: " + creds.SessionID},
		{"cookie from a file", "cookie", cookieFile, "", "X-Auth-Session-Id: " + creds.SessionID},
	} {
		out, errOut, code := run(db, tt.as, tt.file, tt.in)
		if code != ExitOK || !strings.Contains(out, "decision:  allow\ncode:      OK\nstatus:    200\n") ||
			!strings.Contains(out, "X-Auth-User-Id: "+creds.UserID) || !strings.Contains(out, tt.header) || errOut != "" {
			t.Errorf("%s: exit %d\n%s%s", tt.name, code, out, errOut)
		}
		if strings.Contains(out, creds.APIKey) || strings.Contains(out, creds.SessionToken) {
			t.Errorf("%s: check printed the credential:\n%s", tt.name, out)
		}
	}
	out, _, code := run(db, "api-key", "", disabled.APIKey)
	if code != ExitDeny || !strings.Contains(out, "decision:  deny\ncode:      KEY_DISABLED\nstatus:    401\n") || strings.Contains(out, "X-Auth-") {
		t.Errorf("disabled key: exit %d\n%s", code, out)
	}
	out, _, code = run(db, "api-key", "", demo.KeyPrefix+strings.Repeat("x", 64))
	if code != ExitDeny || !strings.Contains(out, "code:      INVALID_API_KEY") {
		t.Errorf("unknown key: exit %d\n%s", code, out)
	}

	for _, tt := range []struct{ name, as, file, in, errOut string }{
		{"bad --as", "header", "", creds.APIKey, `check: --as must be api-key, bearer or cookie, not "header"`},
		{"no credential", "", "", "\n", "check: no credential on input"},
		{"missing credential file", "", filepath.Join(dir, "none"), "", "check: open " + filepath.Join(dir, "none")},
	} {
		out, errOut, code := run(db, tt.as, tt.file, tt.in)
		if code != ExitError || out != "" || !strings.HasPrefix(errOut, tt.errOut) {
			t.Errorf("%s: exit %d, %q, %q", tt.name, code, out, errOut)
		}
	}
	if _, errOut, code := run(Database{URL: "mongodb://db/auth"}, "", "", creds.APIKey); code != ExitError || !strings.HasPrefix(errOut, "check: database: not a PostgreSQL URL") {
		t.Errorf("bad URL: exit %d, %q", code, errOut)
	}
}

func TestDoctorDatabase(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "auth.db")
	if _, err := demo.Create(context.Background(), path, time.Now()); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := DoctorDatabase(context.Background(), Database{URL: "sqlite://" + path}, DoctorOptions{}, &out, &errOut); code != ExitOK ||
		!strings.Contains(out.String(), "ok: the gateway can use this database\n") {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	missing := filepath.Join(t.TempDir(), "none.db")
	if code := DoctorDatabase(context.Background(), Database{URL: "sqlite://" + missing}, DoctorOptions{}, &out, &errOut); code != ExitError ||
		!strings.Contains(errOut.String(), "doctor: cannot read the sqlite database") {
		t.Fatalf("missing file: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("doctor created the file: %v", err)
	}
}
