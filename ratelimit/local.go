package ratelimit

import (
	"hash/maphash"
	"sync"
)

// DefaultMaxBuckets bounds the buckets an in-process store remembers.
const DefaultMaxBuckets = 100_000

const shards = 64

// local holds buckets in process: a bucket is a 64-bit hash of its tier
// and key (seeded at random per process, so nobody can aim two keys at one
// bucket) mapped to its TAT in unix nanoseconds. Memory is bounded: past
// perShard buckets in a shard, the ones whose requests are all forgiven
// go first, then the one closest to it.
type local struct {
	seed     maphash.Seed
	perShard int
	shards   [shards]localShard
}

type localShard struct {
	mu  sync.Mutex
	tat map[uint64]int64
	_   [48]byte // keeps neighbouring shards' locks off one cache line
}

func newLocal(maxBuckets int) *local {
	if maxBuckets <= 0 {
		maxBuckets = DefaultMaxBuckets
	}
	l := &local{seed: maphash.MakeSeed(), perShard: max(1, maxBuckets/shards)}
	for i := range l.shards {
		l.shards[i].tat = map[uint64]int64{}
	}
	return l
}

// take spends one request of each bucket ids[i] under lims[i] at now, all
// or none: if one is exhausted, it returns its index and the wait, and
// spends nothing.
func (l *local) take(ids []uint64, lims []gcra, now int64) (denied int, wait int64) {
	// Lock every shard involved, in ascending order (no deadlock), once.
	var held [MaxTiers]uint8
	n := 0
	for _, id := range ids {
		s := uint8(id % shards)
		i := n
		for i > 0 && held[i-1] > s {
			i--
		}
		if i > 0 && held[i-1] == s {
			continue
		}
		copy(held[i+1:n+1], held[i:n])
		held[i] = s
		n++
	}
	for _, s := range held[:n] {
		l.shards[s].mu.Lock()
	}
	denied, wait = l.takeLocked(ids, lims, now)
	for _, s := range held[:n] {
		l.shards[s].mu.Unlock()
	}
	return denied, wait
}

// takeLocked is take with the shards of ids locked.
func (l *local) takeLocked(ids []uint64, lims []gcra, now int64) (denied int, wait int64) {
	var next [MaxTiers]int64
	for i, id := range ids {
		tat := l.shards[id%shards].tat[id]
		// Two tiers of one request never share a bucket (their names
		// differ), so each reads its own TAT.
		nt, w, ok := lims[i].take(tat, now)
		if !ok {
			return i, w
		}
		next[i] = nt
	}
	// Room first, then the writes: an eviction never undoes a write.
	for _, id := range ids {
		sh := &l.shards[id%shards]
		if _, ok := sh.tat[id]; !ok && len(sh.tat) >= l.perShard {
			sh.evict(now, l.perShard)
		}
	}
	for i, id := range ids {
		l.shards[id%shards].tat[id] = next[i]
	}
	return -1, 0
}

// evict makes room in a full shard: every bucket back to full, then, if
// none was, the one closest to it.
func (sh *localShard) evict(now int64, limit int) {
	for id, tat := range sh.tat {
		if tat <= now {
			delete(sh.tat, id)
		}
	}
	if len(sh.tat) < limit {
		return
	}
	var oldest uint64
	first := int64(-1)
	for id, tat := range sh.tat {
		if first < 0 || tat < first {
			oldest, first = id, tat
		}
	}
	delete(sh.tat, oldest)
}

// len is how many buckets are remembered.
func (l *local) len() int {
	n := 0
	for i := range l.shards {
		l.shards[i].mu.Lock()
		n += len(l.shards[i].tat)
		l.shards[i].mu.Unlock()
	}
	return n
}
