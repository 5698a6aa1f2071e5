package integration

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/sqlitestore"
)

// sqliteFiles counts a process's open file descriptors on a SQLite
// database: the file itself and its -wal, -shm and -journal files.
type sqliteFiles struct{ db, wal, shm, journal int }

func (f sqliteFiles) String() string {
	return fmt.Sprintf("%d on the database, %d on -wal, %d on -shm, %d on -journal", f.db, f.wal, f.shm, f.journal)
}

func countSQLiteFiles(t *testing.T, pid int, db string) sqliteFiles {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("listing the gateway's file descriptors: %v", err)
	}
	var n sqliteFiles
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed since the listing
		}
		switch target {
		case db:
			n.db++
		case db + "-wal":
			n.wal++
		case db + "-shm":
			n.shm++
		case db + "-journal":
			n.journal++
		}
	}
	return n
}

// A flood of distinct unknown keys from 200 concurrent clients, every one a
// database read: the gateway keeps a bounded number of connections (file
// descriptors) to the SQLite file, during the flood and after it.
func TestSQLiteConnectionsAreBounded(t *testing.T) {
	t.Parallel()
	f := testenv.Seed(t, testenv.SeedOptions{SQLite: true})
	path, err := sqlitestore.Path(f.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	if path, err = filepath.EvalSymlinks(path); err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t)
	// GOMAXPROCS fixes the default bound, max(4, GOMAXPROCS), at 4.
	const bound = 4
	gw := testenv.StartCaddy(t, "", fmt.Sprintf(`
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
	}
	reverse_proxy %s`, up.addr()),
		"DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret, "GOMAXPROCS=2")
	pid := gw.Pid()
	// The layout is read on first use: do it before the flood.
	if r := send(t, gw, "/", h("X-Api-Key", f.Keys.Valid.Key)); r.status != 200 {
		t.Fatalf("valid key: %d %s", r.status, r.raw)
	}

	const clients, perClient = 200, 10
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer client.CloseIdleConnections()

	var (
		mu      sync.Mutex
		peak    sqliteFiles
		samples int
	)
	sample := func() {
		n := countSQLiteFiles(t, pid, path)
		mu.Lock()
		defer mu.Unlock()
		samples++
		peak.db, peak.wal, peak.shm, peak.journal = max(peak.db, n.db), max(peak.wal, n.wal), max(peak.shm, n.shm), max(peak.journal, n.journal)
	}
	// One goroutine samples the descriptors for as long as the flood lasts;
	// and whoever gets the middle answer samples too, with the other clients
	// still sending.
	done := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
				sample()
			}
		}
	})
	var answered atomic.Int64
	var wg sync.WaitGroup
	failures := make(chan string, clients*perClient)
	for c := range clients {
		wg.Go(func() {
			for i := range perClient {
				req, _ := http.NewRequest(http.MethodGet, gw.URL+"/", nil)
				req.Header.Set("X-Api-Key", fmt.Sprintf("ba_flood_%d_%d_%s", c, i, strings.Repeat("x", 40)))
				resp, err := client.Do(req)
				if err != nil {
					failures <- err.Error()
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != 401 {
					failures <- fmt.Sprintf("status %d", resp.StatusCode)
				}
				if answered.Add(1) == clients*perClient/2 {
					sample()
				}
			}
		})
	}
	wg.Wait()
	close(done)
	sampler.Wait()
	close(failures)
	var failed []string
	for f := range failures {
		failed = append(failed, f)
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d unknown keys were not answered 401, e.g. %s", len(failed), clients*perClient, failed[0])
	}
	t.Logf("during the flood (%d samples), at most %v", samples, peak)
	if peak.db > bound || peak.wal > bound || peak.shm > 1 || peak.journal > bound {
		t.Errorf("during the flood the gateway held %v; want at most %d connections", peak, bound)
	}
	after := countSQLiteFiles(t, pid, path)
	t.Logf("after the flood: %v", after)
	if after.db > bound || after.wal > bound || after.shm > 1 || after.journal > bound {
		t.Errorf("after the flood the gateway holds %v; want at most %d connections", after, bound)
	}
	if r := send(t, gw, "/", h("X-Api-Key", f.Keys.Valid2.Key)); r.status != 200 {
		t.Fatalf("valid key after the flood: %d %s", r.status, r.raw)
	}
}
