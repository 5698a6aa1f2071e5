package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
	"github.com/caddy-betterauth/caddy-betterauth/store"
)

// TriggerOptions configure Triggers.
type TriggerOptions struct {
	Database Database
	// Uninstall removes the triggers instead of adding them.
	Uninstall bool
	// Print writes the SQL to out instead of running it.
	Print bool
}

// Triggers adds (or removes) the PostgreSQL triggers that NOTIFY gateways
// when an api-key, session or user row changes, for the layout detected in
// the database, in one transaction. It exits 0 when done and 2 on any
// error, including a SQLite database, which has no triggers to install.
func Triggers(ctx context.Context, opts TriggerOptions, out, errOut io.Writer) int {
	db, ctx, cancel, err := opts.Database.open(ctx)
	if err != nil {
		fmt.Fprintln(errOut, err)
		return ExitError
	}
	defer cancel()
	defer db.Close()
	dsn, _ := opts.Database.url() // open succeeded, so there is one
	return triggers(ctx, db, dsn, opts, out, errOut)
}

// triggers is Triggers on an open database, whose URL dsn is used to run
// the SQL.
func triggers(ctx context.Context, db Inspector, dsn string, opts TriggerOptions, out, errOut io.Writer) int {
	switch db.Dialect() {
	case store.SQLite:
		fmt.Fprintln(errOut, "triggers are for PostgreSQL; SQLite databases are read within the cache TTL")
		return ExitError
	case store.MySQL:
		fmt.Fprintln(errOut, "triggers are for PostgreSQL: MySQL has no LISTEN/NOTIFY to push revocations with. "+
			"Its rows are read within the cache TTL (keep it short), and with a redis block the gateways relay "+
			"the revocations any of them hears (from secondary storage)")
		return ExitError
	}
	layout, err := db.Layout(ctx)
	if err != nil {
		fmt.Fprintln(errOut, err)
		return ExitError
	}
	sqlText, uninstall := pgstore.Triggers(layout, opts.Database.PGSchema)
	if opts.Uninstall {
		sqlText = uninstall
	}
	if opts.Print {
		fmt.Fprint(out, sqlText)
		return ExitOK
	}
	cfg, err := pgstore.ConnConfig(dsn)
	if err != nil {
		fmt.Fprintln(errOut, "not a PostgreSQL URL")
		return ExitError
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		fmt.Fprintln(errOut, "connecting:", err)
		return ExitError
	}
	defer conn.Close(context.Background())
	// Several statements and no arguments: one implicit transaction, so
	// all of it or nothing.
	if _, err := conn.Exec(ctx, sqlText); err != nil {
		fmt.Fprintln(errOut, err)
		return ExitError
	}
	if opts.Uninstall {
		fmt.Fprintln(out, "removed the revocation triggers")
	} else {
		fmt.Fprintf(out, "installed the revocation triggers (%s)\n", layout.Describe())
	}
	return ExitOK
}
