package auth_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	caddy2 "github.com/caddyserver/caddy/v2" // keycmd_test.go has a func caddy
	"github.com/redis/go-redis/v9"

	"github.com/llmoneapi/llmoneapi/auth"
	"github.com/llmoneapi/llmoneapi/internal/llmtest"
)

// stores returns a fresh store of each built-in kind; the Redis one counts
// under a prefix of its own, removed after the test.
func stores(t testing.TB) map[string]auth.Counters {
	t.Helper()
	ctx, cancel := caddy2.NewContext(caddy2.Context{Context: context.Background()})
	t.Cleanup(cancel)
	mem := new(auth.MemoryCounters)
	if err := mem.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mem.Cleanup() })
	prefix := fmt.Sprintf("llmtest:limits:%s:%d:", t.Name(), time.Now().UnixNano())
	rc := &auth.RedisCounters{URL: llmtest.RedisURL, Prefix: prefix}
	if err := rc.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = rc.Cleanup()
		llmtest.ClearRedis(t, llmtest.RedisURL, prefix)
	})
	return map[string]auth.Counters{"memory": mem, "redis": rc}
}

// unique makes counter names of one test distinct from another's in the
// shared memory store.
func unique(t testing.TB, name string) string { return t.Name() + ":" + name }

// settled waits for Give's ops to land (Redis applies them off the caller's
// path) by polling a read-only Take.
func settled(t *testing.T, c auth.Counters, op auth.Op, want int64) {
	t.Helper()
	op.Add, op.Limit = 0, 0
	deadline := time.Now().Add(2 * time.Second)
	for {
		v := []int64{0}
		if _, err := c.Take(context.Background(), time.Now(), []auth.Op{op}, v); err != nil {
			t.Fatal(err)
		}
		if v[0] == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %d, want %d", op.Name, v[0], want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCountersTakeIsAllOrNothing(t *testing.T) {
	for name, c := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx, now := context.Background(), time.Now()
			exp := now.Add(time.Minute)
			a := auth.Op{Name: unique(t, "a"), Add: 3, Limit: 5, Expires: exp}
			b := auth.Op{Name: unique(t, "b"), Add: 2, Limit: 2, Expires: exp}
			v := make([]int64, 2)
			ok, err := c.Take(ctx, now, []auth.Op{a, b}, v)
			if err != nil || !ok || v[0] != 3 || v[1] != 2 {
				t.Fatalf("first take: ok=%v values=%v err=%v, want applied [3 2]", ok, v, err)
			}
			// a would fit (3+1 <= 5), b would not (2+1 > 2): neither changes.
			a.Add, b.Add = 1, 1
			ok, err = c.Take(ctx, now, []auth.Op{a, b}, v)
			if err != nil || ok || v[0] != 3 || v[1] != 2 {
				t.Fatalf("second take: ok=%v values=%v err=%v, want refused at [3 2]", ok, v, err)
			}
			// Give ignores limits and never goes below 0.
			c.Give(now, []auth.Op{{Name: a.Name, Add: -10, Expires: exp}, {Name: b.Name, Add: 4, Expires: exp}})
			settled(t, c, a, 0)
			settled(t, c, b, 6)
		})
	}
}

func TestCountersSlots(t *testing.T) {
	for name, c := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx, now := context.Background(), time.Now()
			slot := func(id string, lease time.Duration) auth.Op {
				return auth.Op{Name: unique(t, "slots"), Add: 1, Limit: 2, Expires: now.Add(lease), Slot: id}
			}
			v := []int64{0}
			for _, id := range []string{"r1", "r2"} {
				if ok, err := c.Take(ctx, now, []auth.Op{slot(id, time.Minute)}, v); err != nil || !ok {
					t.Fatalf("taking %s: ok=%v err=%v", id, ok, err)
				}
			}
			if ok, _ := c.Take(ctx, now, []auth.Op{slot("r3", time.Minute)}, v); ok || v[0] != 2 {
				t.Fatalf("third slot: ok=%v held=%d, want refused with 2 held", ok, v[0])
			}
			release := slot("r1", time.Minute)
			release.Add = -1
			c.Give(now, []auth.Op{release})
			settled(t, c, slot("probe", time.Minute), 1)
			// A slot whose lease ended no longer counts: a crashed holder
			// frees its slot by itself.
			later := now.Add(2 * time.Minute)
			if ok, err := c.Take(ctx, later, []auth.Op{{Name: unique(t, "slots"), Add: 1, Limit: 1, Expires: later.Add(time.Minute), Slot: "r4"}}, v); err != nil || !ok || v[0] != 1 {
				t.Fatalf("after the leases ended: ok=%v held=%d err=%v, want 1 held", ok, v[0], err)
			}
		})
	}
}

func TestCountersForgetEndedWindows(t *testing.T) {
	for name, c := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			now := time.Now()
			op := auth.Op{Name: unique(t, "w"), Add: 5, Limit: 5, Expires: now.Add(300 * time.Millisecond)}
			v := []int64{0}
			if ok, err := c.Take(ctx, now, []auth.Op{op}, v); err != nil || !ok {
				t.Fatalf("take: ok=%v err=%v", ok, err)
			}
			time.Sleep(400 * time.Millisecond)
			after := time.Now()
			// A settlement for an ended window is dropped, not applied to a
			// fresh counter.
			c.Give(after, []auth.Op{{Name: op.Name, Add: 7, Expires: op.Expires}})
			op.Add, op.Expires = 5, after.Add(time.Minute)
			if ok, err := c.Take(ctx, after, []auth.Op{op}, v); err != nil || !ok || v[0] != 5 {
				t.Fatalf("take in the new window: ok=%v value=%d err=%v, want applied at 5", ok, v[0], err)
			}
		})
	}
}

// TestCountersConcurrentTakes: the check is atomic, so many goroutines at
// once get exactly the limit.
func TestCountersConcurrentTakes(t *testing.T) {
	for name, c := range stores(t) {
		t.Run(name, func(t *testing.T) {
			op := auth.Op{Name: unique(t, "c"), Add: 1, Limit: 25, Expires: time.Now().Add(time.Minute)}
			var wg sync.WaitGroup
			var mu sync.Mutex
			granted := 0
			for range 100 {
				wg.Go(func() {
					v := []int64{0}
					ok, err := c.Take(context.Background(), time.Now(), []auth.Op{op}, v)
					if err != nil {
						t.Error(err)
					}
					if ok {
						mu.Lock()
						granted++
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if granted != 25 {
				t.Fatalf("%d takes granted, want exactly 25", granted)
			}
		})
	}
}

// TestRedisCountersExpire: a counter's Redis key expires at the end of its
// window from the op that makes it, through the takes and settlements that
// follow, a settlement below 0 included; a lifetime counter never does.
func TestRedisCountersExpire(t *testing.T) {
	rc := stores(t)["redis"].(*auth.RedisCounters)
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close()
	ctx, now := context.Background(), time.Now()
	end := now.Add(time.Minute).Truncate(time.Millisecond)
	for _, tc := range []struct {
		name    string
		expires time.Time
	}{{"window", end}, {"lifetime", time.Time{}}} {
		op := auth.Op{Name: unique(t, tc.name), Add: 5, Limit: 100, Expires: tc.expires}
		v := []int64{0}
		for range 2 {
			if ok, err := rc.Take(ctx, now, []auth.Op{op}, v); err != nil || !ok {
				t.Fatalf("%s: take: ok=%v err=%v", tc.name, ok, err)
			}
		}
		rc.Give(now, []auth.Op{{Name: op.Name, Add: -20, Expires: tc.expires}})
		settled(t, rc, op, 0)
		got, err := client.PExpireTime(ctx, rc.Prefix+op.Name).Result()
		if err != nil {
			t.Fatal(err)
		}
		want := time.Duration(end.UnixMilli()) * time.Millisecond
		if tc.expires.IsZero() {
			want = -1 // no expiry
		}
		if got != want {
			t.Errorf("%s: expires at %v, want %v", tc.name, got, want)
		}
	}
	// A refused take is taken back: the counter it made stays at 0, and
	// expires with its window.
	op := auth.Op{Name: unique(t, "refused"), Add: 5, Limit: 3, Expires: end}
	v := []int64{-1}
	if ok, err := rc.Take(ctx, now, []auth.Op{op}, v); err != nil || ok || v[0] != 0 {
		t.Fatalf("refused take: ok=%v value=%d err=%v, want refused at 0", ok, v[0], err)
	}
	if got, err := client.Get(ctx, rc.Prefix+op.Name).Result(); err != nil || got != "0" {
		t.Errorf("refused take left %q (%v), want 0", got, err)
	}
	if got, _ := client.PExpireTime(ctx, rc.Prefix+op.Name).Result(); got != time.Duration(end.UnixMilli())*time.Millisecond {
		t.Errorf("refused take's counter expires at %v, want %v", got, end)
	}
}

// BenchmarkLimitCheck is the check up front of a key with rpm,
// max_concurrent and tpm: one Take of three counters and the Give that
// frees the slot.
func BenchmarkLimitCheck(b *testing.B) {
	for _, name := range []string{"memory", "redis"} {
		b.Run(name, func(b *testing.B) {
			c := stores(b)[name]
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				limitCheck(b, c, i)
				i++
			}
		})
	}
}

// BenchmarkLimitCheckParallel is BenchmarkLimitCheck from 50 goroutines at
// once, as under bench/run.sh's load: the Redis store's checks then share
// round trips. cpu-ns/op is the process's CPU per check.
func BenchmarkLimitCheckParallel(b *testing.B) {
	for _, name := range []string{"memory", "redis"} {
		b.Run(name, func(b *testing.B) {
			c := stores(b)[name]
			var slot atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(max(1, 50/runtime.GOMAXPROCS(0)))
			report := auth.CPUPerOp(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					limitCheck(b, c, int(slot.Add(1)))
				}
			})
			report()
		})
	}
}

// limitCheck takes rpm, a concurrency slot (numbered i) and tpm, then
// frees the slot.
func limitCheck(b *testing.B, c auth.Counters, i int) {
	now := time.Now()
	start := now.Truncate(time.Minute)
	ops := []auth.Op{
		{Name: "key:bench:rpm:" + strconv.FormatInt(start.Unix(), 10), Add: 1, Limit: 1 << 40, Expires: start.Add(time.Minute)},
		{Name: "key:bench:concurrent", Add: 1, Limit: 1 << 40, Expires: now.Add(time.Hour), Slot: strconv.Itoa(i)},
		{Name: "key:bench:tpm:" + strconv.FormatInt(start.Unix(), 10), Limit: 1 << 40, Expires: start.Add(time.Minute)},
	}
	v := make([]int64, len(ops))
	if ok, err := c.Take(context.Background(), now, ops, v); err != nil || !ok {
		b.Errorf("ok=%v err=%v", ok, err)
		return
	}
	ops[1].Add = -1
	c.Give(now, ops[1:2])
}
