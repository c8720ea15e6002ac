package auth_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	caddy2 "github.com/caddyserver/caddy/v2" // keycmd_test.go has a func caddy
	"github.com/redis/go-redis/v9"

	"github.com/llmoneapi/llmoneapi/auth"
	"github.com/llmoneapi/llmoneapi/internal/llmtest"
)

// newRedisCounters provisions a RedisCounters on url under a prefix of the
// test's own, cleaned up after it, with other settings set by opts.
func newRedisCounters(t *testing.T, url string, timeout time.Duration, opts ...func(*auth.RedisCounters)) *auth.RedisCounters {
	t.Helper()
	ctx, cancel := caddy2.NewContext(caddy2.Context{Context: context.Background()})
	t.Cleanup(cancel)
	prefix := fmt.Sprintf("llmtest:limits:%s:%d:", t.Name(), time.Now().UnixNano())
	rc := &auth.RedisCounters{URL: url, Prefix: prefix, Timeout: caddy2.Duration(timeout)}
	for _, o := range opts {
		o(rc)
	}
	if err := rc.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Cleanup() })
	return rc
}

// takeAll runs n checks of op at once and returns the value each saw and
// whether it was admitted, in no particular order.
func takeAll(t *testing.T, rc *auth.RedisCounters, n int, op auth.Op) (admitted, refused []int64) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			v := []int64{0}
			ok, err := rc.Take(context.Background(), time.Now(), []auth.Op{op}, v)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Error(err)
			case ok:
				admitted = append(admitted, v[0])
			default:
				refused = append(refused, v[0])
			}
		})
	}
	close(start)
	wg.Wait()
	return admitted, refused
}

// pipelineCounter is a go-redis hook that counts the pipelines of checks
// and the checks in them.
type pipelineCounter struct{ pipelines, checks atomic.Int64 }

func (*pipelineCounter) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (*pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if cmds[0].Name() == "evalsha" {
			h.pipelines.Add(1)
			h.checks.Add(int64(len(cmds)))
		}
		return next(ctx, cmds)
	}
}

// TestRedisCountersShareRoundTrips: many checks at once on one counter
// admit exactly the limit, each seeing the counter as its script left it,
// in fewer round trips than checks.
func TestRedisCountersShareRoundTrips(t *testing.T) {
	// A client of the test's own, so that the hook counts only its checks.
	rc := newRedisCounters(t, llmtest.RedisURL+"?client_name=llmtest-share-round-trips", time.Second)
	t.Cleanup(func() { llmtest.ClearRedis(t, llmtest.RedisURL, rc.Prefix) })
	h := new(pipelineCounter)
	auth.RedisClient(rc).AddHook(h)

	admitted, refused := takeAll(t, rc, 200, auth.Op{Name: "c", Add: 1, Limit: 100, Expires: time.Now().Add(time.Minute)})
	slices.Sort(admitted)
	for i, v := range admitted {
		if v != int64(i+1) {
			t.Fatalf("admitted checks saw %v, want each of 1..100 once", admitted)
		}
	}
	if len(admitted) != 100 || len(refused) != 100 {
		t.Fatalf("%d admitted, %d refused; want 100 and 100", len(admitted), len(refused))
	}
	for _, v := range refused {
		if v != 100 {
			t.Fatalf("a refused check saw %d, want 100", v)
		}
	}
	pipelines, checks := h.pipelines.Load(), h.checks.Load()
	t.Logf("200 checks in %d round trips", pipelines)
	if checks != 200 {
		t.Fatalf("%d checks sent, want 200", checks)
	}
	if pipelines >= checks {
		t.Fatalf("%d round trips for %d concurrent checks: none shared", pipelines, checks)
	}
}

// TestRedisCountersBatchWait: while checks keep coming, a check waits up
// to batch_wait for others to share its round trip; a lone client's checks
// mostly go at once.
func TestRedisCountersBatchWait(t *testing.T) {
	const wait = 20 * time.Millisecond
	counted := func(t *testing.T, name string, batchWait time.Duration) (*auth.RedisCounters, *pipelineCounter) {
		rc := newRedisCounters(t, llmtest.RedisURL+"?client_name=llmtest-batch-wait-"+name, time.Second,
			func(rc *auth.RedisCounters) { rc.BatchWait = caddy2.Duration(batchWait) })
		t.Cleanup(func() { llmtest.ClearRedis(t, llmtest.RedisURL, rc.Prefix) })
		h := new(pipelineCounter)
		auth.RedisClient(rc).AddHook(h)
		return rc, h
	}
	op := auth.Op{Name: "c", Add: 1, Limit: 1 << 40, Expires: time.Now().Add(time.Minute)}
	take := func(t *testing.T, rc *auth.RedisCounters) {
		if ok, err := rc.Take(context.Background(), time.Now(), []auth.Op{op}, []int64{0}); !ok || err != nil {
			t.Errorf("check: %v %v", ok, err)
		}
	}
	// clients runs n clients, each making rounds checks one after another,
	// up to pause apart (at random), and returns the checks per round trip.
	clients := func(t *testing.T, rc *auth.RedisCounters, h *pipelineCounter, n, rounds int, pause time.Duration) float64 {
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				for range rounds {
					take(t, rc)
					if pause > 0 {
						time.Sleep(rand.N(pause))
					}
				}
			})
		}
		wg.Wait()
		if h.checks.Load() != int64(n*rounds) {
			t.Fatalf("%d checks sent, want %d", h.checks.Load(), n*rounds)
		}
		return float64(h.checks.Load()) / float64(h.pipelines.Load())
	}

	t.Run("lone", func(t *testing.T) {
		rc, h := counted(t, "lone", wait)
		start := time.Now()
		clients(t, rc, h, 1, 60, 0)
		// Waiting every time would take 60 × 20ms; after three lone waits
		// it waits once in 17.
		if took := time.Since(start); took > 600*time.Millisecond {
			t.Fatalf("60 checks one after another took %v", took)
		}
	})
	// Clients that do other work between their checks, as a gateway's
	// calls do, seldom meet in a pipeline on their own.
	t.Run("busy", func(t *testing.T) {
		off, hOff := counted(t, "off", -1)
		on, hOn := counted(t, "on", wait)
		shared, sharedOff := clients(t, on, hOn, 8, 20, 4*time.Millisecond), clients(t, off, hOff, 8, 20, 4*time.Millisecond)
		t.Logf("checks per round trip: %.1f with batch_wait %v, %.1f without", shared, wait, sharedOff)
		if shared < 3 || shared < 1.5*sharedOff {
			t.Fatalf("8 clients' checks shared round trips %.1f to one with batch_wait, %.1f without", shared, sharedOff)
		}
	})
}

// scriptCounter is a go-redis hook that counts the script runs sent on
// their own, not in a pipeline: the settlements.
type scriptCounter struct{ runs atomic.Int64 }

func (*scriptCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *scriptCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "evalsha" || cmd.Name() == "eval" {
			h.runs.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (*scriptCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// countedRedisCounters is a RedisCounters on a client of its own, named
// client, whose settlement runs h counts.
func countedRedisCounters(t *testing.T, client string) (rc *auth.RedisCounters, h *scriptCounter) {
	rc = newRedisCounters(t, llmtest.RedisURL+"?client_name="+client, time.Second)
	t.Cleanup(func() { llmtest.ClearRedis(t, llmtest.RedisURL, rc.Prefix) })
	h = new(scriptCounter)
	auth.RedisClient(rc).AddHook(h)
	return rc, h
}

// TestRedisCountersGivesRideWithTakes: calls that check and then settle a
// moment apart, as a busy gateway's do, send their settlements in the
// pipelines of the checks that follow them, not in round trips of their
// own, and leave the counter where one run per settlement would.
func TestRedisCountersGivesRideWithTakes(t *testing.T) {
	rc, h := countedRedisCounters(t, "llmtest-gives-ride")

	op := auth.Op{Name: "tpm", Add: 10, Limit: 100000, Expires: time.Now().Add(time.Minute)}
	// 100 calls reserve 10 tokens each; 50 used 3 fewer, 50 used 1 more.
	for i := range 100 {
		if ok, err := rc.Take(context.Background(), time.Now(), []auth.Op{op}, []int64{0}); !ok || err != nil {
			t.Fatalf("take %d: %v %v", i, ok, err)
		}
		add := int64(-3)
		if i%2 == 0 {
			add = 1
		}
		rc.Give(time.Now(), []auth.Op{{Name: "tpm", Add: add, Expires: op.Expires}})
		time.Sleep(100 * time.Microsecond)
	}
	settled(t, rc, op, 100*10-50*3+50)
	if runs := h.runs.Load(); runs > 10 {
		t.Errorf("100 settlements, each followed by a check, took %d script runs of their own, want them carried by the checks", runs)
	}
}

// TestRedisCountersGivesAlone: settlements that no check follows land
// after a moment by themselves, gathered into fewer runs than calls.
func TestRedisCountersGivesAlone(t *testing.T) {
	rc, h := countedRedisCounters(t, "llmtest-gives-alone")

	op := auth.Op{Name: "tpm", Add: 500, Limit: 1000, Expires: time.Now().Add(time.Minute)}
	if ok, err := rc.Take(context.Background(), time.Now(), []auth.Op{op}, []int64{0}); !ok || err != nil {
		t.Fatalf("take: %v %v", ok, err)
	}
	for range 20 {
		rc.Give(time.Now(), []auth.Op{{Name: "tpm", Add: -5, Expires: op.Expires}})
	}
	// Not settled(): its checks would carry the settlements.
	deadline := time.Now().Add(2 * time.Second)
	for h.runs.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if runs := h.runs.Load(); runs == 0 || runs >= 20 {
		t.Errorf("20 settlements at once took %d script runs, want them sent together", runs)
	}
	settled(t, rc, op, 500-20*5)
}

// TestRedisCountersReloadScript: when Redis has lost the take script (a
// restart, SCRIPT FLUSH), the checks refused for it are sent again, once.
func TestRedisCountersReloadScript(t *testing.T) {
	r := llmtest.StartRedis(t)
	rc := newRedisCounters(t, r.URL, time.Second)
	op := auth.Op{Name: "c", Add: 1, Limit: 40, Expires: time.Now().Add(time.Minute)}
	if admitted, _ := takeAll(t, rc, 1, op); len(admitted) != 1 {
		t.Fatal("the first check was not admitted")
	}
	if err := auth.RedisClient(rc).ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	admitted, refused := takeAll(t, rc, 50, op)
	if len(admitted) != 39 || len(refused) != 11 {
		t.Fatalf("after SCRIPT FLUSH: %d admitted, %d refused; want 39 and 11", len(admitted), len(refused))
	}
}

// TestRedisCountersDown: with Redis refusing connections or never
// answering, every one of many concurrent checks fails with
// ErrStoreUnavailable within the timeout, and a caller that goes away
// returns at once.
func TestRedisCountersDown(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	go func() {
		var held []net.Conn // open, never answered
		defer func() {
			for _, c := range held {
				_ = c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	const timeout = 100 * time.Millisecond
	const slack = 400 * time.Millisecond // a busy machine, the race detector
	for _, tc := range []struct{ name, url string }{
		{"refused", fmt.Sprintf("redis://127.0.0.1:%d/0", llmtest.FreePort(t))},
		{"silent", "redis://" + silent.Addr().String() + "/0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newRedisCounters(t, tc.url, timeout)
			var wg sync.WaitGroup
			for range 50 {
				wg.Go(func() {
					start := time.Now()
					_, err := rc.Take(context.Background(), start, []auth.Op{{Name: "c", Add: 1, Limit: 10}}, []int64{0})
					if took := time.Since(start); !errors.Is(err, auth.ErrStoreUnavailable) || took > timeout+slack {
						t.Errorf("check answered %v after %v; want ErrStoreUnavailable within %v", err, took, timeout)
					}
				})
			}
			wg.Wait()

			// The caller's context, not the store's timeout, ends this one.
			rc = newRedisCounters(t, tc.url, time.Minute)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := rc.Take(ctx, start, []auth.Op{{Name: "c", Add: 1, Limit: 10}}, []int64{0})
			if took := time.Since(start); took > 20*time.Millisecond+slack {
				t.Errorf("a caller gone after 20ms was answered after %v", took)
			}
			// Refused at once, Redis may answer before the context ends.
			if tc.name == "silent" && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("a caller gone after 20ms got %v, want its context's error", err)
			}
		})
	}
}
