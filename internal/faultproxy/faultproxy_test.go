package faultproxy

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// echo is a server that writes back whatever it reads.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func start(t *testing.T) *Proxy {
	t.Helper()
	p, err := Start(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads as many bytes back, within d.
func roundTrip(c net.Conn, msg string, d time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(c, buf)
	return string(buf[:n]), err
}

func TestPass(t *testing.T) {
	p := start(t)
	c := dial(t, p)
	if got, err := roundTrip(c, "hello", 5*time.Second); err != nil || got != "hello" {
		t.Fatalf("%q, %v", got, err)
	}
}

func TestLatency(t *testing.T) {
	p := start(t)
	c := dial(t, p)
	p.SetLatency(100 * time.Millisecond)
	began := time.Now()
	if got, err := roundTrip(c, "slow", 5*time.Second); err != nil || got != "slow" {
		t.Fatalf("%q, %v", got, err)
	}
	// Each direction waits: a lower bound, which no scheduling can break.
	if d := time.Since(began); d < 200*time.Millisecond {
		t.Fatalf("the round trip took %v, want at least 200ms", d)
	}
}

func TestBlackholeHoldsThenDelivers(t *testing.T) {
	p := start(t)
	old := dial(t, p)
	if _, err := roundTrip(old, "up", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Set(Blackhole)
	fresh := dial(t, p) // accepted: the client cannot tell
	for _, c := range []net.Conn{old, fresh} {
		if got, err := roundTrip(c, "lost", 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("through the blackhole: %q, %v; want a timeout", got, err)
		}
	}
	p.Set(Pass)
	for _, c := range []net.Conn{old, fresh} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "lost" {
			t.Fatalf("after the blackhole: %q, %v", buf, err)
		}
	}
}

func TestResetAbortsOpenAndNewConnections(t *testing.T) {
	p := start(t)
	old := dial(t, p)
	if _, err := roundTrip(old, "up", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Set(Reset)
	if _, err := roundTrip(old, "x", 5*time.Second); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("an open connection: %v, want a reset", err)
	}
	fresh := dial(t, p)
	if _, err := roundTrip(fresh, "x", 5*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a new connection: %v, want it aborted", err)
	}
	if !waitFor(func() bool { return p.Conns() == 0 }) {
		t.Fatalf("%d connections left", p.Conns())
	}
	p.Set(Pass)
	if got, err := roundTrip(dial(t, p), "back", 5*time.Second); err != nil || got != "back" {
		t.Fatalf("after the resets: %q, %v", got, err)
	}
}

func TestDropMidStream(t *testing.T) {
	p := start(t)
	c := dial(t, p)
	if _, err := roundTrip(c, "up", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetDrop(3)
	c.Write([]byte("0123456789"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "012" {
		t.Fatalf("read %q, %v; want the first 3 bytes, then the end", got, err)
	}
}

func TestCutKeepsTheMode(t *testing.T) {
	p := start(t)
	a, b := dial(t, p), dial(t, p)
	for _, c := range []net.Conn{a, b} {
		if _, err := roundTrip(c, "up", 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.Cut(); n != 2 {
		t.Fatalf("cut %d connections, want 2", n)
	}
	if _, err := roundTrip(a, "x", 5*time.Second); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("a cut connection: %v, want a reset", err)
	}
	if got, err := roundTrip(dial(t, p), "again", 5*time.Second); err != nil || got != "again" {
		t.Fatalf("a new connection: %q, %v", got, err)
	}
}

func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

func TestForgetSilencesOpenConnectionsForGood(t *testing.T) {
	p := start(t)
	old := dial(t, p)
	if _, err := roundTrip(old, "up", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Set(Forget)
	fresh := dial(t, p)
	for _, c := range []net.Conn{old, fresh} {
		if got, err := roundTrip(c, "lost", 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("while forgetting: %q, %v; want a timeout", got, err)
		}
	}
	p.Set(Pass)
	// The connection held while forgetting goes through now, with what it
	// sent; the forgotten one stays silent, and open.
	fresh.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(fresh, buf); err != nil || string(buf) != "lost" {
		t.Fatalf("the held connection: %q, %v", buf, err)
	}
	if got, err := roundTrip(old, "more", 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the forgotten connection after the mode changed: %q, %v; want a timeout", got, err)
	}
	if got, err := roundTrip(dial(t, p), "new", 5*time.Second); err != nil || got != "new" {
		t.Fatalf("a new connection: %q, %v", got, err)
	}
}
