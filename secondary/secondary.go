// Package secondary reads what a Better-Auth app keeps in its secondary
// storage (Redis, as @better-auth/redis-storage writes it): sessions, when
// the app configures secondaryStorage, and API keys, with the api-key
// plugin's storage: "secondary-storage". SQL stays the source of users, and
// of whatever the app keeps there.
//
// Layout (before the storage's key prefix, "better-auth:" by default):
//
//	<token>                          {"session": {...}, "user": {...}}
//	revoked-sessions-before-<userId>  epoch milliseconds (Better-Auth 1.7.16+)
//	api-key:<stored hash>            the api-key record as JSON
//
// Unlike the gateway's own Redis cache, this Redis is a source of truth:
// when it cannot answer, the lookup fails (503).
package secondary

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// Mode is where a kind of credential is read.
type Mode string

// Modes, named after Better-Auth's options.
const (
	// Database reads SQL only (Better-Auth's default for API keys).
	Database Mode = "database"
	// Storage reads secondary storage only: sessions with secondaryStorage
	// and no storeSessionInDatabase (or with preserveSessionInDatabase,
	// which makes storage authoritative); API keys with storage:
	// "secondary-storage".
	Storage Mode = "storage"
	// StorageThenDatabase reads storage, then SQL when storage has nothing:
	// sessions with storeSessionInDatabase; API keys with
	// fallbackToDatabase.
	StorageThenDatabase Mode = "storage_then_database"
)

// DefaultPrefix is @better-auth/redis-storage's key prefix.
const DefaultPrefix = "better-auth:"

// SQL is what the store needs from the database.
type SQL interface {
	betterauth.Store
	// Owner reads the user and the organization (organization plugin)
	// whose id is id; either or both nil when there is none.
	Owner(ctx context.Context, id string) (*betterauth.User, *betterauth.Organization, error)
	// Member reads the role of user userID in organization orgID, and
	// whether they are a member (never without the organization plugin).
	Member(ctx context.Context, orgID, userID string) (role string, found bool, err error)
}

// Options configure a Store.
type Options struct {
	// Prefix of every key. Default: DefaultPrefix. A hand-written
	// secondaryStorage usually has none: set it to "".
	Prefix *string
	// Sessions is where sessions are read. Default: Storage (an app
	// configures secondaryStorage for its sessions first of all).
	Sessions Mode
	// APIKeys is where API keys are read. Default: Database (the api-key
	// plugin's default storage).
	APIKeys Mode
	// PlainKeys matches the api-key plugin's disableKeyHashing.
	PlainKeys bool
	// AllowedIPsField, when set, names the member of an API key's metadata
	// holding its allow-list of client addresses (see
	// betterauth.ParseAllowedIPs); keys read from SQL get theirs from the
	// SQL store. Empty: metadata is not read.
	AllowedIPsField string
}

// Defaults for Options.
const (
	DefaultSessions = Storage
	DefaultAPIKeys  = Database
)

// Validate reports what New would refuse: a mode other than Database,
// Storage and StorageThenDatabase (or empty, for the default).
func (o Options) Validate() error {
	for _, m := range []struct {
		name string
		mode Mode
	}{{"sessions", o.Sessions}, {"api_keys", o.APIKeys}} {
		switch m.mode {
		case "", Database, Storage, StorageThenDatabase:
		default:
			return fmt.Errorf("%s must be %q, %q or %q, not %q", m.name, Storage, StorageThenDatabase, Database, m.mode)
		}
	}
	return nil
}

// WithDefaults returns o with what is unset filled in.
func (o Options) WithDefaults() Options {
	if o.Prefix == nil {
		p := DefaultPrefix
		o.Prefix = &p
	}
	if o.Sessions == "" {
		o.Sessions = DefaultSessions
	}
	if o.APIKeys == "" {
		o.APIKeys = DefaultAPIKeys
	}
	return o
}

// Store reads secondary storage and SQL as the options say.
type Store struct {
	redis    redis.UniversalClient
	sql      SQL
	prefix   string
	sessions Mode
	keys     Mode
	plain    bool
	ipField  string
}

// New returns a Store, with defaults for what opts leave unset. It does no
// I/O.
func New(client redis.UniversalClient, sql SQL, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.WithDefaults()
	return &Store{redis: client, sql: sql, prefix: *opts.Prefix, sessions: opts.Sessions, keys: opts.APIKeys, plain: opts.PlainKeys,
		ipField: opts.AllowedIPsField}, nil
}

// Lookup implements betterauth.Store.
func (s *Store) Lookup(ctx context.Context, l betterauth.Lookup) (betterauth.Record, error) {
	var rec betterauth.Record
	if l.Kind.Reads(betterauth.KindAPIKey) {
		k, err := s.apiKey(ctx, l)
		if err != nil {
			return betterauth.Record{}, err
		}
		rec.APIKey = k
	}
	if l.Kind.Reads(betterauth.KindSession) && rec.APIKey == nil {
		sess, err := s.session(ctx, l)
		if err != nil {
			return betterauth.Record{}, err
		}
		rec.Session = sess
	}
	if l.Kind.Reads(betterauth.KindOAuth) && !rec.Found() {
		// The OAuth provider keeps its tokens in the database only.
		one := betterauth.Lookup{Kind: betterauth.KindOAuth, Secret: l.Secret, Digest: l.Digest}
		got, err := s.sql.Lookup(ctx, one)
		if err != nil {
			return betterauth.Record{}, err
		}
		rec.OAuth = got.OAuth
	}
	return rec, nil
}

func (s *Store) apiKey(ctx context.Context, l betterauth.Lookup) (*betterauth.APIKey, error) {
	one := betterauth.Lookup{Kind: betterauth.KindAPIKey, Secret: l.Secret, Digest: l.Digest}
	if s.keys == Database {
		rec, err := s.sql.Lookup(ctx, one)
		return rec.APIKey, err
	}
	raw, err := s.get(ctx, "api-key:"+l.StoredKey(s.plain))
	if err != nil {
		return nil, err
	}
	if raw == nil {
		if s.keys == StorageThenDatabase {
			rec, err := s.sql.Lookup(ctx, one)
			return rec.APIKey, err
		}
		return nil, nil
	}
	var wm wireKeyMeta
	var into any = &wm.wireKey
	if s.ipField != "" {
		into = &wm
	}
	if err := json.Unmarshal(raw, into); err != nil {
		return nil, fmt.Errorf("secondary storage: api key: %w", err)
	}
	w := &wm.wireKey
	owner := w.ReferenceID
	if owner == "" {
		owner = w.UserID // the 1.3/1.4 plugin
	}
	// Which of the two owns the key is the configuration's to say, as with
	// SQL's joins; with neither, the Verifier finds it unknown.
	user, org, err := s.sql.Owner(ctx, owner)
	if err != nil {
		return nil, err
	}
	k := &betterauth.APIKey{
		ID: w.ID, ConfigID: w.ConfigID, Enabled: w.Enabled == nil || *w.Enabled,
		ExpiresAt: w.ExpiresAt.t, LastRefillAt: w.LastRefillAt.t, CreatedAt: w.CreatedAt.t,
		ReferenceID: owner, User: user, Org: org,
	}
	if w.Remaining != nil {
		k.HasRemaining, k.Remaining = true, *w.Remaining
	}
	if w.RefillInterval != nil {
		k.RefillInterval = time.Duration(*w.RefillInterval) * time.Millisecond
	}
	if w.RefillAmount != nil {
		k.HasRefillAmount, k.RefillAmount = true, *w.RefillAmount
	}
	var text string
	if json.Unmarshal(w.Permissions, &text) == nil {
		k.Permissions = betterauth.ParsePermissions(text)
	} else if len(w.Permissions) > 0 && w.Permissions[0] == '{' {
		k.Permissions = betterauth.ParsePermissions(string(w.Permissions))
	}
	if s.ipField != "" {
		// An object in the record; a string holding JSON text is read too,
		// and JSON null (or no member) is no metadata.
		k.AllowedIPs = betterauth.ParseAllowedIPs(wm.Metadata, s.ipField)
	}
	return k, nil
}

func (s *Store) session(ctx context.Context, l betterauth.Lookup) (*betterauth.Session, error) {
	one := betterauth.Lookup{Kind: betterauth.KindSession, Secret: l.Secret, Digest: l.Digest}
	if s.sessions == Database {
		rec, err := s.sql.Lookup(ctx, one)
		return rec.Session, err
	}
	raw, err := s.get(ctx, l.Secret)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		if s.sessions == StorageThenDatabase {
			rec, err := s.sql.Lookup(ctx, one)
			return rec.Session, err
		}
		return nil, nil
	}
	var w wireSession
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, fmt.Errorf("secondary storage: session: %w", err)
	}
	if w.Session.Token != l.Secret || w.User.ID == "" {
		return nil, nil // not a session record
	}
	// "Revoke all sessions" (1.7.16+) marks the user instead of deleting
	// every session: older sessions count as missing.
	before, err := s.get(ctx, "revoked-sessions-before-"+w.User.ID)
	if err != nil {
		return nil, err
	}
	if before != nil {
		ms, err := strconv.ParseInt(string(before), 10, 64)
		if err == nil && w.Session.CreatedAt.t.UnixMilli() < ms {
			return nil, nil
		}
	}
	sess := &betterauth.Session{
		ID: w.Session.ID, ExpiresAt: w.Session.ExpiresAt.t,
		User: &betterauth.User{ID: w.User.ID, Email: w.User.Email, Name: w.User.Name, Role: w.User.Role,
			Banned: w.User.Banned, BanExpires: w.User.BanExpires.t},
	}
	// The stored session names its active organization; the role there is
	// in SQL only (one more query, for sessions that have one), and counts
	// only while the user is still a member, as with SQL's join.
	if org := w.Session.ActiveOrganizationID; org != "" {
		role, member, err := s.sql.Member(ctx, org, w.User.ID)
		if err != nil {
			return nil, err
		}
		if member {
			sess.Org = &betterauth.Membership{OrgID: org, Role: role}
		}
	}
	return sess, nil
}

// get reads one key; nil when absent.
func (s *Store) get(ctx context.Context, key string) ([]byte, error) {
	b, err := s.redis.Get(ctx, s.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("secondary storage: %w", err)
	}
	return b, nil
}

// isoTime reads Better-Auth's JSON dates: ISO-8601 strings or null.
type isoTime struct{ t time.Time }

func (i *isoTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var ms int64 // some storages keep epoch milliseconds
		if err := json.Unmarshal(b, &ms); err != nil {
			return err
		}
		i.t = time.UnixMilli(ms).UTC()
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	i.t = t
	return err
}

type wireUser struct {
	ID         string  `json:"id"`
	Email      string  `json:"email"`
	Name       string  `json:"name"`
	Role       string  `json:"role"`
	Banned     bool    `json:"banned"`
	BanExpires isoTime `json:"banExpires"`
}

type wireSession struct {
	Session struct {
		ID        string  `json:"id"`
		Token     string  `json:"token"`
		ExpiresAt isoTime `json:"expiresAt"`
		CreatedAt isoTime `json:"createdAt"`
		// The organization plugin's field, as the session is stored
		// (field names, not columns: the same for every naming).
		ActiveOrganizationID string `json:"activeOrganizationId"`
	} `json:"session"`
	User wireUser `json:"user"`
}

type wireKey struct {
	ID             string  `json:"id"`
	ConfigID       string  `json:"configId"`
	ReferenceID    string  `json:"referenceId"`
	UserID         string  `json:"userId"`
	Enabled        *bool   `json:"enabled"`
	ExpiresAt      isoTime `json:"expiresAt"`
	Remaining      *int64  `json:"remaining"`
	RefillInterval *int64  `json:"refillInterval"`
	RefillAmount   *int64  `json:"refillAmount"`
	LastRefillAt   isoTime `json:"lastRefillAt"`
	CreatedAt      isoTime `json:"createdAt"`
	// Permissions are the row's JSON text, as the plugin serializes the
	// record (an object is read too).
	Permissions json.RawMessage `json:"permissions"`
}

// wireKeyMeta is a key record with its metadata, read only when the
// gateway looks for allow-lists there.
type wireKeyMeta struct {
	wireKey
	// Metadata is an object: the plugin parses the column before storing
	// the record.
	Metadata json.RawMessage `json:"metadata"`
}
