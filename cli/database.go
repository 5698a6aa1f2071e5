package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/schema"
	"github.com/caddy-betterauth/caddy-betterauth/store"
)

// Database names the database a command reads, as the --database,
// --pg-schema and --timeout flags do.
type Database struct {
	// URL is a PostgreSQL URL or key=value DSN, or a sqlite: or file: URL.
	// Empty, the DATABASE_URL environment variable is read instead, which
	// keeps the URL (and its password) out of process lists.
	URL string
	// PGSchema is the PostgreSQL schema holding the tables (default: the
	// search_path).
	PGSchema string
	// Timeout bounds the whole command's use of the database (0: none).
	Timeout time.Duration
}

// url returns the URL to use: URL, else $DATABASE_URL.
func (d Database) url() (string, error) {
	if d.URL != "" {
		return d.URL, nil
	}
	if dsn := os.Getenv("DATABASE_URL"); dsn != "" {
		return dsn, nil
	}
	return "", errors.New("no database: pass --database or set DATABASE_URL")
}

// open opens the store, without I/O, and bounds ctx by the timeout.
func (d Database) open(ctx context.Context) (store.DB, context.Context, context.CancelFunc, error) {
	dsn, err := d.url()
	if err != nil {
		return nil, nil, nil, err
	}
	db, err := store.Open(dsn, store.Options{PGSchema: d.PGSchema})
	if err != nil {
		return nil, nil, nil, err
	}
	cancel := context.CancelFunc(func() {})
	if d.Timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
	}
	return db, ctx, cancel, nil
}

// use opens the database d names and runs fn with it, within the timeout;
// a database that cannot be opened fails the command named cmd.
func (d Database) use(ctx context.Context, cmd string, errOut io.Writer, fn func(context.Context, store.DB) int) int {
	db, ctx, cancel, err := d.open(ctx)
	if err != nil {
		fmt.Fprintln(errOut, cmd+":", err)
		return ExitError
	}
	defer cancel()
	defer db.Close()
	return fn(ctx, db)
}

// CheckDatabase is the check command: Check against the database d
// names (opts.Store is ignored), of the credential read from in or, when
// credentialFile is set, from that file.
func CheckDatabase(ctx context.Context, d Database, opts CheckOptions, credentialFile string, in io.Reader, out, errOut io.Writer) int {
	return d.use(ctx, "check", errOut, func(ctx context.Context, db store.DB) int {
		if credentialFile != "" {
			f, err := os.Open(credentialFile)
			if err != nil {
				fmt.Fprintln(errOut, "check:", err)
				return ExitError
			}
			defer f.Close()
			in = f
		}
		opts.Store = db
		return Check(ctx, opts, in, out, errOut)
	})
}

// DoctorDatabase is the doctor command: Doctor on the database d names,
// with the layout detected from its tables.
func DoctorDatabase(ctx context.Context, d Database, opts DoctorOptions, out, errOut io.Writer) int {
	return d.use(ctx, "doctor", errOut, func(ctx context.Context, db store.DB) int {
		return Doctor(ctx, db, schema.Config{}, opts, out, errOut)
	})
}
