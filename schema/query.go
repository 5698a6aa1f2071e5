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
//	         then the user columns, then the owner id as stored, then the
//	         organization columns
//	session: id, expiresAt, then the user columns, then
//	         activeOrganizationId, member.id, member.role
//	user:    id, email, name, role, banned, banExpires
//	organization: id, slug, name
//	member:  role
//
// with NULL for the optional columns the table lacks, and for metadata
// unless the layout's AllowedIPsField is set (it is read for nothing else).
// An API key's owner is LEFT JOINed to both the user and the organization
// table (which one owns the key is the configuration's to say, not the
// row's), so a key whose owner is missing still comes back, with NULL
// owner columns. APIKey or Session is empty when the database has no such
// table; Member and Organization when it has not the organization
// plugin's.
type Queries struct {
	APIKey, Session string
	// User reads one user by id, for records kept outside SQL (Better-Auth's
	// secondary storage).
	User string
	// Organization reads one organization by id, and Member the role of a
	// user (second parameter) in an organization (first), for the same.
	Organization, Member string
	// OAuth reads an OAuth access token by what the token table stores:
	// its hash (Layout.OAuth.Legacy false) or itself. Its row:
	//
	//	id, clientId, userId, sessionId, expiresAt, revoked, scopes,
	//	resources, confirmation, then the client's clientId, disabled and
	//	name, the session's expiresAt, how many resources the database
	//	saw and how many of those have no oauthResource row, then the
	//	user columns
	OAuth string
	// OAuthResource finds an oauthResource row by identifier (empty
	// without the table).
	OAuthResource string
	// Either reads an API key and a session in one statement, for a
	// bearer value that may be either (betterauth.KindEither): the
	// APIKey query's rows with 1 first and then SessionColumns NULLs,
	// and the Session query's with 2 first after APIKeyColumns NULLs
	// (see SplitEither). Only for a Dialect with Union, and a layout
	// with both tables.
	Either string
	// OAuthGrant reads what a JWT access token names (it has no row):
	// the client (first parameter), the session (second), the user
	// (third) and how many of the resources (the fourth: a text[] on
	// PostgreSQL, a JSON array on SQLite; see Grant.Args) have an
	// oauthResource row. Its row:
	// the client's clientId, disabled and name, the session's expiresAt,
	// that count, then the user columns. Empty for the legacy plugins,
	// which issued no JWT.
	OAuthGrant string
}

// MaxGrantResources is how many resources (audiences) one JWT access
// token may name: Better-Auth's own bound (MAX_AUD_VALUES).
const MaxGrantResources = 64

// Dialect is what differs between the databases.
type Dialect struct {
	// Qualify turns a table name into its quoted, schema-qualified form.
	Qualify func(table string) string
	// Param is the placeholder of the first parameter: "$1" or "?";
	// Param2 of the second: "$2" or "?".
	Param, Param2 string
	// JSONArray returns a FROM item, aliased j, whose column value holds
	// the strings of the JSON array expr (none when expr is not one).
	JSONArray func(expr string) string
	// Union says the database takes (SELECT ... LIMIT n) UNION ALL
	// (SELECT ... LIMIT m), for Queries.Either: worth it where a second
	// query costs a second round trip (MySQL; not SQLite, in process).
	Union bool
	// Positional says parameters are bound in the order their
	// placeholders appear, each one Param (MySQL's "?"): the grant query
	// then takes Grant.PositionalArgs. ListParam is then the FROM item,
	// aliased j with a column value, of the strings of a JSON array
	// parameter, and Text the type to cast a parameter to for text.
	Positional bool
	ListParam  func(param string) string
	Text       string
}

// PostgresJSONArray is PostgreSQL's Dialect.JSONArray: jsonb as Kysely
// stores string arrays, or text[] as Drizzle and Prisma do.
func PostgresJSONArray(expr string) string {
	return fmt.Sprintf("jsonb_array_elements_text(CASE WHEN jsonb_typeof(to_jsonb(%[1]s)) = 'array' THEN to_jsonb(%[1]s) ELSE '[]'::jsonb END) AS j(value)", expr)
}

// SQLiteJSONArray is SQLite's Dialect.JSONArray: JSON text.
func SQLiteJSONArray(expr string) string {
	return fmt.Sprintf("json_each(CASE WHEN json_valid(%[1]s) AND json_type(%[1]s) = 'array' THEN %[1]s ELSE '[]' END) AS j", expr)
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
	org, orgJoin := "NULL, NULL, NULL", ""
	if o := l.Org; o != nil {
		org = strings.Join([]string{col("o", o, "id"), col("o", o, "slug"), col("o", o, "name")}, ", ")
		q.Organization = fmt.Sprintf(`SELECT %s
FROM %s o
WHERE o.%s = %s`, org, qualify(o.Name), QuoteIdent(o.Col("id")), param)
	}
	if m := l.Member; m != nil {
		q.Member = fmt.Sprintf(`SELECT m.%s
FROM %s m
WHERE m.%s = %s AND m.%s = %s
LIMIT 1`, QuoteIdent(m.Col("role")), qualify(m.Name), QuoteIdent(m.Col("organizationId")), param,
			QuoteIdent(m.Col("userId")), d.Param2)
	}
	if k := l.APIKey; k != nil {
		owner := "k." + QuoteIdent(k.Col(l.OwnerField()))
		if o := l.Org; o != nil && l.Owner == ReferenceID { // the 1.3/1.4 table has no organization keys
			orgJoin = fmt.Sprintf("\nLEFT JOIN %s o ON o.%s = %s", qualify(o.Name), QuoteIdent(o.Col("id")), owner)
		} else {
			org = "NULL, NULL, NULL"
		}
		q.APIKey = fmt.Sprintf(`SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s
FROM %s k
LEFT JOIN %s u ON u.%s = %s%s
WHERE k.%s = %s
LIMIT 2`,
			col("k", k, "id"), col("k", k, "configId"), col("k", k, "enabled"), col("k", k, "expiresAt"),
			col("k", k, "remaining"), col("k", k, "refillInterval"), col("k", k, "refillAmount"),
			col("k", k, "lastRefillAt"), col("k", k, "createdAt"), col("k", k, "permissions"), metadata, user, owner, org,
			qualify(k.Name), qualify(u.Name), QuoteIdent(u.Col("id")), owner, orgJoin,
			QuoteIdent(k.Col("key")), param)
	}
	if o := l.OAuth; o != nil {
		q.OAuth = l.buildOAuth(d, user, col)
		if r := o.Resource; r != nil {
			q.OAuthResource = fmt.Sprintf("SELECT 1 FROM %s r WHERE r.%s = %s LIMIT 1", qualify(r.Name), QuoteIdent(r.Col("identifier")), param)
		}
		if !o.Legacy {
			q.OAuthGrant = l.buildOAuthGrant(d, user, col)
		}
	}
	if s := l.Session; s != nil {
		member, memberJoin := "NULL, NULL, NULL", ""
		if m := l.Member; m != nil && s.Has("activeOrganizationId") {
			member = fmt.Sprintf("s.%s, m.%s, m.%s", QuoteIdent(s.Col("activeOrganizationId")),
				QuoteIdent(m.Col("id")), QuoteIdent(m.Col("role")))
			memberJoin = fmt.Sprintf("\nLEFT JOIN %s m ON m.%s = s.%s AND m.%s = s.%s", qualify(m.Name),
				QuoteIdent(m.Col("organizationId")), QuoteIdent(s.Col("activeOrganizationId")),
				QuoteIdent(m.Col("userId")), QuoteIdent(s.Col("userId")))
		}
		q.Session = fmt.Sprintf(`SELECT %s, %s, %s, %s
FROM %s s
JOIN %s u ON u.%s = s.%s%s
WHERE s.%s = %s
LIMIT 1`,
			col("s", s, "id"), col("s", s, "expiresAt"), user, member,
			qualify(s.Name), qualify(u.Name), QuoteIdent(u.Col("id")), QuoteIdent(s.Col("userId")), memberJoin,
			QuoteIdent(s.Col("token")), param)
	}
	if d.Union && q.APIKey != "" && q.Session != "" {
		q.Either = "(" + padded(q.APIKey, 1, 0, SessionColumns) + ")\nUNION ALL\n(" + padded(q.Session, 2, APIKeyColumns, 0) + ")"
	}
	return q
}

// padded returns query (a SELECT whose select list ends at its first
// "\nFROM ") with kind as its first column, and before and after NULL
// columns around its own.
func padded(query string, kind, before, after int) string {
	list, from, _ := strings.Cut(strings.TrimPrefix(query, "SELECT "), "\nFROM ")
	return fmt.Sprintf("SELECT %d, %s%s%s\nFROM %s", kind, strings.Repeat("NULL, ", before), list, strings.Repeat(", NULL", after), from)
}

// buildOAuth returns the OAuth token query (see Queries.OAuth).
func (l *Layout) buildOAuth(d Dialect, user string, col func(string, *Table, string) string) string {
	o := l.OAuth
	t, c := &o.Token, &o.Client
	key, expires := "token", "expiresAt"
	if o.Legacy {
		key, expires = "accessToken", "accessTokenExpiresAt"
	}
	session, sessionJoin := "NULL", ""
	if s := l.Session; s != nil && t.Has("sessionId") {
		session = col("s", s, "expiresAt")
		sessionJoin = fmt.Sprintf("\nLEFT JOIN %s s ON s.%s = t.%s", d.Qualify(s.Name), QuoteIdent(s.Col("id")), QuoteIdent(t.Col("sessionId")))
	}
	// Better-Auth refuses a token one of whose resources has lost its
	// oauthResource row; the resources seen are counted too, so that an
	// array the database cannot read is not taken for an empty one.
	seen, missing := "NULL", "NULL"
	if t.Has("resources") && d.JSONArray != nil {
		elems := d.JSONArray("t." + QuoteIdent(t.Col("resources")))
		seen = fmt.Sprintf("(SELECT count(*) FROM %s)", elems)
		missing = seen
		if r := o.Resource; r != nil {
			missing = fmt.Sprintf("(SELECT count(*) FROM %s WHERE NOT EXISTS (SELECT 1 FROM %s r WHERE r.%s = j.value))",
				elems, d.Qualify(r.Name), QuoteIdent(r.Col("identifier")))
		}
	}
	return fmt.Sprintf(`SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s
FROM %s t
LEFT JOIN %s c ON c.%s = t.%s%s
LEFT JOIN %s u ON u.%s = t.%s
WHERE t.%s = %s
LIMIT 1`,
		col("t", t, "id"), col("t", t, "clientId"), col("t", t, "userId"), col("t", t, "sessionId"),
		col("t", t, expires), col("t", t, "revoked"), col("t", t, "scopes"), col("t", t, "resources"),
		col("t", t, "confirmation"), col("c", c, "clientId"), col("c", c, "disabled"), col("c", c, "name"),
		session, seen, missing, user,
		d.Qualify(t.Name), d.Qualify(c.Name), QuoteIdent(c.Col("clientId")), QuoteIdent(t.Col("clientId")), sessionJoin,
		d.Qualify(l.User.Name), QuoteIdent(l.User.Col("id")), QuoteIdent(t.Col("userId")),
		QuoteIdent(t.Col(key)), d.Param)
}

// buildOAuthGrant returns the query of what a JWT access token names (see
// Queries.OAuthGrant). Parameters appear in order, so that SQLite's "?"
// serves too; a Positional dialect binds them as they appear (the
// resources, then the client, the session and the user: see
// Grant.PositionalArgs).
func (l *Layout) buildOAuthGrant(d Dialect, user string, col func(string, *Table, string) string) string {
	o := l.OAuth
	c := &o.Client
	nth := func(i int) string {
		if d.Positional {
			return d.Param
		}
		if d.Param == "?" {
			return fmt.Sprintf("?%d", i) // SQLite's numbered form
		}
		return fmt.Sprintf("$%d", i)
	}
	text := "text"
	if d.Text != "" {
		text = d.Text
	}
	// The resources come first in the text: found is in the select list.
	// Every parameter is referenced, with a type PostgreSQL can tell,
	// whichever tables exist.
	list, listType := fmt.Sprintf("(SELECT value FROM json_each(%s))", nth(4)), "text"
	if d.Positional {
		// The JSON parameter is bound bare: MySQL takes no binary
		// string for JSON.
		list, listType = d.ListParam("?"), text
	} else if d.Param != "?" {
		list, listType = fmt.Sprintf("(SELECT unnest(CAST(%s AS text[])))", nth(4)), "text[]"
	}
	found := fmt.Sprintf("(SELECT 0 WHERE CAST(%s AS %s) IS NULL OR 1 = 1)", nth(4), listType)
	if d.Positional {
		found = fmt.Sprintf("(SELECT 0 FROM (SELECT 1 AS one) z WHERE CAST(? AS %s) IS NULL OR 1 = 1)", listType)
	}
	if r := o.Resource; r != nil {
		found = fmt.Sprintf("(SELECT count(*) FROM %s r WHERE r.%s IN %s)", d.Qualify(r.Name), QuoteIdent(r.Col("identifier")), list)
	}
	session, sessionJoin := "NULL", fmt.Sprintf("\nLEFT JOIN (SELECT 1 AS one) s ON CAST(%s AS %s) IS NULL AND 1 = 0", nth(2), text)
	if s := l.Session; s != nil {
		session = col("s", s, "expiresAt")
		sessionJoin = fmt.Sprintf("\nLEFT JOIN %s s ON s.%s = %s", d.Qualify(s.Name), QuoteIdent(s.Col("id")), nth(2))
	}
	return fmt.Sprintf(`SELECT %s, %s, %s, %s, %s, %s
FROM (SELECT 1 AS one) g
LEFT JOIN %s c ON c.%s = %s%s
LEFT JOIN %s u ON u.%s = %s`,
		col("c", c, "clientId"), col("c", c, "disabled"), col("c", c, "name"), session, found, user,
		d.Qualify(c.Name), QuoteIdent(c.Col("clientId")), nth(1), sessionJoin,
		d.Qualify(l.User.Name), QuoteIdent(l.User.Col("id")), nth(3))
}
