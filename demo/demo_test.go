package demo_test

import (
	"context"
	"database/sql"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/demo"
)

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// The demo database holds session tokens and key hashes: only its owner may
// read it, whatever the umask, and so for SQLite's files beside it.
func TestDatabaseIsPrivate(t *testing.T) {
	// The umask is the process's: this test does not run in parallel.
	defer syscall.Umask(syscall.Umask(0o022))
	ctx := context.Background()
	dir := t.TempDir()

	t.Run("new file", func(t *testing.T) {
		path := filepath.Join(dir, "new.db")
		creds, err := demo.Create(ctx, path, time.Now())
		if err != nil || !creds.Created {
			t.Fatalf("Create: %+v, %v", creds, err)
		}
		if m := mode(t, path); m != 0o600 {
			t.Errorf("new database has mode %#o, want 0600", m)
		}
		for _, suffix := range []string{"-wal", "-shm", "-journal"} {
			if fi, err := os.Stat(path + suffix); err == nil && fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s has mode %#o", suffix, fi.Mode().Perm())
			}
		}
	})

	t.Run("existing database", func(t *testing.T) {
		path := filepath.Join(dir, "existing.db")
		if _, err := demo.Create(ctx, path, time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		creds, err := demo.Create(ctx, path, time.Now())
		if err != nil || creds.Created {
			t.Fatalf("second Create: %+v, %v", creds, err)
		}
		if m := mode(t, path); m != 0o600 {
			t.Errorf("reused database has mode %#o, want 0600", m)
		}
	})

	t.Run("existing empty file", func(t *testing.T) {
		path := filepath.Join(dir, "empty.db")
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if creds, err := demo.Create(ctx, path, time.Now()); err != nil || !creds.Created {
			t.Fatalf("Create: %+v, %v", creds, err)
		}
		if m := mode(t, path); m != 0o600 {
			t.Errorf("database has mode %#o, want 0600", m)
		}
	})

	// An app has the database open in WAL mode, with its -wal and -shm
	// files, all made with the umask's 0644.
	t.Run("WAL files an app keeps open", func(t *testing.T) {
		path := filepath.Join(dir, "wal.db")
		app, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(wal)")
		if err != nil {
			t.Fatal(err)
		}
		defer app.Close()
		app.SetMaxOpenConns(1)
		if _, err := app.Exec(`CREATE TABLE app_data (x int); INSERT INTO app_data VALUES (1)`); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			if m := mode(t, p); m != 0o644 {
				t.Fatalf("%s has mode %#o before Create, want the umask's 0644", filepath.Base(p), m)
			}
		}
		if creds, err := demo.Create(ctx, path, time.Now()); err != nil || !creds.Created {
			t.Fatalf("Create: %+v, %v", creds, err)
		}
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			if m := mode(t, p); m != 0o600 {
				t.Errorf("%s has mode %#o after Create, want 0600", filepath.Base(p), m)
			}
		}
	})
}
