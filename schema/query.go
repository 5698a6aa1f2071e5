package schema

import (
	"fmt"
	"strings"
)

// Queries are the two lookups for a layout, in SQL that PostgreSQL and SQLite
// both accept. Each returns one row shape:
//
//	API key: id, configId, enabled, expiresAt, remaining, refillInterval,
//	         refillAmount, lastRefillAt, createdAt, permissions, metadata,
//	         then the user columns
//	session: id, expiresAt, then the user columns
//	user:    id, email, name, role, banned, banExpires
//
// with NULL for the optional columns the table lacks, and for metadata
// unless the layout's AllowedIPsField is set (it is read for nothing else).
// APIKey or Session is empty when the database has no such table.
type Queries struct {
	APIKey, Session string
	// User reads one user by id, for records kept outside SQL (Better-Auth's
	// secondary storage).
	User string
}

// Dialect is what differs between the databases.
type Dialect struct {
	// Qualify turns a table name into its quoted, schema-qualified form.
	Qualify func(table string) string
	// Param is the placeholder of the one parameter: "$1" or "?".
	Param string
}

// Build returns the queries of a layout. Identifiers are quoted here; values
// are always the parameter.
func (l *Layout) Build(d Dialect) Queries {
	qualify, param := d.Qualify, d.Param
	col := func(alias string, t *Table, field string) string {
		if !t.Has(field) {
			return "NULL"
		}
		return alias + "." + QuoteIdent(t.Col(field))
	}
	u := &l.User
	user := strings.Join([]string{
		col("u", u, "id"), col("u", u, "email"), col("u", u, "name"),
		col("u", u, "role"), col("u", u, "banned"), col("u", u, "banExpires"),
	}, ", ")
	metadata := "NULL"
	if k := l.APIKey; k != nil && l.AllowedIPsField != "" {
		metadata = col("k", k, "metadata")
	}
	q := Queries{User: fmt.Sprintf(`SELECT %s
FROM %s u
WHERE u.%s = %s`, user, qualify(u.Name), QuoteIdent(u.Col("id")), param)}
	if k := l.APIKey; k != nil {
		q.APIKey = fmt.Sprintf(`SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s
FROM %s k
JOIN %s u ON u.%s = k.%s
WHERE k.%s = %s
LIMIT 2`,
			col("k", k, "id"), col("k", k, "configId"), col("k", k, "enabled"), col("k", k, "expiresAt"),
			col("k", k, "remaining"), col("k", k, "refillInterval"), col("k", k, "refillAmount"),
			col("k", k, "lastRefillAt"), col("k", k, "createdAt"), col("k", k, "permissions"), metadata, user,
			qualify(k.Name), qualify(u.Name), QuoteIdent(u.Col("id")), QuoteIdent(k.Col(l.OwnerField())),
			QuoteIdent(k.Col("key")), param)
	}
	if s := l.Session; s != nil {
		q.Session = fmt.Sprintf(`SELECT %s, %s, %s
FROM %s s
JOIN %s u ON u.%s = s.%s
WHERE s.%s = %s
LIMIT 1`,
			col("s", s, "id"), col("s", s, "expiresAt"), user,
			qualify(s.Name), qualify(u.Name), QuoteIdent(u.Col("id")), QuoteIdent(s.Col("userId")),
			QuoteIdent(s.Col("token")), param)
	}
	return q
}
