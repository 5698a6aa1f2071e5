package gateway

import (
	"path/filepath"
	"testing"

	"go.uber.org/zap"
)

// Routes configured alike share a sink; the last to let go closes it, and
// a route naming another queue size (a reload raising it) gets its own.
func TestAuditorSinksHeldByRoutes(t *testing.T) {
	o := Options{Database: "sqlite://" + filepath.Join(t.TempDir(), "auth.db"),
		Audit: &Audit{Database: &AuditDatabase{}}}
	gw, err := Open(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	sinks := func() int {
		gw.auditMu.Lock()
		defer gw.auditMu.Unlock()
		return len(gw.sinks)
	}
	_, release1, err := gw.Auditor(o, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	_, release2, _ := gw.Auditor(o, zap.NewNop())
	raised := o
	raised.Audit = &Audit{Database: &AuditDatabase{Queue: 50000}}
	_, release3, _ := gw.Auditor(raised, zap.NewNop())
	if n := sinks(); n != 2 {
		t.Fatalf("%d sinks, want 2 (one per queue size)", n)
	}
	release1()
	release1() // once only
	if n := sinks(); n != 2 {
		t.Fatalf("%d sinks after one route of two let go, want 2", n)
	}
	release2()
	if n := sinks(); n != 1 {
		t.Fatalf("%d sinks after both let go, want 1", n)
	}
	release3()
	if n := sinks(); n != 0 {
		t.Fatalf("%d sinks left", n)
	}
}
