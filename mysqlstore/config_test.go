package mysqlstore

import (
	"strings"
	"testing"
	"time"
)

func TestConfig(t *testing.T) {
	cfg, conns, err := Config("mysql://gw:s%40cret@db.internal/auth?tls=skip-verify&max_conns=8&timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.User != "gw" || cfg.Passwd != "s@cret" || cfg.Addr != "db.internal:3306" || cfg.DBName != "auth" || conns != 8 ||
		cfg.TLSConfig != "skip-verify" || cfg.Timeout != 2*time.Second || !cfg.ParseTime || cfg.Loc != time.UTC {
		t.Errorf("%+v, %d", cfg, conns)
	}
	if !strings.Contains(cfg.Params["sql_mode"], "ANSI_QUOTES") || cfg.Params["time_zone"] != "'+00:00'" || cfg.Params["autocommit"] != "1" {
		t.Errorf("session params %v", cfg.Params)
	}
	cfg, conns, err = Config("mariadb://root@127.0.0.1:3307/app")
	if err != nil || cfg.Addr != "127.0.0.1:3307" || conns != DefaultMaxConns() || cfg.Timeout != 5*time.Second {
		t.Errorf("%+v %d %v", cfg, conns, err)
	}
	for _, bad := range []string{"mysql://u:p@host/", "mysql://u:p@host/db?max_conns=0", "postgres://u@h/db", "mysql://u:p@host/db?bogus_param=%zz",
		"mysql://u:p@host/db?strict=true"} {
		if _, _, err := Config(bad); err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "p@") {
			t.Errorf("%q: the error quotes the password: %v", bad, err)
		}
	}
}

// A session variable the store sets, spelt otherwise in the URL, would be
// set twice in the driver's one SET, in random order: ANSI_QUOTES or UTC
// lost on some connections.
func TestConfigRefusesStoreSessionVars(t *testing.T) {
	for _, p := range []string{"sql_mode=%27TRADITIONAL%27", "SQL_MODE=%27TRADITIONAL%27", "TIME_ZONE=%27%2B05:00%27",
		"%40%40session.time_zone=%27%2B05:00%27", "%60Sql_Mode%60=%27%27", "INNODB_LOCK_WAIT_TIMEOUT=100",
		"autocommit=0", "AUTOCOMMIT=0"} {
		if _, _, err := Config("mysql://u:p@host/db?" + p); err == nil || !strings.Contains(err.Error(), "store sets itself") {
			t.Errorf("%s: %v", p, err)
		}
	}
	if _, _, err := Config("mysql://u:p@host/db?net_read_timeout=60"); err != nil {
		t.Errorf("other session variables: %v", err)
	}
}

// With lower_case_table_names 1 the catalog lists Better-Auth's camelCase
// tables in lower case: they are still the candidates they are.
func TestCatalogCandidateNames(t *testing.T) {
	tables := []string{"user", "oauthAccessToken", "oauth_access_token"}
	for in, want := range map[string]string{"oauthaccesstoken": "oauthAccessToken", "oauthAccessToken": "oauthAccessToken",
		"oauth_access_token": "oauth_access_token", "user": "user", "other": "other"} {
		if got := candidate(in, tables); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// tls=true verifies the server's certificate for the URL's host.
func TestConfigTLSServerName(t *testing.T) {
	for dsn, want := range map[string]string{
		"mysql://u:p@db.internal/app?tls=true":            "db.internal",
		"mysql://u:p@db.example.com:3307/app?tls=true":    "db.example.com",
		"mysql://u:p@[2001:db8::1]:3306/app?tls=true":     "2001:db8::1",
		"mysql://u:p@db.internal/app?tls=true&timeout=2s": "db.internal",
	} {
		cfg, _, err := Config(dsn)
		if err != nil || cfg.TLS == nil || cfg.TLS.ServerName != want || cfg.TLS.InsecureSkipVerify {
			t.Errorf("%s: %+v %v", dsn, cfg, err)
		}
	}
}
