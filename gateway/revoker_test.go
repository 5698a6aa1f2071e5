package gateway

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/cache"
)

// A flood of notifications naming one target while a batch is being applied
// costs one more batch with that target once, not one per notification; a
// flood of distinct targets past the bound becomes one purge.
func TestRevokerCoalesces(t *testing.T) {
	t.Parallel()
	type batch struct{ revs, relay []cache.Revocation }
	applying, release := make(chan batch), make(chan struct{})
	r := newRevoker(func(_ context.Context, revs, relay []cache.Revocation) {
		applying <- batch{revs, relay}
		<-release
	}, zap.NewNop())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.run(ctx)

	key := cache.Revocation{Target: cache.TargetAPIKey, ID: "k1"}
	r.add(key, false)
	first := <-applying // the worker is busy with the first one
	for i := range 5000 {
		r.add(key, i == 4999) // relayed if any one of them asks
	}
	r.add(cache.Revocation{Target: cache.TargetUser, ID: "u1"}, false)
	release <- struct{}{}
	second := <-applying
	release <- struct{}{}
	if len(first.revs) != 1 || len(second.revs) != 2 || len(second.relay) != 1 || second.relay[0] != key {
		t.Fatalf("batches %+v then %+v", first, second)
	}

	r.add(key, false)
	<-applying
	for i := range maxPendingRevocations + 10 {
		r.add(cache.Revocation{Target: cache.TargetSession, ID: fmt.Sprint(i)}, true)
	}
	release <- struct{}{}
	flood := <-applying
	release <- struct{}{}
	if len(flood.revs) > 11 || !slices.Contains(flood.revs, cache.Revocation{Target: cache.TargetAll}) || len(flood.relay) == 0 {
		t.Fatalf("a flood of %d distinct targets became %d revocations (%d relayed)", maxPendingRevocations+10, len(flood.revs), len(flood.relay))
	}
}

// A relayed message is applied once however often it is published again
// within its window; one outside the window is never remembered (the
// window check refuses it first).
func TestRelayedMessagesAppliedOnce(t *testing.T) {
	t.Parallel()
	var r replays
	now := time.Now()
	if !r.first([]byte(`{"from":"a","at":1}`), now) {
		t.Fatal("a new message refused")
	}
	for range 3 {
		if r.first([]byte(`{"from":"a","at":1}`), now) {
			t.Fatal("a replay accepted")
		}
	}
	if !r.first([]byte(`{"from":"a","at":2}`), now) {
		t.Fatal("another message refused")
	}
	// Old entries go once enough are remembered.
	for i := range 2000 {
		r.first(fmt.Appendf(nil, "old %d", i), now.Add(-2*cache.MessageWindow))
	}
	if len(r.seen) > 1100 {
		t.Fatalf("%d messages remembered; expired ones were not dropped", len(r.seen))
	}
}
