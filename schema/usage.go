package schema

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/usage"
)

// UsageFields are the apikey fields that counting uses reads, in the order
// UsageSQL.Select returns them. Every one is needed.
var UsageFields = []string{
	"remaining", "refillInterval", "refillAmount", "lastRefillAt", "createdAt",
	"rateLimitEnabled", "rateLimitTimeWindow", "rateLimitMax", "requestCount", "lastRequest",
}

// UsageWritesTable records, per API key, the last write of uses counted in
// Redis that reached its row (usage.Flush.Token), in a schema of the
// gateway's own, apart from the app's tables and its migrations.
const UsageWritesTable = `"caddy_betterauth"."usage_writes"`

// UsageWritesDDL creates UsageWritesTable.
const UsageWritesDDL = `CREATE SCHEMA IF NOT EXISTS "caddy_betterauth";
CREATE TABLE IF NOT EXISTS ` + UsageWritesTable + ` (key_id text PRIMARY KEY, token bigint NOT NULL)`

// UsageWrites are the fields a use may write, in the order of the bits of
// usage.Columns.
var UsageWrites = []string{"remaining", "lastRefillAt", "requestCount", "lastRequest", "updatedAt"}

// UsageSQL reads and writes the usage columns of one apikey row by id.
type UsageSQL struct {
	// Select reads UsageFields of the row whose id is the one parameter,
	// locking it where the database can (FOR UPDATE on PostgreSQL and
	// MySQL).
	Select string
	// Claim counts one use in one statement (PostgreSQL only): it locks
	// the row, decides as usage.Rules.Plan does, writes, and returns the
	// row as it was (UsageFields, dates as epoch milliseconds). Parameters:
	// id, now (epoch ms), the configuration's rate limit off (bool), the
	// release family (0, 1, 2), then now as a date three times (for
	// lastRefillAt, lastRequest and updatedAt, each typed as its column).
	Claim string
	// Flush writes what uses counted elsewhere changed (usage.Flush), once:
	// parameters refill (bool), refilled from, remaining after the refill,
	// decrements, refill time, requestCount, lastRequest, updatedAt, id,
	// token; it records the token in UsageWritesTable and writes only if
	// it is above the one recorded. ReadApplied reads
	// UsageFields without a lock, and then that token (NULL for none). PostgreSQL only.
	Flush, ReadApplied string
	// updates, by the set of UsageWrites they write (bit i for field i):
	// the values in UsageWrites order, then the id.
	updates [1 << 5]string
}

// Update returns the statement that writes the fields in set (bit i for
// UsageWrites[i]), whose parameters are one value per field written, in
// order, and then the id.
func (u *UsageSQL) Update(set uint8) string { return u.updates[set&(1<<len(UsageWrites)-1)] }

// BuildUsage returns the usage statements of a layout, or an error naming
// what the api-key table lacks for counting.
func (l *Layout) BuildUsage(d Dialect, lock bool) (*UsageSQL, error) {
	k := l.APIKey
	if k == nil {
		return nil, &UnusableError{Problem: NoColumn, Model: "apikey", detail: "usage counting needs the api-key table, and there is none"}
	}
	for _, f := range append(UsageFields[:len(UsageFields):len(UsageFields)], "updatedAt") { // updatedAt: written
		if !k.Has(f) {
			return nil, &UnusableError{Problem: NoColumn, Model: "apikey", Table: k.Name, Field: f, Column: f,
				detail: fmt.Sprintf("usage counting needs the %s.%s column, which is missing", k.Name, f)}
		}
	}
	if k.Has("rateLimitResetAt") {
		return nil, &UnusableError{Problem: NoColumn, Model: "apikey", Table: k.Name, Field: "rateLimitResetAt",
			detail: fmt.Sprintf("%s has a rateLimitResetAt column: it comes from a Better-Auth release whose fixed-window rate limit the gateway does not implement yet; leave usage off", k.Name)}
	}
	cols := make([]string, len(UsageFields))
	for i, f := range UsageFields {
		cols[i] = QuoteIdent(k.Col(f))
	}
	// "?" placeholders (SQLite, MySQL) or numbered ones (PostgreSQL). The
	// id is compared through the dialect's own placeholder: MySQL's
	// compares byte for byte; written values are plain parameters.
	positional := strings.Contains(d.Param, "?")
	param := func(n int) string {
		if positional {
			return "?"
		}
		return "$" + strconv.Itoa(n)
	}
	idParam := func(n int) string {
		if positional {
			return d.Param
		}
		return "$" + strconv.Itoa(n)
	}
	u := &UsageSQL{Select: fmt.Sprintf("SELECT %s FROM %s WHERE %s = %s",
		strings.Join(cols, ", "), d.Qualify(k.Name), QuoteIdent(k.Col("id")), idParam(1))}
	if lock {
		u.Select += " FOR UPDATE"
	}
	if !positional {
		u.Claim = claimSQL(d.Qualify(k.Name), func(f string) string { return QuoteIdent(k.Col(f)) })
	}
	if !positional {
		c := func(f string) string { return QuoteIdent(k.Col(f)) }
		// Compared at the millisecond: a lastRefillAt another writer stored
		// with microseconds is the one the gateway read (and counted from).
		cas := fmt.Sprintf("$1::boolean AND date_trunc('milliseconds', %s) IS NOT DISTINCT FROM $2", c("lastRefillAt"))
		u.Flush = fmt.Sprintf(`WITH t AS (
	INSERT INTO `+UsageWritesTable+` AS w (key_id, token) VALUES ($9, $10)
	ON CONFLICT (key_id) DO UPDATE SET token = EXCLUDED.token WHERE w.token < EXCLUDED.token
	RETURNING 1
)
UPDATE %s SET
	%s = CASE WHEN %s THEN GREATEST($3::bigint - $4::bigint, 0)
		WHEN %s IS NULL THEN NULL
		ELSE GREATEST(%s - $4::bigint - CASE WHEN $1::boolean THEN 1 ELSE 0 END, 0) END,
	%s = CASE WHEN %s THEN $5 ELSE %s END,
	%s = COALESCE($6, %s),
	%s = COALESCE($7, %s),
	%s = $8
WHERE %s = $9 AND EXISTS (SELECT 1 FROM t)
RETURNING %s`, d.Qualify(k.Name),
			c("remaining"), cas, c("remaining"), c("remaining"),
			c("lastRefillAt"), cas, c("lastRefillAt"),
			c("requestCount"), c("requestCount"),
			c("lastRequest"), c("lastRequest"),
			c("updatedAt"),
			c("id"), c("lastRefillAt"))
		u.ReadApplied = fmt.Sprintf("SELECT %s, (SELECT w.token FROM %s w WHERE w.key_id = $1) FROM %s WHERE %s = $1",
			strings.Join(cols, ", "), UsageWritesTable, d.Qualify(k.Name), QuoteIdent(k.Col("id")))
	}
	for set := 1; set < len(u.updates); set++ {
		var assign []string
		for i, f := range UsageWrites {
			if set&(1<<i) != 0 {
				assign = append(assign, QuoteIdent(k.Col(f))+" = "+param(len(assign)+1))
			}
		}
		u.updates[set] = fmt.Sprintf("UPDATE %s SET %s WHERE %s = %s",
			d.Qualify(k.Name), strings.Join(assign, ", "), QuoteIdent(k.Col("id")), idParam(len(assign)+1))
	}
	return u, nil
}

// DecodeUsage reads the values of a UsageSQL.Select row (scanned into
// interfaces, as the other decoders do).
func DecodeUsage(v []any) (usage.Row, error) {
	if len(v) != len(UsageFields) {
		return usage.Row{}, fmt.Errorf("usage row: %d values, want %d", len(v), len(UsageFields))
	}
	var d decoder
	var r usage.Row
	if v[0] != nil {
		r.HasRemaining, r.Remaining = true, d.int(v[0], "apikey.remaining")
	}
	if v[1] != nil {
		r.RefillInterval = d.int(v[1], "apikey.refillInterval")
	}
	if v[2] != nil {
		r.HasRefillAmount, r.RefillAmount = true, d.int(v[2], "apikey.refillAmount")
	}
	r.LastRefillAt = d.time(v[3], "apikey.lastRefillAt")
	r.CreatedAt = d.time(v[4], "apikey.createdAt")
	r.RateLimitOff = v[5] != nil && !d.bool(v[5], "apikey.rateLimitEnabled")
	if v[6] != nil {
		r.HasWindow, r.Window = true, d.int(v[6], "apikey.rateLimitTimeWindow")
	}
	if v[7] != nil {
		r.HasMax, r.Max = true, d.int(v[7], "apikey.rateLimitMax")
	}
	if v[8] != nil {
		r.RequestCount = d.int(v[8], "apikey.requestCount")
	}
	r.LastRequest = d.time(v[9], "apikey.lastRequest")
	if d.err == nil && r.CreatedAt.IsZero() {
		d.err = fmt.Errorf("apikey.createdAt is NULL")
	}
	return r, d.err
}

// CreatedAtIndex is where createdAt is among UsageFields: its stored form
// tells how the row's dates are written (DateFormOf).
const CreatedAtIndex = 4

// DateForm is how a SQLite table stores dates.
type DateForm uint8

// Date forms.
const (
	// DateISO is ISO-8601 text with milliseconds and Z, as Better-Auth's
	// Kysely adapter writes (toISOString()).
	DateISO DateForm = iota
	// DateMillis is epoch milliseconds, as Drizzle's SQLite schema stores
	// them.
	DateMillis
)

// DateFormOf tells a SQLite date's form from a stored value.
func DateFormOf(v any) DateForm {
	switch v.(type) {
	case int64, float64:
		return DateMillis
	}
	return DateISO
}

// Value returns t as the form stores it (at millisecond precision, UTC).
func (f DateForm) Value(t time.Time) any {
	if f == DateMillis {
		return t.UnixMilli()
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// claimSQL is usage.Rules.Plan as one PostgreSQL statement. The row is
// locked (FOR UPDATE, in a CTE kept apart from the rest), every decision is
// taken from the locked row, and the UPDATE runs only when something is to
// be written; the statement returns the row as it was, from which the
// caller's Plan (the same rules, the same now) tells the answer. The
// transaction is marked as the gateway's own write for the revocation
// triggers. The Go rules stay the reference: the differential tests run
// real Better-Auth against this statement.
func claimSQL(table string, c func(string) string) string {
	ms := func(col string) string { return "(floor(extract(epoch FROM k." + col + ") * 1000))::bigint" }
	return fmt.Sprintf(`WITH o AS MATERIALIZED (
	SELECT k.%[2]s AS id, k.%[3]s AS r, k.%[4]s AS ri, k.%[5]s AS ra, %[6]s AS lra, %[7]s AS ca,
		k.%[8]s AS rle, k.%[9]s AS w, k.%[10]s AS m, COALESCE(k.%[11]s, 0) AS rc, %[12]s AS lr,
		set_config('caddy_betterauth.writer', 'usage', true) AS marked
	FROM %[1]s k WHERE k.%[2]s = $1 FOR UPDATE
), q AS MATERIALIZED (
	SELECT o.*, CASE
		WHEN r IS NULL THEN 'n'
		WHEN r = 0 AND ra IS NULL THEN 'x'
		WHEN COALESCE(ri, 0) <> 0 AND COALESCE(ra, 0) <> 0 AND $2::bigint - COALESCE(lra, ca) > ri THEN 'f'
		WHEN r > 0 THEN 'd'
		ELSE 'x' END AS qs
	FROM o
), z AS MATERIALIZED (
	SELECT q.*, CASE
		WHEN qs = 'x' THEN 'x'
		WHEN $3::boolean OR rle = false THEN 's'
		WHEN w IS NULL OR m IS NULL THEN 'n'
		WHEN lr IS NULL OR $2::bigint - lr > w THEN 'r'
		WHEN rc >= m THEN 'l'
		ELSE 'i' END AS rs
	FROM q
), v AS MATERIALIZED (
	SELECT z.*,
		qs IN ('f', 'd') AND (rs <> 'l' OR $4::int = 0) AS wq,
		rs IN ('s', 'r', 'i') AS wr
	FROM z
), u AS (
	UPDATE %[1]s k SET
		%[3]s = CASE WHEN v.wq THEN (CASE WHEN v.qs = 'f' THEN v.ra - 1 ELSE v.r - 1 END) ELSE k.%[3]s END,
		%[13]s = CASE WHEN v.wq AND v.qs = 'f' THEN $5 ELSE k.%[13]s END,
		%[11]s = CASE v.rs WHEN 'r' THEN 1 WHEN 'i' THEN v.rc + 1 ELSE k.%[11]s END,
		%[14]s = CASE WHEN v.wr THEN $6 ELSE k.%[14]s END,
		%[15]s = CASE WHEN v.wr OR v.rs = 'n' THEN $7 ELSE k.%[15]s END
	FROM v
	WHERE k.%[2]s = v.id AND (v.wq OR v.wr OR v.rs = 'n')
	RETURNING k.%[2]s
)
SELECT r, ri, ra, lra, ca, rle, w, m, rc, lr, (SELECT count(*) FROM u) FROM v`,
		table, c("id"), c("remaining"), c("refillInterval"), c("refillAmount"), ms(c("lastRefillAt")), ms(c("createdAt")),
		c("rateLimitEnabled"), c("rateLimitTimeWindow"), c("rateLimitMax"), c("requestCount"), ms(c("lastRequest")),
		c("lastRefillAt"), c("lastRequest"), c("updatedAt"))
}
