// Package schema works out where Better-Auth keeps what the gateway reads:
// table and column names in each of the layouts Better-Auth's adapters
// produce, from what the operator configured and what the database holds.
//
// Explicit configuration always wins; everything left unset is detected from
// the database's catalog on first use. A layout the gateway cannot use is an
// error that names the table and column it expected.
package schema

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Naming is how Better-Auth's field names are spelled as columns.
type Naming string

// Namings.
const (
	// CamelCase is Better-Auth's own migrations (Kysely, `npx auth migrate`)
	// and Prisma: "expiresAt".
	CamelCase Naming = "camel"
	// SnakeCase is the Drizzle generator's default: expires_at.
	SnakeCase Naming = "snake"
)

// Owner is the api-key column that names the key's owner.
type Owner string

// Owners.
const (
	// ReferenceID is @better-auth/api-key 1.5 and later: referenceId, with a
	// configId column.
	ReferenceID Owner = "reference_id"
	// UserID is the api-key plugin built into better-auth 1.3 and 1.4:
	// userId, and no configId.
	UserID Owner = "user_id"
)

// Config is what the operator says about the schema. Zero fields are
// detected.
type Config struct {
	// Naming of columns; detected from the session or apikey table.
	Naming Naming
	// Table names; detected among Better-Auth's model names and their
	// plurals ("user" or "users").
	UserTable, SessionTable, APIKeyTable string
	// UsePlural says the adapters' usePlural is on: only plural names are
	// considered.
	UsePlural bool
	// Owner of API keys; detected from the apikey table's columns.
	Owner Owner
	// Columns overrides single column names, keyed "<model>.<field>" with
	// Better-Auth's model and field names.
	Columns map[string]string
	// AllowedIPsField, when set, names the member of an API key's metadata
	// that holds the key's allow-list of client addresses: the api-key
	// query then reads the metadata column, and the decoder parses it (see
	// betterauth.ParseAllowedIPs). Empty: metadata is not read.
	AllowedIPsField string
}

// Models and the fields the gateway reads; fields marked optional may be
// absent (the admin plugin's, and the api-key columns that differ between
// plugin versions).
var models = []struct {
	name     string
	fields   []string
	optional map[string]bool
}{
	{"user", []string{"id", "email", "name", "role", "banned", "banExpires"},
		map[string]bool{"role": true, "banned": true, "banExpires": true}},
	{"session", []string{"id", "token", "userId", "expiresAt", "activeOrganizationId"},
		map[string]bool{"activeOrganizationId": true}},
	// requestCount, lastRequest and updatedAt are not read: the triggers
	// name them among the usage columns whose updates they ignore.
	{"apikey", []string{"id", "key", "configId", "referenceId", "userId", "enabled", "expiresAt", "remaining",
		"refillInterval", "refillAmount", "lastRefillAt", "createdAt", "permissions", "metadata",
		// Counted only with usage on (see UsageFields).
		"rateLimitEnabled", "rateLimitTimeWindow", "rateLimitMax", "requestCount", "lastRequest", "updatedAt",
		"rateLimitResetAt"},
		map[string]bool{"configId": true, "referenceId": true, "userId": true, "permissions": true, "metadata": true,
			"rateLimitEnabled": true, "rateLimitTimeWindow": true, "rateLimitMax": true, "requestCount": true,
			"lastRequest": true, "updatedAt": true, "rateLimitResetAt": true}},
	// The organization plugin's tables: optional as a whole (see
	// Layout.Org).
	{"organization", []string{"id", "name", "slug"}, nil},
	{"member", []string{"id", "organizationId", "userId", "role"}, nil},
	// OAuth access tokens: @better-auth/oauth-provider's table (token,
	// expiresAt, revoked, sessionId, resources, confirmation) or, under
	// the same name, the legacy mcp and oidcProvider plugins' (accessToken,
	// accessTokenExpiresAt); optional as a whole (see Layout.OAuth).
	{"oauthAccessToken", []string{"id", "token", "accessToken", "clientId", "userId", "sessionId", "expiresAt",
		"accessTokenExpiresAt", "revoked", "scopes", "resources", "confirmation"},
		map[string]bool{"token": true, "accessToken": true, "sessionId": true, "expiresAt": true,
			"accessTokenExpiresAt": true, "revoked": true, "scopes": true, "resources": true, "confirmation": true}},
	{"oauthClient", []string{"clientId", "disabled", "name"}, map[string]bool{"disabled": true, "name": true}},
	{"oauthApplication", []string{"clientId", "disabled", "name"}, map[string]bool{"disabled": true, "name": true}},
	{"oauthResource", []string{"identifier"}, nil},
}

func fieldsOf(model string) ([]string, map[string]bool) {
	for _, m := range models {
		if m.name == model {
			return m.fields, m.optional
		}
	}
	return nil, nil
}

// Validate checks a Config without a database: the stores call it, and
// front ends may, to refuse a configuration when it loads.
func (c Config) Validate() error {
	if c.Naming != "" && c.Naming != CamelCase && c.Naming != SnakeCase {
		return fmt.Errorf("naming must be %q or %q, not %q", CamelCase, SnakeCase, c.Naming)
	}
	if c.Owner != "" && c.Owner != ReferenceID && c.Owner != UserID {
		return fmt.Errorf("api key owner must be %q or %q, not %q", ReferenceID, UserID, c.Owner)
	}
	// Names are quoted in queries, so any text is a name, except that
	// neither database takes a NUL byte in one.
	tables := map[string]string{}
	for _, m := range models {
		name := c.configuredTable(m.name)
		if name == "" {
			continue
		}
		if strings.ContainsRune(name, 0) {
			return fmt.Errorf("%s table: a name cannot hold a NUL byte", m.name)
		}
		if other, ok := tables[name]; ok {
			return fmt.Errorf("%s and %s tables are both %q", other, m.name, name)
		}
		tables[name] = m.name
	}
	for k, v := range c.Columns {
		model, field, _ := strings.Cut(k, ".")
		fs, _ := fieldsOf(model)
		if !contains(fs, field) {
			return fmt.Errorf("unknown column key %q: want <model>.<field> with model user, session, apikey, organization, member, oauthAccessToken, oauthClient, oauthApplication or oauthResource and one of its fields", k)
		}
		if v == "" {
			return fmt.Errorf("column %q: empty name", k)
		}
		if strings.ContainsRune(v, 0) {
			return fmt.Errorf("column %q: a name cannot hold a NUL byte", k)
		}
	}
	return nil
}

// Catalog is what a database holds: the columns of each table, by table
// name, as the database spells them.
type Catalog map[string][]string

// Table is a resolved table: its name and, for each field the gateway
// reads, the column that holds it ("" when the table lacks an optional
// field).
type Table struct {
	Name    string
	Columns map[string]string
}

// Col returns the column holding field.
func (t *Table) Col(field string) string { return t.Columns[field] }

// Has reports whether the table has a column for field.
func (t *Table) Has(field string) bool { return t.Columns[field] != "" }

// Layout is a resolved schema.
type Layout struct {
	Naming Naming
	Owner  Owner
	User   Table
	// Session and APIKey are nil when the database has no such table (an
	// app without the api-key plugin, or with sessions only in secondary
	// storage); lookups of that kind then find nothing.
	Session *Table
	APIKey  *Table
	// Org and Member are the organization plugin's organization and member
	// tables, nil when the database has no usable one (the plugin is not
	// installed); OrgProblem then says why, when a table of that name was
	// found but lacks a column. Organization-owned keys need Org; sessions'
	// roles in their active organization need Member and the session's
	// activeOrganizationId column.
	Org, Member *Table
	OrgProblem  string
	// OAuth is where OAuth access tokens are, nil when the database has
	// no usable token table (no OAuth provider); OAuthProblem then says
	// why, when a table of that name was found but cannot be used.
	OAuth        *OAuthTables
	OAuthProblem string
	// Admin is true when the user table has the admin plugin's columns.
	Admin bool
	// AllowedIPsField is the configuration's (see Config): the api-key
	// query reads metadata only when it is set.
	AllowedIPsField string
}

// OAuthTables are the tables of an OAuth provider.
type OAuthTables struct {
	// Token is oauthAccessToken; Client is oauthClient, or, for Legacy
	// tokens, oauthApplication.
	Token, Client Table
	// Resource is oauthResource, nil when there is none (the legacy
	// plugins').
	Resource *Table
	// Legacy says the tokens are the legacy mcp and oidcProvider plugins':
	// stored in plain text (accessToken), with accessTokenExpiresAt and no
	// revoked, session or resources columns.
	Legacy bool
}

// UsageColumns are the api-key columns Better-Auth writes as it counts a
// key's use (remaining, requestCount, lastRequest, lastRefillAt,
// updatedAt), as this layout names them: an update of these alone changes
// nothing the gateway decides on, except remaining, whose exhaustion the
// cache's TTL bounds (see the README).
func (l *Layout) UsageColumns() []string {
	if l.APIKey == nil {
		return nil
	}
	var out []string
	for _, f := range []string{"remaining", "requestCount", "lastRequest", "lastRefillAt", "updatedAt"} {
		if l.APIKey.Has(f) {
			out = append(out, l.APIKey.Col(f))
		}
	}
	return out
}

// OwnerField returns the apikey field that names the owner.
func (l *Layout) OwnerField() string {
	if l.Owner == UserID {
		return "userId"
	}
	return "referenceId"
}

// Candidates returns the table names to look for in a catalog query.
func (c Config) Candidates() []string {
	var out []string
	for _, m := range models {
		out = append(out, c.tableCandidates(m.name)...)
	}
	return out
}

func (c Config) tableCandidates(model string) []string {
	if n := c.configuredTable(model); n != "" {
		return []string{n}
	}
	names := []string{model}
	if snake := Snake(model); snake != model { // Drizzle's generator: oauth_access_token
		names = append(names, snake)
	}
	var out []string
	for _, n := range names {
		if !c.UsePlural {
			out = append(out, n)
		}
		out = append(out, n+"s")
	}
	return out
}

func (c Config) configuredTable(model string) string {
	switch model {
	case "user":
		return c.UserTable
	case "session":
		return c.SessionTable
	case "apikey":
		return c.APIKeyTable
	}
	return ""
}

// optionalTable maps a table of the organization plugin, which may be
// absent or belong to the app rather than to Better-Auth: one that lacks a
// column is left out (nil) with the reason, rather than making the whole
// layout unusable.
func (c Config) optionalTable(cat Catalog, model string, naming Naming) (*Table, string) {
	for _, name := range c.tableCandidates(model) {
		cols, ok := cat[name]
		if !ok {
			continue
		}
		t, err := c.table(model, name, cols, naming)
		if err != nil {
			return nil, err.Error()
		}
		return &t, ""
	}
	return nil, ""
}

// ErrUnusable matches every reason a catalog cannot be used: Resolve
// returns an *UnusableError, and errors.Is(err, ErrUnusable) holds for it.
var ErrUnusable = errors.New("unusable Better-Auth schema")

// Problem is what makes a schema unusable.
type Problem int

// Problems.
const (
	// NoUserTable: no table holds Better-Auth's users.
	NoUserTable Problem = iota + 1
	// NoCredentialTable: there is neither a session table nor an api-key
	// table, so nothing could be verified.
	NoCredentialTable
	// NoNamedTable: a table the configuration names does not exist.
	NoNamedTable
	// NoColumn: a table lacks a column the gateway reads.
	NoColumn
)

// UnusableError says why the gateway cannot use a database's schema, in
// fields a program can act on; its message names what is missing.
type UnusableError struct {
	Problem Problem
	// Model is Better-Auth's model ("user", "session" or "apikey") whose
	// table is missing (NoNamedTable) or lacks a column (NoColumn).
	Model string
	// Table is the table named in the configuration (NoNamedTable) or the
	// one that lacks a column (NoColumn).
	Table string
	// Field is Better-Auth's field whose column is missing, and Column the
	// name the gateway looked for (NoColumn).
	Field, Column string

	detail string
}

func (e *UnusableError) Error() string {
	if e.detail == "" {
		return ErrUnusable.Error()
	}
	return ErrUnusable.Error() + ": " + e.detail
}

// Is reports whether target is ErrUnusable.
func (e *UnusableError) Is(target error) bool { return target == ErrUnusable }

// OwnerMissing reports whether the missing column is the one naming an API
// key's owner (referenceId or userId, which differ between plugin versions).
func (e *UnusableError) OwnerMissing() bool {
	return e.Problem == NoColumn && e.Model == "apikey" && (e.Field == "referenceId" || e.Field == "userId")
}

func unusable(e UnusableError, format string, args ...any) error {
	e.detail = fmt.Sprintf(format, args...)
	return &e
}

// Resolve works out the layout from the configuration and the catalog.
func (c Config) Resolve(cat Catalog) (*Layout, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	l := &Layout{AllowedIPsField: c.AllowedIPsField}
	find := func(model string) (string, []string) {
		for _, name := range c.tableCandidates(model) {
			if cols, ok := cat[name]; ok {
				return name, cols
			}
		}
		return "", nil
	}
	userName, userCols := find("user")
	if userName == "" {
		return nil, unusable(UnusableError{Problem: NoUserTable}, "no user table (looked for %s)", strings.Join(quoteAll(c.tableCandidates("user")), " or "))
	}
	sessName, sessCols := find("session")
	keyName, keyCols := find("apikey")
	for model, name := range map[string]string{"session": sessName, "apikey": keyName} {
		if name == "" && c.configuredTable(model) != "" {
			return nil, unusable(UnusableError{Problem: NoNamedTable, Model: model, Table: c.configuredTable(model)},
				"no %s table %q", model, c.configuredTable(model))
		}
	}
	if sessName == "" && keyName == "" {
		return nil, unusable(UnusableError{Problem: NoCredentialTable}, "neither a session table (%s) nor an api-key table (%s)",
			strings.Join(quoteAll(c.tableCandidates("session")), " or "), strings.Join(quoteAll(c.tableCandidates("apikey")), " or "))
	}

	l.Naming = c.Naming
	if l.Naming == "" {
		l.Naming = detectNaming(sessCols, keyCols, userCols)
	}
	var err error
	if l.User, err = c.table("user", userName, userCols, l.Naming); err != nil {
		return nil, err
	}
	l.Admin = l.User.Has("banned")
	if sessName != "" {
		t, err := c.table("session", sessName, sessCols, l.Naming)
		if err != nil {
			return nil, err
		}
		l.Session = &t
	}
	if keyName != "" {
		t, err := c.table("apikey", keyName, keyCols, l.Naming)
		if err != nil {
			return nil, err
		}
		l.Owner = c.Owner
		if l.Owner == "" {
			switch {
			case t.Has("referenceId"):
				l.Owner = ReferenceID
			case t.Has("userId"):
				l.Owner = UserID
			}
		}
		owner := "referenceId"
		if l.Owner == UserID {
			owner = "userId"
		}
		if !t.Has(owner) {
			col := c.column("apikey", owner, l.Naming)
			return nil, unusable(UnusableError{Problem: NoColumn, Model: "apikey", Table: keyName, Field: owner, Column: col},
				"table %q has no column %q (the api-key owner; @better-auth/api-key 1.5+ has %q, better-auth 1.3/1.4 %q)",
				keyName, col, c.column("apikey", "referenceId", l.Naming), c.column("apikey", "userId", l.Naming))
		}
		l.APIKey = &t
	}
	var why string
	l.Org, l.OrgProblem = c.optionalTable(cat, "organization", l.Naming)
	if l.Member, why = c.optionalTable(cat, "member", l.Naming); l.OrgProblem == "" {
		l.OrgProblem = why
	}
	l.OAuth, l.OAuthProblem = c.oauthTables(cat, l.Naming)
	return l, nil
}

// oauthTables finds an OAuth provider's tables, current or legacy, or says
// why the token table found cannot be used.
func (c Config) oauthTables(cat Catalog, naming Naming) (*OAuthTables, string) {
	token, why := c.optionalTable(cat, "oauthAccessToken", naming)
	if token == nil {
		return nil, why
	}
	o := &OAuthTables{Token: *token}
	clientModel := "oauthClient"
	switch {
	case token.Has("token") && token.Has("expiresAt"):
	case token.Has("accessToken") && token.Has("accessTokenExpiresAt"):
		o.Legacy, clientModel = true, "oauthApplication"
	default:
		return nil, fmt.Sprintf("table %q has neither %q and %q (@better-auth/oauth-provider) nor %q and %q (the legacy mcp and oidcProvider plugins)",
			token.Name, c.column("oauthAccessToken", "token", naming), c.column("oauthAccessToken", "expiresAt", naming),
			c.column("oauthAccessToken", "accessToken", naming), c.column("oauthAccessToken", "accessTokenExpiresAt", naming))
	}
	client, why := c.optionalTable(cat, clientModel, naming)
	if client == nil {
		if why == "" {
			why = fmt.Sprintf("no %s table beside %q", clientModel, token.Name)
		}
		return nil, why
	}
	o.Client = *client
	if !o.Legacy {
		o.Resource, _ = c.optionalTable(cat, "oauthResource", naming)
	}
	return o, ""
}

// table maps a model's fields to the columns of a found table.
func (c Config) table(model, name string, cols []string, naming Naming) (Table, error) {
	fields, optional := fieldsOf(model)
	t := Table{Name: name, Columns: map[string]string{}}
	for _, f := range fields {
		col := c.column(model, f, naming)
		if contains(cols, col) {
			t.Columns[f] = col
			continue
		}
		if _, overridden := c.Columns[model+"."+f]; overridden || !optional[f] {
			return Table{}, unusable(UnusableError{Problem: NoColumn, Model: model, Table: name, Field: f, Column: col},
				"table %q has no column %q (Better-Auth's %s.%s)", name, col, model, f)
		}
	}
	return t, nil
}

// column returns the column name for a field under a naming.
func (c Config) column(model, field string, naming Naming) string {
	if v := c.Columns[model+"."+field]; v != "" {
		return v
	}
	if naming == SnakeCase {
		return Snake(field)
	}
	return field
}

// detectNaming looks for a two-word field that every layout has.
func detectNaming(tables ...[]string) Naming {
	for _, cols := range tables {
		for _, col := range cols {
			switch col {
			case "expires_at", "created_at", "user_id", "reference_id", "email_verified":
				return SnakeCase
			case "expiresAt", "createdAt", "userId", "referenceId", "emailVerified":
				return CamelCase
			}
		}
	}
	return CamelCase
}

// Snake converts a camelCase field name as Drizzle's generator does.
func Snake(s string) string {
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

// Describe summarises a layout in one line, for logs and the doctor.
func (l *Layout) Describe() string {
	parts := []string{fmt.Sprintf("naming %s", l.Naming), fmt.Sprintf("user table %q", l.User.Name)}
	if l.Session != nil {
		parts = append(parts, fmt.Sprintf("session table %q", l.Session.Name))
	} else {
		parts = append(parts, "no session table")
	}
	if l.APIKey != nil {
		v := "@better-auth/api-key 1.5+"
		if l.Owner == UserID {
			v = "better-auth 1.3/1.4 api-key plugin"
		}
		parts = append(parts, fmt.Sprintf("api-key table %q (%s)", l.APIKey.Name, v))
	} else {
		parts = append(parts, "no api-key table")
	}
	if l.Admin {
		parts = append(parts, "admin plugin")
	} else {
		parts = append(parts, "no admin plugin")
	}
	switch {
	case l.Org != nil && l.Member != nil:
		parts = append(parts, "organization plugin")
	case l.Org != nil:
		parts = append(parts, "organization table without member table")
	default:
		parts = append(parts, "no organization plugin")
	}
	switch {
	case l.OAuth != nil && l.OAuth.Legacy:
		parts = append(parts, fmt.Sprintf("legacy OAuth token table %q", l.OAuth.Token.Name))
	case l.OAuth != nil:
		parts = append(parts, fmt.Sprintf("OAuth provider token table %q", l.OAuth.Token.Name))
	default:
		parts = append(parts, "no OAuth provider")
	}
	return strings.Join(parts, ", ")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = fmt.Sprintf("%q", n)
	}
	sort.Strings(out)
	return out
}

// QuoteIdent quotes an SQL identifier for PostgreSQL and SQLite alike, as
// pgx.Identifier.Sanitize does: quotes doubled, NUL bytes dropped.
func QuoteIdent(s string) string {
	return `"` + strings.ReplaceAll(strings.ReplaceAll(s, "\x00", ""), `"`, `""`) + `"`
}
