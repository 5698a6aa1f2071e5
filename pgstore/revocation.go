package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/internal/throttle"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
)

// Channel is the NOTIFY channel the triggers use.
const Channel = "caddy_betterauth"

// notifyFunction is installed once per schema. It sends, on every update or
// delete of a watched row (and insert, for memberships), just enough to
// find the cache entries: the kind of row, its id and its user's id. Never
// a key, a key hash or a token. Its arguments: the kind, the id column,
// the user column (” for none) and, optionally, a text[] of columns
// whose updates alone are not worth a notification (the api-key plugin's
// usage counters, written on every verify), then the remaining,
// lastRefillAt and refillAmount columns: an update of the counters alone
// that sets remaining or lastRefillAt otherwise than a verify does (one
// less; or a refill, which moves lastRefillAt and sets remaining to
// refillAmount − 1) is the app's updateApiKey, a dashboard granting or
// cutting quota: it is sent as kind "<kind>_usage", for gateways that
// count uses in Redis, unless the gateways made it themselves (they mark
// their transactions with the caddy_betterauth.writer setting).
const notifyFunction = `CREATE OR REPLACE FUNCTION %[1]s() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
	r jsonb := CASE WHEN TG_OP = 'INSERT' THEN to_jsonb(NEW) ELSE to_jsonb(OLD) END;
	n jsonb;
BEGIN
	IF TG_OP = 'UPDATE' AND TG_NARGS > 3 THEN
		n := to_jsonb(NEW);
		IF (n - TG_ARGV[3]::text[]) = (r - TG_ARGV[3]::text[]) THEN
			IF TG_NARGS > 6 AND current_setting('caddy_betterauth.writer', true) IS DISTINCT FROM 'usage'
				AND ((n -> TG_ARGV[4]) IS DISTINCT FROM (r -> TG_ARGV[4]) OR (n -> TG_ARGV[5]) IS DISTINCT FROM (r -> TG_ARGV[5]))
				AND NOT COALESCE(CASE WHEN (n -> TG_ARGV[5]) IS NOT DISTINCT FROM (r -> TG_ARGV[5])
					THEN (n ->> TG_ARGV[4])::numeric = (r ->> TG_ARGV[4])::numeric - 1
					ELSE (n ->> TG_ARGV[4])::numeric = (n ->> TG_ARGV[6])::numeric - 1 END, false) THEN
				PERFORM pg_notify('` + Channel + `', json_build_object('k', TG_ARGV[0] || '_usage', 'id', r ->> TG_ARGV[1])::text);
			END IF;
			RETURN NULL;
		END IF;
	END IF;
	PERFORM pg_notify('` + Channel + `', json_build_object(
		'k', TG_ARGV[0],
		'id', r ->> TG_ARGV[1],
		'u', CASE WHEN TG_ARGV[2] = '' THEN NULL ELSE r ->> TG_ARGV[2] END
	)::text);
	RETURN NULL;
END
$fn$`

// Triggers returns the SQL that installs (and that removes) the revocation
// triggers for a layout. Installing is idempotent; both are one transaction
// each when run with Exec.
func Triggers(l *schema.Layout, pgSchema string) (install, uninstall string) {
	qualify := func(name string) string {
		if pgSchema != "" {
			return pgx.Identifier{pgSchema, name}.Sanitize()
		}
		return pgx.Identifier{name}.Sanitize()
	}
	fn := qualify("caddy_betterauth_notify")
	lit := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	var in, un []string
	in = append(in, fmt.Sprintf(notifyFunction, fn))
	add := func(kind string, t *schema.Table, idField, userField, events string, extra ...string) {
		if t == nil {
			return
		}
		trigger := pgx.Identifier{"caddy_betterauth_" + kind}.Sanitize()
		user := ""
		if userField != "" {
			user = t.Col(userField)
		}
		args := []string{lit(kind), lit(t.Col(idField)), lit(user)}
		for _, e := range extra {
			args = append(args, lit(e))
		}
		un = append(un, fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", trigger, qualify(t.Name)))
		in = append(in, un[len(un)-1], fmt.Sprintf(
			"CREATE TRIGGER %s AFTER %s ON %s FOR EACH ROW EXECUTE FUNCTION %s(%s)",
			trigger, events, qualify(t.Name), fn, strings.Join(args, ", ")))
	}
	// Better-Auth writes a key's usage columns on every verify: updates of
	// those alone would purge every gateway's cache on every request.
	var usageArgs []string
	if k := l.APIKey; k != nil && k.Has("remaining") && k.Has("lastRefillAt") && k.Has("refillAmount") {
		usageArgs = []string{textArray(l.UsageColumns()), k.Col("remaining"), k.Col("lastRefillAt"), k.Col("refillAmount")}
	} else {
		usageArgs = []string{textArray(l.UsageColumns())}
	}
	add("apikey", l.APIKey, "id", l.OwnerField(), "UPDATE OR DELETE", usageArgs...)
	add("session", l.Session, "id", "userId", "UPDATE OR DELETE")
	add("user", &l.User, "id", "", "UPDATE OR DELETE")
	// An organization's keys name it by id; its name and slug are sent.
	if o := l.Org; o != nil {
		add("organization", o, "id", "", fmt.Sprintf("UPDATE OF %s, %s OR DELETE", pgx.Identifier{o.Col("name")}.Sanitize(),
			pgx.Identifier{o.Col("slug")}.Sanitize()))
	}
	// A membership added, changed or removed changes its user's sessions'
	// role in their active organization.
	if m := l.Member; m != nil {
		add("member", m, "id", "userId", fmt.Sprintf("INSERT OR UPDATE OF %s OR DELETE", pgx.Identifier{m.Col("role")}.Sanitize()))
	}
	// OAuth tokens: one revoked or deleted (revocation deletes it), a
	// client changed (disabled) or gone, by client id, and a resource
	// gone, which may end any token.
	if o := l.OAuth; o != nil {
		add("oauth_token", &o.Token, "id", "userId", "UPDATE OR DELETE")
		add("oauth_client", &o.Client, "clientId", "", "UPDATE OR DELETE")
		add("oauth_resource", o.Resource, "identifier", "", "UPDATE OR DELETE")
	}
	un = append(un, "DROP FUNCTION IF EXISTS "+fn+"()")
	return strings.Join(in, ";\n") + ";\n", strings.Join(un, ";\n") + ";\n"
}

// textArray writes names as a PostgreSQL text[] literal: each element
// double-quoted, with quotes and backslashes escaped.
func textArray(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(n) + `"`
	}
	return "{" + strings.Join(q, ",") + "}"
}

// Invalidation is one notification: a row that changed or went away.
type Invalidation struct {
	Kind   string `json:"k"` // apikey, session, user, organization, member, oauth_token, oauth_client or oauth_resource
	ID     string `json:"id"`
	UserID string `json:"u"`
}

// ListenOptions configure Listen.
type ListenOptions struct {
	// DSN of the database; the listener holds one connection of its own.
	DSN string
	// OnInvalidate is called for each notification.
	OnInvalidate func(Invalidation)
	// OnReset is called after each (re)connection, before notifications
	// flow: whatever changed while no one listened is unknown, so everything
	// cached must go.
	OnReset func()
	Logger  *zap.Logger
	// Backoff bounds: the first and the longest wait between reconnections.
	MinBackoff, MaxBackoff time.Duration
	// After PingEvery without a notification the connection is pinged, and
	// dropped (then reconnected, and the cache purged) unless the server
	// answers within PingTimeout. An idle connection can die without a
	// word: a NAT or load balancer that forgets the flow, a server gone
	// without a reset, a proxy between that keeps the gateway's side open.
	// Revocations would then be lost, unnoticed, until TCP keepalives (if
	// they reach the server at all) or forever. Defaults: DefaultPingEvery
	// and DefaultPingTimeout.
	PingEvery, PingTimeout time.Duration
}

// The listener's liveness check: the longest a dead connection can go
// unnoticed is about their sum. The timeout is long enough that a merely
// slow server does not cost a reconnection and a purged cache.
const (
	DefaultPingEvery   = 30 * time.Second
	DefaultPingTimeout = 15 * time.Second
)

// Listen holds a LISTEN on Channel until ctx ends, reconnecting with
// exponential backoff.
func Listen(ctx context.Context, opts ListenOptions) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	if opts.PingEvery <= 0 {
		opts.PingEvery = DefaultPingEvery
	}
	if opts.PingTimeout <= 0 {
		opts.PingTimeout = DefaultPingTimeout
	}
	wait := opts.MinBackoff
	for ctx.Err() == nil {
		connected, err := listenOnce(ctx, opts)
		if ctx.Err() != nil {
			return
		}
		if connected {
			wait = opts.MinBackoff
		}
		opts.Logger.Warn("revocation listener disconnected; reconnecting", zap.Error(err), zap.Duration("in", wait))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, opts.MaxBackoff)
	}
}

func listenOnce(ctx context.Context, opts ListenOptions) (connected bool, err error) {
	cfg, err := ConnConfig(opts.DSN)
	if err != nil {
		return false, errors.New("not a PostgreSQL URL")
	}
	cfg.RuntimeParams["application_name"] = "caddy-better-auth revocations"
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(dialCtx, cfg)
	cancel()
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return false, err
	}
	if opts.OnReset != nil {
		opts.OnReset()
	}
	opts.Logger.Info("listening for revocations", zap.String("channel", Channel))
	var malformed throttle.Log
	for {
		wait, cancel := context.WithTimeout(ctx, opts.PingEvery)
		n, err := conn.WaitForNotification(wait)
		cancel()
		if err != nil && ctx.Err() == nil && pgconn.Timeout(err) {
			// Quiet for a while: make sure the server is still there.
			ping, cancel := context.WithTimeout(ctx, opts.PingTimeout)
			err = conn.Ping(ping)
			cancel()
			if err != nil {
				return true, fmt.Errorf("the connection did not answer a ping within %v: %w", opts.PingTimeout, err)
			}
			continue
		}
		if err != nil {
			return true, err
		}
		inv, ok := parseInvalidation(n.Payload)
		if !ok {
			// Any role that can connect can NOTIFY this channel: say so,
			// but not once per notification.
			if total, ok := malformed.Allow(); ok {
				opts.Logger.Warn("ignoring malformed revocation notifications (any database role can send them)",
					zap.Uint64("total", total), zap.Uint32("sender_pid", n.PID))
			}
			continue
		}
		if opts.OnInvalidate != nil {
			opts.OnInvalidate(inv)
		}
	}
}

// ConnConfig parses the gateway's database URL for a connection of its
// own, outside the pool: without the pgxpool settings the URL may carry
// (pool_max_conns and the like), which pgx alone would send to the server
// as run-time parameters, and the server refuse.
func ConnConfig(dsn string) (*pgx.ConnConfig, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	return pc.ConnConfig, nil
}

// parseInvalidation reads a notification's payload, as the triggers write
// it: {"k": kind, "id": row id, "u": user id}. Anyone who can connect can
// send one, so anything else is refused: not JSON, or without a kind or an
// id.
func parseInvalidation(payload string) (Invalidation, bool) {
	var inv Invalidation
	if err := json.Unmarshal([]byte(payload), &inv); err != nil || inv.Kind == "" || inv.ID == "" {
		return Invalidation{}, false
	}
	return inv, true
}
