// Package demo makes a local Better-Auth database and a small MCP server, so
// that `caddy better-auth demo` runs a working gateway with nothing set up
// beforehand.
//
// The database is SQLite in Better-Auth's own schema (its migrations' SQL,
// embedded), and its rows are written in Better-Auth's formats: 32-character
// ids and session tokens, API keys of a prefix and 64 letters stored as their
// SHA-256, dates as ISO-8601 text with milliseconds, booleans as 0/1. A real
// Better-Auth app can use the same file.
package demo

import (
	"context"
	"crypto/rand"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

//go:embed schema.sql
var schemaSQL string

// SchemaSQL returns the embedded Better-Auth schema.
func SchemaSQL() string { return schemaSQL }

// Demo user.
const (
	UserEmail = "demo@example.com"
	UserName  = "Demo User"
	KeyPrefix = "ba_"
)

// Credentials are what Create made. APIKey and SessionToken are secrets.
type Credentials struct {
	UserID       string
	APIKey       string
	KeyID        string
	SessionToken string // raw; sign it with the gateway's secret
	SessionID    string
	Created      bool // the database file was new
}

// Create opens (or creates) the SQLite file at path, creates Better-Auth's
// tables if they are missing, the demo user if it is missing, and a new API
// key and session for it, valid for a week.
//
// The file holds session tokens and key hashes: it is created for its
// owner only (mode 0600, whatever the umask), and an existing file that
// group or others may read is made private; so are SQLite's -wal, -shm and
// -journal files beside it, which SQLite creates with the database's mode.
func Create(ctx context.Context, path string, now time.Time) (*Credentials, error) {
	if err := makePrivate(path); err != nil {
		return nil, err
	}
	c, err := create(ctx, path, now)
	if err != nil {
		return nil, err
	}
	if err := makeSidecarsPrivate(path); err != nil {
		return nil, err
	}
	return c, nil
}

func create(ctx context.Context, path string, now time.Time) (*Credentials, error) {
	u := url.URL{Scheme: "file", Opaque: (&url.URL{Path: path}).EscapedPath(), RawQuery: "_pragma=busy_timeout(5000)"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	defer tx.Rollback()
	c := &Credentials{}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'user'`).Scan(&n); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if n == 0 {
		if _, err := tx.ExecContext(ctx, schemaSQL); err != nil {
			return nil, fmt.Errorf("creating Better-Auth's tables: %w", err)
		}
		c.Created = true
	}
	ts := timestamp(now)
	err = tx.QueryRowContext(ctx, `SELECT "id" FROM "user" WHERE "email" = ?`, UserEmail).Scan(&c.UserID)
	if err == sql.ErrNoRows {
		c.UserID = GenerateID(32)
		_, err = tx.ExecContext(ctx, `INSERT INTO "user" ("id", "name", "email", "emailVerified", "image", "createdAt", "updatedAt", "role", "banned", "banReason", "banExpires")
VALUES (?, ?, ?, 0, NULL, ?, ?, 'user', 0, NULL, NULL)`, c.UserID, UserName, UserEmail, ts, ts)
	}
	if err != nil {
		return nil, fmt.Errorf("the demo user: %w", err)
	}

	c.SessionID, c.SessionToken = GenerateID(32), GenerateID(32)
	if _, err := tx.ExecContext(ctx, `INSERT INTO "session" ("id", "expiresAt", "token", "createdAt", "updatedAt", "ipAddress", "userAgent", "userId", "impersonatedBy")
VALUES (?, ?, ?, ?, ?, '', '', ?, NULL)`, c.SessionID, timestamp(now.Add(7*24*time.Hour)), c.SessionToken, ts, ts, c.UserID); err != nil {
		return nil, fmt.Errorf("the demo session: %w", err)
	}

	// As the api-key plugin's createApiKey writes a key with its defaults:
	// prefix + 64 letters, start = first 6 characters, rate limit 10 per day.
	c.KeyID, c.APIKey = GenerateID(32), KeyPrefix+randomString(64, letters)
	if _, err := tx.ExecContext(ctx, `INSERT INTO "apikey" ("id", "configId", "name", "start", "referenceId", "prefix", "key", "refillInterval", "refillAmount",
	"lastRefillAt", "enabled", "rateLimitEnabled", "rateLimitTimeWindow", "rateLimitMax", "requestCount", "remaining", "lastRequest", "expiresAt",
	"createdAt", "updatedAt", "permissions", "metadata")
VALUES (?, 'default', 'demo', ?, ?, ?, ?, NULL, NULL, NULL, 1, 1, 86400000, 10, 0, NULL, NULL, NULL, ?, ?, NULL, 'null')`,
		c.KeyID, c.APIKey[:6], c.UserID, KeyPrefix, betterauth.HashAPIKey(c.APIKey), ts, ts); err != nil {
		return nil, fmt.Errorf("the demo API key: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return c, nil
}

// makePrivate creates the database file with mode 0600 if it does not
// exist, before SQLite opens it (SQLite would create it with the umask's
// mode), and takes group and other permissions away from an existing one.
func makePrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		return f.Close()
	}
	if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	return restrict(path)
}

// makeSidecarsPrivate restricts the journal files SQLite may have left
// beside the database.
func makeSidecarsPrivate(path string) error {
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if err := restrict(path + suffix); err != nil {
			return err
		}
	}
	return nil
}

// restrict removes group and other permissions from an existing file.
func restrict(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		if err := os.Chmod(path, perm&^0o077); err != nil {
			return fmt.Errorf("making %s private: %w", path, err)
		}
	}
	return nil
}

// timestamp writes a date as Better-Auth's Kysely adapter does on SQLite.
func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

const (
	letters      = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	alphanumeric = letters + "0123456789"
)

// GenerateID returns a random id like Better-Auth's generateId: n characters
// from [A-Za-z0-9].
func GenerateID(n int) string { return randomString(n, alphanumeric) }

// GenerateSecret returns a random secret suitable for BETTER_AUTH_SECRET.
func GenerateSecret() string { return randomString(48, alphanumeric) }

func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	max := big.NewInt(int64(len(alphabet)))
	for i := range b {
		v, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic(err) // crypto/rand does not fail on supported systems
		}
		b[i] = alphabet[v.Int64()]
	}
	return string(b)
}
