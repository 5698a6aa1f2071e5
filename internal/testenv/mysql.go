package testenv

import (
	"crypto/rand"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// MySQLDSN turns a mysql://user:pass@host:port/db?params URL, the form
// TEST_MYSQL_URL and the seeded apps use, into go-sql-driver/mysql's DSN,
// keeping the parameters.
func MySQLDSN(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Scheme != "mysql" {
		return "", fmt.Errorf("%q is not a mysql:// URL", u.Redacted())
	}
	c := mysql.NewConfig()
	c.User = u.User.Username()
	c.Passwd, _ = u.User.Password()
	c.Net = "tcp"
	c.Addr = u.Host
	if u.Port() == "" {
		c.Addr = u.Host + ":3306"
	}
	c.DBName = strings.TrimPrefix(u.Path, "/")
	dsn := c.FormatDSN()
	if u.RawQuery != "" {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		dsn += sep + u.RawQuery
	}
	return dsn, nil
}

// OpenMySQL opens the database at a mysql:// URL; it is closed when the
// test ends.
func OpenMySQL(t testing.TB, raw string) *sql.DB {
	t.Helper()
	dsn, err := MySQLDSN(raw)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// NewMySQLDatabase creates an empty database on the MySQL (MariaDB) test
// server and returns its URL. It is dropped when the test ends.
func NewMySQLDatabase(t testing.TB) string {
	t.Helper()
	return NewMySQLDatabaseOn(t, Require(t, "TEST_MYSQL_URL"))
}

// NewMySQLDatabaseOn creates an empty database on the MySQL server at base.
func NewMySQLDatabaseOn(t testing.TB, base string) string {
	t.Helper()
	name := "t_" + strings.ToLower(rand.Text()[:12])
	admin := OpenMySQL(t, base)
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("creating database: %v", err)
	}
	// Registered after OpenMySQL's Close, so it runs before it.
	t.Cleanup(func() { admin.Exec("DROP DATABASE IF EXISTS " + name) })
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}
