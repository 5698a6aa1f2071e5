package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/demo"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
	"github.com/caddy-betterauth/caddy-betterauth/store"
)

// --print writes the SQL for the detected layout and schema, and touches
// nothing: the fake has no server to run it on.
func TestTriggersPrint(t *testing.T) {
	t.Parallel()
	db := fakeDB{cat: schema.Catalog{"users": snake(user), "sessions": snake(session), "apikeys": snake(apiKey)}, dialect: store.Postgres}
	layout, err := db.Layout(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	install, uninstall := pgstore.Triggers(layout, "tenant_a")
	for _, tt := range []struct {
		uninstall bool
		want      string
	}{{false, install}, {true, uninstall}} {
		var out, errOut bytes.Buffer
		code := triggers(context.Background(), db, "postgres://nobody@127.0.0.1:1/none",
			TriggerOptions{Database: Database{PGSchema: "tenant_a"}, Uninstall: tt.uninstall, Print: true}, &out, &errOut)
		if code != ExitOK || out.String() != tt.want || errOut.Len() != 0 {
			t.Errorf("uninstall %v: exit %d, %q\n%s", tt.uninstall, code, errOut.String(), out.String())
		}
	}
	if !strings.Contains(install, `"tenant_a"."sessions"`) || !strings.Contains(uninstall, "DROP TRIGGER") {
		t.Fatalf("the SQL does not name the layout's tables:\n%s\n%s", install, uninstall)
	}
}

func TestTriggersErrors(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "auth.db")
	if _, err := demo.Create(context.Background(), path, time.Now()); err != nil {
		t.Fatal(err)
	}
	run := func(opts TriggerOptions) (string, string, int) {
		var out, errOut bytes.Buffer
		code := Triggers(context.Background(), opts, &out, &errOut)
		return out.String(), errOut.String(), code
	}
	for _, p := range []bool{false, true} {
		out, errOut, code := run(TriggerOptions{Database: Database{URL: "sqlite://" + path}, Print: p})
		if code != ExitError || out != "" || errOut != "triggers are for PostgreSQL; SQLite databases are read within the cache TTL\n" {
			t.Errorf("SQLite, print %v: exit %d, %q, %q", p, code, out, errOut)
		}
	}
	// MySQL: said plainly, without connecting.
	if _, errOut, code := run(TriggerOptions{Database: Database{URL: "mysql://db/auth"}}); code != ExitError ||
		!strings.HasPrefix(errOut, "triggers are for PostgreSQL: MySQL has no LISTEN/NOTIFY") {
		t.Errorf("MySQL: exit %d, %q", code, errOut)
	}
	if _, errOut, code := run(TriggerOptions{Database: Database{URL: "mongodb://db/auth"}}); code != ExitError ||
		!strings.HasPrefix(errOut, "database: not a PostgreSQL URL") {
		t.Errorf("bad URL: exit %d, %q", code, errOut)
	}

	// A layout that cannot be read, and a server that cannot be reached.
	var out, errOut bytes.Buffer
	if code := triggers(context.Background(), fakeDB{cat: schema.Catalog{}, dialect: store.Postgres}, "", TriggerOptions{}, &out, &errOut); code != ExitError ||
		!strings.Contains(errOut.String(), "no user table") {
		t.Errorf("no tables: exit %d, %q", code, errOut.String())
	}
	errOut.Reset()
	db := fakeDB{cat: schema.Catalog{"user": user, "session": session}, dialect: store.Postgres}
	if code := triggers(context.Background(), db, "postgres://nobody:hunter2@127.0.0.1:1/none?connect_timeout=2", TriggerOptions{}, &out, &errOut); code != ExitError ||
		!strings.HasPrefix(errOut.String(), "connecting: ") || out.Len() != 0 {
		t.Errorf("unreachable: exit %d, %q, %q", code, out.String(), errOut.String())
	}
}

func snake(cols []string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = schema.Snake(c)
	}
	return out
}
