package pgstore

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Naming is how Better-Auth's fields are spelled as SQL columns.
type Naming string

// Namings.
const (
	// CamelCase is Better-Auth's own migrations (Kysely, `npx auth migrate`)
	// and Prisma: quoted camelCase columns such as "expiresAt".
	CamelCase Naming = "camel"
	// SnakeCase is the Drizzle generator's default: expires_at.
	SnakeCase Naming = "snake"
)

// Owner is the api-key column that names the key's owning user.
type Owner string

// Owners.
const (
	// ReferenceID is the @better-auth/api-key plugin (1.5 and later):
	// referenceId, plus a configId column.
	ReferenceID Owner = "reference_id"
	// UserID is the api-key plugin built into better-auth 1.3 and 1.4:
	// userId, and no configId column.
	UserID Owner = "user_id"
)

// Schema describes the Better-Auth tables to read. The zero value is
// Better-Auth's default schema in the connection's search_path.
type Schema struct {
	// Schema is the PostgreSQL schema holding the tables; empty means the
	// connection's search_path.
	Schema string
	// Naming of columns. Default: CamelCase.
	Naming Naming
	// Table names. Defaults: "user", "session", "apikey" (Better-Auth's model
	// names); with UsePlural, "users", "sessions", "apikeys".
	UserTable, SessionTable, APIKeyTable string
	// UsePlural appends "s" to default table names, as the adapters' usePlural
	// option does.
	UsePlural bool
	// Owner of API keys. Default: ReferenceID.
	Owner Owner
	// Columns overrides single column names, keyed "<model>.<field>" with
	// Better-Auth's model and field names, for example
	// "apikey.referenceId": "owner_id" or "user.banExpires": "ban_until".
	Columns map[string]string
}

// fields are the Better-Auth fields the store reads, by model.
var fields = map[string][]string{
	"user":    {"id", "email", "name", "role", "banned", "banExpires"},
	"session": {"id", "token", "userId", "expiresAt"},
	"apikey": {"id", "key", "configId", "referenceId", "userId", "enabled", "expiresAt", "remaining",
		"refillInterval", "refillAmount", "lastRefillAt", "createdAt"},
}

// resolved holds sanitized SQL identifiers, built once.
type resolved struct {
	user, session, apikey string            // qualified, quoted table names
	col                   map[string]string // "<model>.<field>" -> quoted column
	raw                   map[string]string // "<model>.<field>" -> unquoted column (JSON keys)
	hasConfigID           bool
	owner                 string // "apikey.referenceId" or "apikey.userId"
}

func (s Schema) resolve() (*resolved, error) {
	naming := s.Naming
	if naming == "" {
		naming = CamelCase
	}
	if naming != CamelCase && naming != SnakeCase {
		return nil, fmt.Errorf("naming must be %q or %q, not %q", CamelCase, SnakeCase, naming)
	}
	owner := s.Owner
	if owner == "" {
		owner = ReferenceID
	}
	if owner != ReferenceID && owner != UserID {
		return nil, fmt.Errorf("api key owner must be %q or %q, not %q", ReferenceID, UserID, owner)
	}
	for k := range s.Columns {
		model, field, _ := strings.Cut(k, ".")
		if !contains(fields[model], field) {
			return nil, fmt.Errorf("unknown column key %q: want <model>.<field> with model user, session or apikey and one of its fields", k)
		}
	}
	r := &resolved{col: map[string]string{}, raw: map[string]string{}, hasConfigID: owner == ReferenceID}
	r.owner = "apikey.referenceId"
	if owner == UserID {
		r.owner = "apikey.userId"
	}
	for model, fs := range fields {
		for _, f := range fs {
			k := model + "." + f
			name := s.Columns[k]
			if name == "" {
				name = f
				if naming == SnakeCase {
					name = snake(f)
				}
			}
			r.raw[k] = name
			r.col[k] = pgx.Identifier{name}.Sanitize()
		}
	}
	table := func(name, def string) string {
		if name == "" {
			name = def
			if s.UsePlural {
				name += "s"
			}
		}
		if s.Schema != "" {
			return pgx.Identifier{s.Schema, name}.Sanitize()
		}
		return pgx.Identifier{name}.Sanitize()
	}
	r.user = table(s.UserTable, "user")
	r.session = table(s.SessionTable, "session")
	r.apikey = table(s.APIKeyTable, "apikey")
	return r, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// snake converts a camelCase field name as Drizzle's generator does.
func snake(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			b.WriteByte('_')
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}
