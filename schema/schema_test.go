package schema

import (
	"context"
	"errors"
	"strings"
	"testing"
)

var (
	camelUser    = []string{"id", "name", "email", "emailVerified", "image", "createdAt", "updatedAt"}
	camelAdmin   = append(append([]string{}, camelUser...), "role", "banned", "banReason", "banExpires")
	camelSession = []string{"id", "expiresAt", "token", "createdAt", "updatedAt", "ipAddress", "userAgent", "userId"}
	camelKey     = []string{"id", "configId", "name", "start", "referenceId", "prefix", "key", "refillInterval", "refillAmount",
		"lastRefillAt", "enabled", "rateLimitEnabled", "rateLimitTimeWindow", "rateLimitMax", "requestCount", "remaining",
		"lastRequest", "expiresAt", "createdAt", "updatedAt", "permissions", "metadata"}
)

func snakeAll(cols []string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = Snake(c)
	}
	return out
}

func legacyKey() []string {
	var out []string
	for _, c := range camelKey {
		switch c {
		case "configId":
		case "referenceId":
			out = append(out, "userId")
		default:
			out = append(out, c)
		}
	}
	return out
}

func TestResolveDetects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		cat     Catalog
		naming  Naming
		owner   Owner
		admin   bool
		tables  [3]string // user, session, apikey ("" when absent)
		configs bool      // apikey has configId
	}{
		{"kysely with admin", Config{}, Catalog{"user": camelAdmin, "session": camelSession, "apikey": camelKey},
			CamelCase, ReferenceID, true, [3]string{"user", "session", "apikey"}, true},
		{"kysely without admin", Config{}, Catalog{"user": camelUser, "session": camelSession, "apikey": camelKey},
			CamelCase, ReferenceID, false, [3]string{"user", "session", "apikey"}, true},
		{"drizzle snake plural", Config{}, Catalog{"users": snakeAll(camelAdmin), "sessions": snakeAll(camelSession), "apikeys": snakeAll(camelKey)},
			SnakeCase, ReferenceID, true, [3]string{"users", "sessions", "apikeys"}, true},
		{"legacy userId", Config{}, Catalog{"user": camelUser, "session": camelSession, "apikey": legacyKey()},
			CamelCase, UserID, false, [3]string{"user", "session", "apikey"}, false},
		{"no api-key plugin", Config{}, Catalog{"user": camelUser, "session": camelSession},
			CamelCase, "", false, [3]string{"user", "session", ""}, false},
		{"sessions in secondary storage", Config{}, Catalog{"user": camelUser, "apikey": camelKey},
			CamelCase, ReferenceID, false, [3]string{"user", "", "apikey"}, true},
		{"explicit tables and column", Config{UserTable: "accounts_user", Columns: map[string]string{"user.email": "mail"}},
			Catalog{"accounts_user": {"id", "name", "mail"}, "session": camelSession, "user": camelUser},
			CamelCase, "", false, [3]string{"accounts_user", "session", ""}, false},
		{"explicit naming wins", Config{Naming: SnakeCase}, Catalog{"user": {"id", "name", "email"}, "session": {"id", "token", "user_id", "expires_at"}},
			SnakeCase, "", false, [3]string{"user", "session", ""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, err := tt.cfg.Resolve(tt.cat)
			if err != nil {
				t.Fatal(err)
			}
			if l.Naming != tt.naming || l.Owner != tt.owner || l.Admin != tt.admin {
				t.Errorf("naming %s owner %q admin %v", l.Naming, l.Owner, l.Admin)
			}
			got := [3]string{l.User.Name}
			if l.Session != nil {
				got[1] = l.Session.Name
			}
			if l.APIKey != nil {
				got[2] = l.APIKey.Name
				if l.APIKey.Has("configId") != tt.configs {
					t.Errorf("configId present = %v", l.APIKey.Has("configId"))
				}
			}
			if got != tt.tables {
				t.Errorf("tables %v, want %v", got, tt.tables)
			}
			if l.Describe() == "" {
				t.Error("empty description")
			}
		})
	}
}

func TestResolveErrorsNameWhatIsMissing(t *testing.T) {
	t.Parallel()
	noToken := []string{"id", "expiresAt", "userId"}
	noOwner := []string{"id", "key", "enabled", "expiresAt", "remaining", "refillInterval", "refillAmount", "lastRefillAt", "createdAt"}
	for _, tt := range []struct {
		cfg   Config
		cat   Catalog
		want  string
		typed UnusableError // without the message
		owner bool
	}{
		{Config{}, Catalog{"session": camelSession}, `no user table (looked for "user" or "users")`,
			UnusableError{Problem: NoUserTable}, false},
		{Config{}, Catalog{"user": camelUser}, `neither a session table ("session" or "sessions") nor an api-key table ("apikey" or "apikeys")`,
			UnusableError{Problem: NoCredentialTable}, false},
		{Config{}, Catalog{"user": camelUser, "session": noToken}, `table "session" has no column "token" (Better-Auth's session.token)`,
			UnusableError{Problem: NoColumn, Model: "session", Table: "session", Field: "token", Column: "token"}, false},
		{Config{}, Catalog{"user": camelUser, "apikey": noOwner}, `table "apikey" has no column "referenceId"`,
			UnusableError{Problem: NoColumn, Model: "apikey", Table: "apikey", Field: "referenceId", Column: "referenceId"}, true},
		{Config{Owner: UserID}, Catalog{"user": camelUser, "apikey": camelKey}, `table "apikey" has no column "userId"`,
			UnusableError{Problem: NoColumn, Model: "apikey", Table: "apikey", Field: "userId", Column: "userId"}, true},
		{Config{APIKeyTable: "keys"}, Catalog{"user": camelUser, "session": camelSession}, `no apikey table "keys"`,
			UnusableError{Problem: NoNamedTable, Model: "apikey", Table: "keys"}, false},
		{Config{Columns: map[string]string{"user.role": "kind"}}, Catalog{"user": camelAdmin, "session": camelSession}, `table "user" has no column "kind"`,
			UnusableError{Problem: NoColumn, Model: "user", Table: "user", Field: "role", Column: "kind"}, false},
		{Config{Naming: SnakeCase}, Catalog{"user": camelUser, "session": camelSession}, `table "session" has no column "user_id" (Better-Auth's session.userId)`,
			UnusableError{Problem: NoColumn, Model: "session", Table: "session", Field: "userId", Column: "user_id"}, false},
	} {
		_, err := tt.cfg.Resolve(tt.cat)
		if !errors.Is(err, ErrUnusable) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.cfg, err, tt.want)
		}
		var ue *UnusableError
		if !errors.As(err, &ue) {
			t.Errorf("%+v: %T is not an *UnusableError", tt.cfg, err)
			continue
		}
		got := *ue
		got.detail = ""
		if got != tt.typed || ue.OwnerMissing() != tt.owner {
			t.Errorf("%+v: %+v (owner %v), want %+v (owner %v)", tt.cfg, got, ue.OwnerMissing(), tt.typed, tt.owner)
		}
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{
		{Naming: "kebab"}, {Naming: "Camel"}, {Owner: "org"}, {Owner: "userId"},
		{Columns: map[string]string{"apikey.secret": "x"}}, {Columns: map[string]string{"nomodel": "x"}},
		{Columns: map[string]string{"user": "x"}}, {Columns: map[string]string{".email": "x"}},
		{Columns: map[string]string{"user.email": ""}}, {Columns: map[string]string{"user.email": "e\x00"}},
		{UserTable: "users\x00"}, {UserTable: "auth", SessionTable: "auth"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	for _, c := range []Config{
		{},
		{Naming: CamelCase, Owner: UserID},
		{Naming: SnakeCase, Owner: ReferenceID, UserTable: "users", SessionTable: "sessions", APIKeyTable: "api keys", UsePlural: true,
			Columns: map[string]string{"user.email": `e"mail`, "apikey.referenceId": "org_id", "session.expiresAt": "valid_until"}},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v refused: %v", c, err)
		}
	}
}

func TestBuildQuotesAndFillsNulls(t *testing.T) {
	t.Parallel()
	l, err := Config{Columns: map[string]string{"user.email": `e"mail`}}.Resolve(Catalog{
		"user": {"id", "name", `e"mail`}, "session": camelSession, "apikey": legacyKey(),
	})
	if err != nil {
		t.Fatal(err)
	}
	q := l.Build(Dialect{Qualify: func(t string) string { return QuoteIdent("s;x") + "." + QuoteIdent(t) }, Param: "$1"})
	for _, want := range []string{`u."e""mail"`, `"s;x"."apikey" k`, `k."userId"`, `WHERE k."key" = $1`, `SELECT k."id", NULL, k."enabled"`, `u."name", NULL, NULL, NULL`} {
		if !strings.Contains(q.APIKey, want) {
			t.Errorf("API-key query lacks %s:\n%s", want, q.APIKey)
		}
	}
	if !strings.Contains(q.Session, `WHERE s."token" = $1`) {
		t.Errorf("session query:\n%s", q.Session)
	}
}

func TestLazyRetriesFailuresAndResolvesOnce(t *testing.T) {
	t.Parallel()
	calls, resolved := 0, 0
	cat := Catalog{"user": camelUser}
	z := &Lazy{
		Dialect:  Dialect{Qualify: QuoteIdent, Param: "?"},
		Catalog:  func(context.Context) (Catalog, error) { calls++; return cat, nil },
		Resolved: func(*Layout) { resolved++ },
	}
	if _, err := z.Get(context.Background()); !errors.Is(err, ErrUnusable) {
		t.Fatalf("err = %v", err)
	}
	cat["session"] = camelSession // the app ran its migration
	for range 3 {
		p, err := z.Get(context.Background())
		if err != nil || p.Queries.Session == "" || p.Queries.APIKey != "" {
			t.Fatalf("Get = %+v, %v", p, err)
		}
	}
	if calls != 2 || resolved != 1 {
		t.Fatalf("catalog read %d times, resolved %d times; want 2 and 1", calls, resolved)
	}
}
