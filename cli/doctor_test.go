package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/demo"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
	"github.com/caddy-betterauth/caddy-betterauth/store"
)

var (
	user    = []string{"id", "name", "email", "emailVerified", "createdAt", "updatedAt"}
	session = []string{"id", "expiresAt", "token", "createdAt", "updatedAt", "userId"}
	apiKey  = []string{"id", "configId", "referenceId", "key", "enabled", "expiresAt", "remaining", "refillInterval", "refillAmount", "lastRefillAt", "createdAt"}
)

// fakeDB is a database holding cat, resolved as the stores do, errors
// prefixed with the store's name.
type fakeDB struct {
	cat     schema.Catalog
	cfg     schema.Config
	dialect store.Dialect
	err     error // the database cannot be reached
	lost    error // the connection is lost after the catalog is read
	// resources are the oauthResource identifiers.
	resources []string
}

func (f fakeDB) OAuthResource(_ context.Context, id string) (bool, error) {
	return slices.Contains(f.resources, id), nil
}

func (f fakeDB) Catalog(context.Context) (schema.Catalog, error) { return f.cat, f.err }
func (f fakeDB) Dialect() store.Dialect                          { return f.dialect }
func (f fakeDB) Layout(context.Context) (*schema.Layout, error) {
	if f.err != nil {
		return nil, f.err
	}
	if f.lost != nil {
		return nil, f.lost
	}
	l, err := f.cfg.Resolve(f.cat)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	return l, nil
}

func runDoctor(t *testing.T, db Inspector) (out, errOut string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = Doctor(context.Background(), db, schema.Config{}, DoctorOptions{}, &o, &e)
	return o.String(), e.String(), code
}

func demoDatabase(t *testing.T) (store.DB, *demo.Credentials) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth.db")
	creds, err := demo.Create(context.Background(), path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open("sqlite://"+path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, creds
}

func TestDoctorUsable(t *testing.T) {
	t.Parallel()
	db, _ := demoDatabase(t)
	out, errOut, code := runDoctor(t, db)
	for _, want := range []string{"database: sqlite, reachable", "  apikey: id, configId, name", `layout: naming camel, user table "user", session table "session"`,
		"@better-auth/api-key 1.5+ (referenceId, configId)", "ok: the gateway can use this database\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code != ExitOK || errOut != "" || strings.Contains(out, "note:") {
		t.Errorf("exit %d, %q\n%s", code, errOut, out)
	}
}

// Without a session table, the doctor says where such sessions are read.
func TestDoctorNoSessionTable(t *testing.T) {
	t.Parallel()
	out, _, code := runDoctor(t, fakeDB{cat: schema.Catalog{"user": user, "apikey": apiKey}, dialect: store.Postgres})
	if code != ExitOK || !strings.Contains(out, "no session table, so session tokens are unknown unless") ||
		!strings.Contains(out, "`secondary_storage` block") || strings.Contains(out, "not read yet") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

// Each unusable schema gets the problem, without the store's name, and the
// fix for that kind of problem.
func TestDoctorUnusable(t *testing.T) {
	t.Parallel()
	noToken := []string{"id", "expiresAt", "userId"}
	noOwner := []string{"id", "key", "enabled", "expiresAt", "remaining", "refillInterval", "refillAmount", "lastRefillAt", "createdAt"}
	for _, tt := range []struct {
		name         string
		db           fakeDB
		problem, fix string
	}{
		{"no tables", fakeDB{cat: schema.Catalog{}},
			`problem: unusable Better-Auth schema: no user table (looked for "user" or "users")`,
			"fix: run Better-Auth's migration in the app (npx auth migrate, or your ORM's), or, if the table is renamed, set `schema { table user <name> }`"},
		{"users only", fakeDB{cat: schema.Catalog{"user": user}},
			"problem: unusable Better-Auth schema: neither a session table",
			"`schema { table session <name> }` / `schema { table api_key <name> }`"},
		{"a named table is missing", fakeDB{cat: schema.Catalog{"user": user, "session": session}, cfg: schema.Config{APIKeyTable: "keys"}},
			`problem: unusable Better-Auth schema: no apikey table "keys"`,
			"fix: check the name set with `schema { table api_key <name> }`: the database has no table \"keys\""},
		{"a column is missing", fakeDB{cat: schema.Catalog{"user": user, "session": noToken}},
			`problem: unusable Better-Auth schema: table "session" has no column "token"`,
			"fix: if the app renamed session.token, map it with `schema { column session.token <column> }`; otherwise run Better-Auth's migration"},
		{"the key owner is missing", fakeDB{cat: schema.Catalog{"user": user, "apikey": noOwner}},
			`problem: unusable Better-Auth schema: table "apikey" has no column "referenceId" (the api-key owner`,
			"`schema { column apikey.referenceId <column> }`; if its table is the other plugin version's, set `schema { api_key_owner user_id }`"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.db.dialect = store.SQLite
			out, _, code := runDoctor(t, tt.db)
			if code != ExitDeny || !strings.Contains(out, tt.problem) || !strings.Contains(out, tt.fix) || strings.Contains(out, "pgstore") {
				t.Fatalf("exit %d, want problem %q and fix %q:\n%s", code, tt.problem, tt.fix, out)
			}
		})
	}
}

func TestDoctorUnreachable(t *testing.T) {
	t.Parallel()
	out, errOut, code := runDoctor(t, fakeDB{dialect: store.Postgres, err: errors.New("dial tcp 127.0.0.1:1: connection refused")})
	if code != ExitError || out != "" || !strings.Contains(errOut, "doctor: cannot read the postgres database: dial tcp") ||
		!strings.Contains(errOut, "fix: check the URL") {
		t.Fatalf("exit %d, %q, %q", code, out, errOut)
	}
}

// A database that stops answering half-way is an error, not an unusable
// schema.
func TestDoctorLostConnection(t *testing.T) {
	t.Parallel()
	out, _, code := runDoctor(t, fakeDB{cat: schema.Catalog{"user": user, "session": session}, dialect: store.Postgres,
		lost: errors.New("pgstore: reading the catalog: conn closed")})
	if code != ExitError || !strings.Contains(out, "problem: reading the catalog: conn closed\n") || strings.Contains(out, "fix:") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

// A configuration whose keys belong to organizations needs the
// organization plugin's table: the doctor says so when it is missing, or
// not Better-Auth's, and says nothing with the plugin installed.
func TestDoctorOrganizations(t *testing.T) {
	t.Parallel()
	org := []string{"id", "name", "slug", "logo", "createdAt", "metadata"}
	member := []string{"id", "organizationId", "userId", "role", "createdAt"}
	withActive := append(append([]string{}, session...), "activeOrganizationId")
	run := func(cat schema.Catalog, orgIDs []string) string {
		t.Helper()
		var o, e bytes.Buffer
		if code := Doctor(context.Background(), fakeDB{cat: cat, dialect: store.Postgres}, schema.Config{}, DoctorOptions{OrgConfigIDs: orgIDs}, &o, &e); code != ExitOK {
			t.Fatalf("exit %d\n%s%s", code, o.String(), e.String())
		}
		return o.String()
	}
	out := run(schema.Catalog{"user": user, "session": session, "apikey": apiKey}, []string{"org"})
	if !strings.Contains(out, "problem: api-key configuration org references organizations, but there is no organization table") {
		t.Errorf("no organization table:\n%s", out)
	}
	out = run(schema.Catalog{"user": user, "session": session, "apikey": apiKey, "organization": {"id", "title"}}, []string{"org"})
	if !strings.Contains(out, `problem: api-key configuration org references organizations, but table "organization" has no column "name"`) {
		t.Errorf("the app's own organization table:\n%s", out)
	}
	out = run(schema.Catalog{"user": user, "session": withActive, "apikey": apiKey, "organization": org, "member": member}, []string{"org"})
	if strings.Contains(out, "problem:") || strings.Contains(out, "note: an organization") || strings.Contains(out, "note: not using") ||
		!strings.Contains(out, ", organization plugin, ") {
		t.Errorf("with the plugin:\n%s", out)
	}
	out = run(schema.Catalog{"user": user, "session": session, "apikey": apiKey, "organization": org}, nil)
	if !strings.Contains(out, "note: an organization table without the organization plugin's member table") {
		t.Errorf("no member table:\n%s", out)
	}
}

// The doctor tells whether the OAuth provider will issue tokens for the
// oauth block's resource: without its oauthResource row it refuses.
func TestDoctorOAuthResource(t *testing.T) {
	t.Parallel()
	const resource = "https://mcp.example.com/mcp"
	base := schema.Catalog{
		"user":    {"id", "name", "email"},
		"session": {"id", "expiresAt", "token", "userId"},
	}
	with := func(extra schema.Catalog) schema.Catalog {
		c := schema.Catalog{}
		for k, v := range base {
			c[k] = v
		}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	current := schema.Catalog{
		"oauthAccessToken": {"id", "token", "clientId", "sessionId", "userId", "scopes", "resources", "expiresAt", "revoked", "confirmation"},
		"oauthClient":      {"id", "clientId", "disabled", "name"},
		"oauthResource":    {"id", "identifier", "name"},
	}
	legacy := schema.Catalog{
		"oauthAccessToken": {"id", "accessToken", "accessTokenExpiresAt", "clientId", "userId", "scopes"},
		"oauthApplication": {"id", "clientId", "disabled", "name"},
	}
	for _, tc := range []struct {
		name string
		db   fakeDB
		want string
	}{
		{"registered", fakeDB{cat: with(current), resources: []string{resource}}, "oauth: resource https://mcp.example.com/mcp is registered"},
		{"not registered", fakeDB{cat: with(current), resources: []string{"https://other.example.com/mcp"}},
			"problem: no oauthResource row for https://mcp.example.com/mcp"},
		{"no provider", fakeDB{cat: base}, "problem: the oauth block names resource https://mcp.example.com/mcp, but there is no OAuth provider token table"},
		{"legacy plugin", fakeDB{cat: with(legacy)}, "needs allow_unbound_tokens"},
		{"a token table without its client table", fakeDB{cat: with(schema.Catalog{"oauthAccessToken": current["oauthAccessToken"]})},
			"note: not using the OAuth token table"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.db.dialect = store.Postgres
			var o, e bytes.Buffer
			code := Doctor(context.Background(), tc.db, schema.Config{}, DoctorOptions{OAuthResource: resource}, &o, &e)
			if code != ExitOK || !strings.Contains(o.String(), tc.want) {
				t.Fatalf("exit %d, want %q in:\n%s%s", code, tc.want, o.String(), e.String())
			}
		})
	}
}
