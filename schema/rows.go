package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// Rows is what the decoders need from pgx.Rows and *sql.Rows.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// DecodeAPIKey reads the result of Queries.APIKey, with the allow-list of
// client addresses in the metadata member allowedIPsField (the Config's,
// which built the query; empty when metadata is not read). It returns nil when no
// row matched, and duplicate when more than one did (apikey.key is indexed
// but not unique: such a key must not be trusted).
//
// Values are scanned into interfaces and converted here, so that one decoder
// serves every database and every way Better-Auth's adapters store a type:
// booleans as bool or 0/1, dates as timestamps, ISO-8601 text or epoch
// milliseconds.
func DecodeAPIKey(rows Rows, allowedIPsField string) (k *betterauth.APIKey, duplicate bool, err error) {
	var v [APIKeyColumns]any
	n := 0
	for rows.Next() {
		if n++; n > 1 {
			break
		}
		if err := rows.Scan(ptrs(v[:])...); err != nil {
			return nil, false, fmt.Errorf("api key row: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	switch {
	case n == 0:
		return nil, false, nil
	case n > 1:
		return nil, true, nil
	}
	var d decoder
	k = &betterauth.APIKey{
		ID:        d.text(v[0], "apikey.id"),
		ConfigID:  d.text(v[1], "apikey.configId"),
		Enabled:   v[2] == nil || d.one(v[2], "apikey.enabled"),
		ExpiresAt: d.time(v[3], "apikey.expiresAt"),
	}
	if v[4] != nil {
		k.HasRemaining, k.Remaining = true, d.int(v[4], "apikey.remaining")
	}
	if v[5] != nil {
		k.RefillInterval = time.Duration(d.int(v[5], "apikey.refillInterval")) * time.Millisecond
	}
	if v[6] != nil {
		k.HasRefillAmount, k.RefillAmount = true, d.int(v[6], "apikey.refillAmount")
	}
	k.LastRefillAt = d.time(v[7], "apikey.lastRefillAt")
	k.CreatedAt = d.time(v[8], "apikey.createdAt")
	k.Permissions = permissions(v[9])
	if allowedIPsField != "" {
		k.AllowedIPs = allowedIPs(v[10], allowedIPsField)
	}
	k.User = d.user(v[11 : 11+userColumns])
	rest := v[11+userColumns:]
	k.ReferenceID = d.text(rest[0], "apikey.referenceId")
	k.Org = d.org(rest[1:])
	if d.err != nil {
		return nil, false, d.err
	}
	return k, false, nil
}

// DecodeSession reads the result of Queries.Session; nil when no row matched.
func DecodeSession(rows Rows) (*betterauth.Session, error) {
	var v [SessionColumns]any
	found := false
	if rows.Next() { // session.token is unique
		if err := rows.Scan(ptrs(v[:])...); err != nil {
			return nil, fmt.Errorf("session row: %w", err)
		}
		found = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if !found {
		return nil, nil
	}
	var d decoder
	s := &betterauth.Session{
		ID:        d.text(v[0], "session.id"),
		ExpiresAt: d.time(v[1], "session.expiresAt"),
		User:      d.user(v[2 : 2+userColumns]),
	}
	// The active organization counts only with its member row: a user
	// removed from it keeps it active in their other sessions.
	if m := v[2+userColumns:]; m[0] != nil && m[1] != nil {
		s.Org = &betterauth.Membership{OrgID: d.text(m[0], "session.activeOrganizationId"), Role: d.text(m[2], "member.role")}
	}
	if d.err != nil {
		return nil, d.err
	}
	if s.ExpiresAt.IsZero() {
		return nil, fmt.Errorf("session.expiresAt is NULL")
	}
	return s, nil
}

// DecodeUser reads the result of Queries.User; nil when no row matched.
func DecodeUser(rows Rows) (*betterauth.User, error) {
	var v [userColumns]any
	if !rows.Next() {
		return nil, rows.Err()
	}
	if err := rows.Scan(ptrs(v[:])...); err != nil {
		return nil, fmt.Errorf("user row: %w", err)
	}
	var d decoder
	u := d.user(v[:])
	return u, d.err
}

// DecodeOrganization reads the result of Queries.Organization; nil when no
// row matched.
func DecodeOrganization(rows Rows) (*betterauth.Organization, error) {
	var v [3]any
	if !rows.Next() {
		return nil, rows.Err()
	}
	if err := rows.Scan(ptrs(v[:])...); err != nil {
		return nil, fmt.Errorf("organization row: %w", err)
	}
	var d decoder
	o := d.org(v[:])
	return o, d.err
}

// DecodeMember reads the result of Queries.Member: the role, and whether a
// member row matched.
func DecodeMember(rows Rows) (role string, found bool, err error) {
	var v [1]any
	if !rows.Next() {
		return "", false, rows.Err()
	}
	if err := rows.Scan(ptrs(v[:])...); err != nil {
		return "", false, fmt.Errorf("member row: %w", err)
	}
	var d decoder
	role = d.text(v[0], "member.role")
	return role, d.err == nil, d.err
}

// DecodeOAuth reads the result of Queries.OAuth; nil when no row matched.
// legacy is the layout's (Layout.OAuth.Legacy): the legacy plugins store
// scopes space-separated, the OAuth provider as a JSON array (or, through
// Drizzle and Prisma on PostgreSQL, a text[] column).
func DecodeOAuth(rows Rows, legacy bool) (*betterauth.OAuthToken, error) {
	var v [15 + userColumns]any
	if !rows.Next() { // the stored token is unique
		return nil, rows.Err()
	}
	if err := rows.Scan(ptrs(v[:])...); err != nil {
		return nil, fmt.Errorf("oauth token row: %w", err)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var d decoder
	t := &betterauth.OAuthToken{
		ID:               d.text(v[0], "oauthAccessToken.id"),
		ClientID:         d.text(v[1], "oauthAccessToken.clientId"),
		UserID:           d.text(v[2], "oauthAccessToken.userId"),
		SessionID:        d.text(v[3], "oauthAccessToken.sessionId"),
		ExpiresAt:        d.time(v[4], "oauthAccessToken.expiresAt"),
		Revoked:          v[5] != nil,
		Scopes:           d.strings(v[6], legacy, "oauthAccessToken.scopes"),
		Resources:        d.strings(v[7], false, "oauthAccessToken.resources"),
		Bound:            v[8] != nil && !isJSONNull(v[8]),
		SessionExpiresAt: d.time(v[12], "session.expiresAt"),
		Legacy:           legacy,
	}
	if v[9] != nil {
		t.Client = &betterauth.OAuthClient{ClientID: d.text(v[9], "oauthClient.clientId"), Name: d.text(v[11], "oauthClient.name")}
		t.Client.Disabled = v[10] != nil && d.bool(v[10], "oauthClient.disabled")
	}
	if len(t.Resources) > 0 {
		// Fail closed when the database could not count them.
		seen, missing := int64(-1), int64(0)
		if v[13] != nil {
			seen = d.int(v[13], "resources seen")
		}
		if v[14] != nil {
			missing = d.int(v[14], "resources missing")
		}
		t.ResourceMissing = seen != int64(len(t.Resources)) || missing > 0
	}
	t.User = d.user(v[15:])
	if d.err != nil {
		return nil, d.err
	}
	return t, nil
}

// Grant is what a verified JWT access token names, for Queries.OAuthGrant.
type Grant struct {
	ClientID, SessionID, UserID string
	// Resources are the audiences to check, distinct, at most
	// MaxGrantResources.
	Resources []string
}

// Args returns the query's parameters: "" is NULL, which matches no row
// (and no uuid column refuses it); the resources are a text[] for
// PostgreSQL, JSON text for SQLite (jsonText).
func (g Grant) Args(jsonText bool) []any {
	args := make([]any, 4)
	for i, v := range []string{g.ClientID, g.SessionID, g.UserID} {
		if v != "" {
			args[i] = v
		}
	}
	args[3] = append([]string{}, g.Resources...)
	if jsonText {
		b, _ := json.Marshal(args[3]) // a []string always marshals
		args[3] = string(b)
	}
	return args
}

// PositionalArgs returns the parameters for a Positional dialect, as
// their placeholders appear: the resources (JSON text), then the client,
// the session and the user.
func (g Grant) PositionalArgs() []any {
	a := g.Args(true)
	return []any{a[3], a[0], a[1], a[2]}
}

// DecodeOAuthGrant reads the result of Queries.OAuthGrant into a token
// with what the rows say: the client, the user, the session's expiry and
// whether a resource is missing. The caller fills in what the JWT says.
func DecodeOAuthGrant(rows Rows, g Grant) (*betterauth.OAuthToken, error) {
	var v [5 + userColumns]any
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("oauth grant: no row")
	}
	if err := rows.Scan(ptrs(v[:])...); err != nil {
		return nil, fmt.Errorf("oauth grant row: %w", err)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var d decoder
	t := &betterauth.OAuthToken{ClientID: g.ClientID, UserID: g.UserID, SessionID: g.SessionID, Resources: g.Resources}
	if v[0] != nil {
		t.Client = &betterauth.OAuthClient{ClientID: d.text(v[0], "oauthClient.clientId"), Name: d.text(v[2], "oauthClient.name")}
		t.Client.Disabled = v[1] != nil && d.bool(v[1], "oauthClient.disabled")
	}
	t.SessionExpiresAt = d.time(v[3], "session.expiresAt")
	var found int64
	if v[4] != nil {
		found = d.int(v[4], "resources found")
	}
	t.ResourceMissing = found != int64(len(g.Resources))
	if g.UserID != "" {
		t.User = d.user(v[5:])
	}
	if d.err != nil {
		return nil, d.err
	}
	return t, nil
}

// isJSONNull reports whether a json column holds JSON null, which pgx
// decodes to nil but text columns keep as "null".
func isJSONNull(v any) bool {
	switch x := v.(type) {
	case string:
		return x == "null" || x == ""
	case []byte:
		return string(x) == "null" || len(x) == 0
	}
	return false
}

// strings reads a string-array column: a JSON array (jsonb decoded by
// pgx, or JSON text), a PostgreSQL text[], or, with spaced, a
// space-separated string. NULL is nil.
func (d *decoder) strings(v any, spaced bool, field string) []string {
	switch x := v.(type) {
	case nil:
		return nil
	case []byte:
		return d.strings(string(x), spaced, field)
	case string:
		if spaced {
			return strings.Fields(x)
		}
		var out []string
		if x == "" || x == "null" {
			return nil
		}
		if err := json.Unmarshal([]byte(x), &out); err != nil {
			d.fail(field, v)
		}
		return out
	case []string:
		return x
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				d.fail(field, v)
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	d.fail(field, v)
	return nil
}

const userColumns = 6

// The columns of Queries.APIKey and Queries.Session.
const (
	APIKeyColumns  = 11 + userColumns + 4
	SessionColumns = 2 + userColumns + 3
)

// SplitEither reads the rows of Queries.Either into the rows of the
// APIKey query and of the Session query, for DecodeAPIKey and
// DecodeSession.
func SplitEither(rows Rows) (keys, sessions Rows, err error) {
	var k, s heldRows
	for rows.Next() {
		var v [1 + APIKeyColumns + SessionColumns]any
		if err := rows.Scan(ptrs(v[:])...); err != nil {
			return nil, nil, fmt.Errorf("either row: %w", err)
		}
		var d decoder
		switch d.int(v[0], "kind") {
		case 1:
			k = append(k, v[1:1+APIKeyColumns])
		case 2:
			s = append(s, v[1+APIKeyColumns:])
		}
		if d.err != nil {
			return nil, nil, d.err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	return &k, &s, nil
}

// heldRows are rows already read, as Rows.
type heldRows [][]any

func (h *heldRows) Next() bool { return len(*h) > 0 }
func (h *heldRows) Err() error { return nil }
func (h *heldRows) Scan(dest ...any) error {
	row := (*h)[0]
	*h = (*h)[1:]
	if len(dest) != len(row) {
		return fmt.Errorf("%d columns, %d destinations", len(row), len(dest))
	}
	for i, d := range dest {
		p, ok := d.(*any)
		if !ok {
			return fmt.Errorf("destination %d is %T, not *any", i, d)
		}
		*p = row[i]
	}
	return nil
}

func ptrs(v []any) []any {
	p := make([]any, len(v))
	for i := range v {
		p[i] = &v[i]
	}
	return p
}

// decoder converts scanned values, keeping the first error.
type decoder struct{ err error }

func (d *decoder) fail(field string, v any) {
	if d.err == nil {
		d.err = fmt.Errorf("%s: unexpected value of type %T", field, v)
	}
}

// org reads an organization's id, slug and name; nil when the id is NULL
// (no such row).
func (d *decoder) org(v []any) *betterauth.Organization {
	if v[0] == nil {
		return nil
	}
	return &betterauth.Organization{
		ID:   d.text(v[0], "organization.id"),
		Slug: d.text(v[1], "organization.slug"),
		Name: d.text(v[2], "organization.name"),
	}
}

// user reads the user columns; nil when the id is NULL (no such row).
func (d *decoder) user(v []any) *betterauth.User {
	if v[0] == nil {
		return nil
	}
	u := &betterauth.User{
		ID:    d.text(v[0], "user.id"),
		Email: d.text(v[1], "user.email"),
		Name:  d.text(v[2], "user.name"),
		Role:  d.text(v[3], "user.role"),
	}
	if v[4] != nil {
		u.Banned = d.bool(v[4], "user.banned")
	}
	u.BanExpires = d.time(v[5], "user.banExpires")
	return u
}

// permissions reads the permissions column: text as Better-Auth writes it,
// or, in a json or jsonb column an ORM chose, the value pgx decoded. What
// does not read as permissions grants none, as in Better-Auth.
func permissions(v any) betterauth.Permissions {
	switch x := v.(type) {
	case string:
		return betterauth.ParsePermissions(x)
	case []byte:
		return betterauth.ParsePermissions(string(x))
	case map[string]any:
		b, err := json.Marshal(x)
		if err != nil {
			return nil
		}
		return betterauth.ParsePermissions(string(b))
	}
	return nil
}

// allowedIPs reads a key's allow-list from the metadata column: text as
// Better-Auth writes it, or, in a json or jsonb column, the value pgx
// decoded (an object, or a string holding the text).
func allowedIPs(v any, field string) *betterauth.IPAllowList {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return betterauth.ParseAllowedIPs([]byte(x), field)
	case []byte:
		return betterauth.ParseAllowedIPs(x, field)
	}
	b, err := json.Marshal(v)
	if err != nil {
		// Whether it names a list cannot be told: as malformed.
		return betterauth.ParseAllowedIPs([]byte("{"), field)
	}
	return betterauth.ParseAllowedIPs(b, field)
}

func (d *decoder) text(v any, field string) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return string(x)
	case [16]byte: // PostgreSQL uuid ids (generateId: "uuid")
		return fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16])
	}
	d.fail(field, v)
	return ""
}

func (d *decoder) bool(v any, field string) bool {
	switch x := v.(type) {
	case bool:
		return x
	case int64:
		return x != 0
	case int32:
		return x != 0
	case string:
		if b, err := strconv.ParseBool(x); err == nil {
			return b
		}
	}
	d.fail(field, v)
	return false
}

// one is bool for a flag that grants: an integer is true only when 1, as
// Better-Auth's adapters read tinyint and SQLite booleans (Kysely's and
// Drizzle's value === 1), so that a 2 written by hand disables a key for
// the gateway as for the app.
func (d *decoder) one(v any, field string) bool {
	switch x := v.(type) {
	case int64:
		return x == 1
	case int32:
		return x == 1
	}
	return d.bool(v, field)
}

func (d *decoder) int(v any, field string) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	case int16:
		return int64(x)
	case float64:
		return int64(x)
	case string:
		if n, err := strconv.ParseInt(x, 10, 64); err == nil {
			return n
		}
	}
	d.fail(field, v)
	return 0
}

// time reads a date as any adapter stores it; NULL is the zero time.
func (d *decoder) time(v any, field string) time.Time {
	t, err := Date(v)
	if err != nil {
		d.fail(field, v)
	}
	return t
}

// Date reads a date as Better-Auth's adapters store it: a time the driver
// parsed (PostgreSQL, MySQL), epoch milliseconds (Drizzle on SQLite), or
// ISO-8601 text (Kysely on SQLite); NULL is the zero time.
func Date(v any) (time.Time, error) {
	switch x := v.(type) {
	case nil:
		return time.Time{}, nil
	case time.Time:
		return x, nil
	case int64:
		return time.UnixMilli(x).UTC(), nil
	case float64:
		return time.UnixMilli(int64(x)).UTC(), nil
	case []byte:
		return Date(string(x))
	case string:
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"} {
			if t, err := time.Parse(layout, x); err == nil {
				return t, nil
			}
		}
	}
	return time.Time{}, fmt.Errorf("%v is not a date", v)
}
