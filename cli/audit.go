package cli

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-betterauth/caddy-betterauth/audit"
	"github.com/caddy-betterauth/caddy-betterauth/mysqlstore"
	"github.com/caddy-betterauth/caddy-betterauth/sqlitestore"
)

// AuditOptions configure InstallAudit.
type AuditOptions struct {
	Database Database
	// Table is the audit table (audit.ParseTable's default when "").
	Table string
	// Grant names the role the gateway connects as, to be given what
	// writing events takes, when it is not the one creating the table.
	Grant string
	// Print writes the SQL to out instead of running it.
	Print bool
}

// InstallAudit creates the table (and its indexes) that the audit block's
// database writes to, idempotently. It exits 0 when done, 2 on any error.
func InstallAudit(ctx context.Context, opts AuditOptions, out, errOut io.Writer) int {
	dsn, err := opts.Database.url()
	if err != nil {
		fmt.Fprintln(errOut, err)
		return ExitError
	}
	t, err := audit.ParseTable(dsn, opts.Table)
	if err != nil {
		fmt.Fprintln(errOut, err)
		return ExitError
	}
	ddl := t.DDL()
	if opts.Grant != "" {
		if sqlitestore.IsDSN(dsn) {
			fmt.Fprintln(errOut, "install-audit: --grant is for PostgreSQL; SQLite has no roles")
			return ExitError
		}
		if mysqlstore.IsDSN(dsn) {
			fmt.Fprintf(errOut, "install-audit: --grant is for PostgreSQL; on MySQL run GRANT INSERT ON %s TO '<user>'@'<host>' yourself\n", t)
			return ExitError
		}
		ddl += t.Grant(opts.Grant)
	}
	if opts.Print {
		fmt.Fprint(out, ddl)
		return ExitOK
	}
	if opts.Database.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Database.Timeout)
		defer cancel()
	}
	switch {
	case sqlitestore.IsDSN(dsn):
		err = execSQLite(ctx, dsn, ddl)
	case mysqlstore.IsDSN(dsn):
		err = execMySQL(ctx, dsn, ddl)
	default:
		err = execPostgres(ctx, dsn, ddl)
	}
	if err != nil {
		fmt.Fprintln(errOut, "install-audit:", err)
		return ExitError
	}
	fmt.Fprintf(out, "created the audit table %s (or found it there)\n", t)
	return ExitOK
}

func execPostgres(ctx context.Context, dsn, ddl string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close(context.Background())
	// Several statements and no arguments: one implicit transaction.
	_, err = conn.Exec(ctx, ddl)
	return err
}

func execMySQL(ctx context.Context, dsn, ddl string) error {
	db, err := mysqlstore.OpenWritable(dsn, 10*time.Second)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, ddl) // one statement
	return err
}

func execSQLite(ctx context.Context, dsn, ddl string) error {
	db, err := sqlitestore.OpenWritable(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func(tx *sql.Tx) { _ = tx.Rollback() }(tx)
	if _, err := tx.ExecContext(ctx, ddl); err != nil {
		return err
	}
	return tx.Commit()
}
