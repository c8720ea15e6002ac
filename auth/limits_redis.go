package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/llmoneapi/llmoneapi/internal/redisdb"
)

func init() {
	caddy.RegisterModule(RedisCounters{})
}

// RedisCounters keeps the limit counters in Redis, shared by every instance
// that names the same server and prefix, so that a fleet holds one set of
// limits. Each limit check is one Lua script run (atomic: every counter of
// the check is tested and changed together, never read and then written).
// A check goes to Redis at once when no other is on its way; the checks
// that arrive meanwhile share the next round trip, a pipeline of their
// script runs, which Redis runs one by one in arrival order. While checks
// come often (the last round trip went less than four BatchWaits ago), a
// check that finds no other to go with waits up to BatchWait for others to
// share its round trip: under load many then share its cost (the
// write, the read, waking Redis up), which is CPU that Redis, shared by the
// fleet, and the gateway no longer spend. Settlements and slot releases after a
// response are queued and sent in batches, off the request's path, and
// retried while Redis is unreachable (as long as their window lasts).
//
// When Redis does not answer within Timeout, the check fails and llm_auth
// applies on_store_error; for the next second checks fail at once instead
// of waiting, then Redis is tried again, so the gateway recovers by itself
// when Redis is back. The counters are in Redis, so config reloads and
// restarts keep them. A single Redis server (or a primary) is expected:
// one check touches several keys, which Redis Cluster would spread over
// slots.
type RedisCounters struct {
	// The Redis server: redis://[[user]:password@]host:port/db, or rediss://
	// for TLS. Placeholders such as {env.REDIS_URL} are resolved when the
	// config loads. go-redis options may be added as query parameters
	// (?dial_timeout=1s&max_retries=0).
	URL string `json:"url"`

	// The prefix of every counter's Redis key, so that several gateways
	// (or tests) can share a server. Default: "llm:limits:".
	Prefix string `json:"prefix,omitempty"`

	// How long a limit check waits for Redis before on_store_error applies.
	// Default: 250ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// How long a limit check may wait for others to share its round trip
	// to Redis. A check waits only when it finds no other to go with while
	// checks come often (the last round trip went less than four
	// BatchWaits ago), and not again soon after three checks in a row
	// waited and none joined them, so that a lone client's checks seldom
	// wait. Negative: never wait. Default: 250µs.
	BatchWait caddy.Duration `json:"batch_wait,omitempty"`

	shared *redisShared
	key    string
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (RedisCounters) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.auth.limits.redis",
		New: func() caddy.Module { return new(RedisCounters) },
	}
}

const (
	defaultRedisPrefix  = "llm:limits:"
	defaultRedisTimeout = 250 * time.Millisecond
	// defaultBatchWait is BatchWait's default: at 5,000 checks a second
	// (bench/run.sh's fleet streams) it took Redis's CPU per call from
	// about 16.5 to 14 µs, and a few microseconds off the gateway's.
	defaultBatchWait = 250 * time.Microsecond
	// batchWaitBusy: checks wait while the last pipeline went less than
	// this many BatchWaits ago, a millisecond by default: checks then come
	// at a thousand a second or more, and one that waits has others join
	// it most of the time (at 5,000 a second, seven times in ten).
	batchWaitBusy = 4
	// batchWaitRest is how many pipelines go at once after batchWaitAlone
	// checks in a row waited and no other joined them, before waiting is
	// tried again; each lone wait after a rest doubles the rest, up to
	// batchWaitRestMax, and a wait that others join ends the doubling. A
	// lone client's checks then seldom wait, which matters: in a process
	// with nothing else to do, a timer under a millisecond takes about a
	// millisecond. One check alone is no sign of a lone client: at 5,000
	// checks a second, a wait of 250µs sees no other check about three
	// times in ten.
	batchWaitRest    = 16
	batchWaitRestMax = 4096
	batchWaitAlone   = 3
	// redisRetryEvery is how long checks fail at once after Redis failed
	// one, and how often the settlement queue retries.
	redisRetryEvery = time.Second
	// redisQueue bounds the settlements waiting for Redis, in calls.
	redisQueue = 16384
	// redisBatch is the most calls' settlements sent in one script run.
	redisBatch = 64
	// giveLinger is how long queued settlements wait for a pipeline of
	// checks to carry them before the giveLoop sends them itself; while
	// checks keep coming, up to giveLingers times that.
	giveLinger  = 5 * time.Millisecond
	giveLingers = 4
	// redisTakeBatch is the most checks sent in one pipeline.
	redisTakeBatch = 64
	// flushTimeout bounds a settlement run, and the flush of the queue
	// when the last config using it is unloaded.
	flushTimeout = 2 * time.Second
)

// redisPool holds one redisShared per server and prefix, so that reloads
// keep the settlement queue and its worker.
var redisPool = caddy.NewUsagePool()

// Provision connects (lazily) to Redis.
func (rc *RedisCounters) Provision(ctx caddy.Context) error {
	rc.logger = ctx.Logger()
	url := caddy.NewReplacer().ReplaceAll(rc.URL, "")
	if url == "" {
		return errors.New("limits redis needs the server's URL, e.g. redis://127.0.0.1:6379/0")
	}
	if rc.Prefix == "" {
		rc.Prefix = defaultRedisPrefix
	}
	if rc.Timeout == 0 {
		rc.Timeout = caddy.Duration(defaultRedisTimeout)
	}
	if rc.BatchWait == 0 {
		rc.BatchWait = caddy.Duration(defaultBatchWait)
	}
	rc.key = url + "\x00" + rc.Prefix
	v, _, err := redisPool.LoadOrNew(rc.key, func() (caddy.Destructor, error) {
		client, err := redisdb.Acquire(url)
		if err != nil {
			return nil, err
		}
		s := &redisShared{client: client, url: url, prefix: rc.Prefix, logger: rc.logger,
			takes: make(chan *take, redisTakeBatch), queue: make(chan []Op, redisQueue),
			kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
		go s.takeLoop()
		go s.giveLoop()
		return s, nil
	})
	if err != nil {
		return fmt.Errorf("limits redis: %w", err)
	}
	rc.shared = v.(*redisShared)
	// The config loaded last sets it for every config sharing the queue.
	rc.shared.batchWait.Store(int64(rc.BatchWait))
	return nil
}

// Validate checks the settings.
func (rc *RedisCounters) Validate() error {
	if rc.Timeout < 0 {
		return fmt.Errorf("limits redis: timeout must not be negative, got %v", time.Duration(rc.Timeout))
	}
	if rc.BatchWait > caddy.Duration(rc.Timeout)/2 {
		return fmt.Errorf("limits redis: batch_wait %v must be under half the timeout (%v)", time.Duration(rc.BatchWait), time.Duration(rc.Timeout))
	}
	return nil
}

// Cleanup lets go of the shared client and queue; the last config using
// them flushes the queue and closes the connection.
func (rc *RedisCounters) Cleanup() error {
	if rc.shared != nil {
		_, _ = redisPool.Delete(rc.key)
	}
	return nil
}

// Take implements Counters with one script run, sent by a takeLoop.
func (rc *RedisCounters) Take(ctx context.Context, now time.Time, ops []Op, values []int64) (bool, error) {
	s := rc.shared
	if until := s.downUntil.Load(); now.UnixNano() < until {
		return false, fmt.Errorf("%w: redis %s failed a moment ago; trying again in %v",
			ErrStoreUnavailable, redisdb.Redact(s.url), time.Duration(until-now.UnixNano()).Round(time.Millisecond))
	}
	t := takePool.Get().(*take)
	t.args = append(t.args[:0], "evalsha", takeHash, len(ops))
	for i := range ops {
		t.args = append(t.args, s.prefix+ops[i].Name)
	}
	t.args = append(t.args, now.UnixMilli())
	for i := range ops {
		op := &ops[i]
		t.args = append(t.args, op.Add, op.Limit, unixMilli(op.Expires), op.Slot)
	}
	res, err := s.send(ctx, t, time.Duration(rc.Timeout))
	if err == nil && len(res) != len(ops)+1 {
		err = fmt.Errorf("the take script answered %d values for %d counters", len(res), len(ops))
	}
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err() // the client went away, not Redis
		}
		s.downUntil.Store(time.Now().Add(redisRetryEvery).UnixNano())
		return false, fmt.Errorf("%w: redis %s: %w", ErrStoreUnavailable, redisdb.Redact(s.url), err)
	}
	copy(values, res[1:])
	return res[0] == 1, nil
}

// send hands t to a takeLoop and waits for its answer, at most timeout: the
// takeLoop also bounds the round trip by it, but go-redis does not heed it
// everywhere (a new connection's handshake). A check given up on stays with
// its takeLoop, which still answers it, so only an answered one goes back
// to the pool.
func (s *redisShared) send(ctx context.Context, t *take, timeout time.Duration) ([]int64, error) {
	t.deadline = time.Now().Add(timeout)
	t.timer.Reset(timeout)
	select {
	case s.takes <- t:
		select {
		case <-t.done:
			t.timer.Stop()
			res, err := t.res, t.err
			clear(t.args) // let go of the keys while pooled
			t.res, t.err = nil, nil
			takePool.Put(t)
			return res, err
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.timer.C:
		case <-s.stop:
			return nil, errUnloaded
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.timer.C:
	case <-s.stop:
		return nil, errUnloaded
	}
	return nil, fmt.Errorf("no answer within %v: %w", timeout, context.DeadlineExceeded)
}

var errUnloaded = errors.New("the store was unloaded")

// Give implements Counters: the ops join the settlement queue, which the
// next pipeline of checks carries, ahead of its checks, or else the
// giveLoop after giveLinger. When the queue is full (Redis has been down a
// long while) they are dropped and logged.
func (rc *RedisCounters) Give(_ time.Time, ops []Op) {
	rc.shared.queueGive(ops)
}

func (s *redisShared) queueGive(ops []Op) {
	select {
	case s.queue <- ops:
	default:
		s.dropped(len(ops), "the settlement queue is full")
		return
	}
	s.kickGives()
}

// kickGives wakes the giveLoop, unless it is already awake.
func (s *redisShared) kickGives() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	limits redis <url> {
//	    prefix     <prefix>
//	    timeout    <duration>
//	    batch_wait <duration>|off
//	}
func (rc *RedisCounters) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume module name
	if !d.AllArgs(&rc.URL) {
		return d.Err("'limits redis' takes the server's URL: 'limits redis redis://127.0.0.1:6379/0'")
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "prefix":
			if !d.AllArgs(&rc.Prefix) {
				return d.ArgErr()
			}
		case "timeout":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			t, err := caddy.ParseDuration(s)
			if err != nil || t <= 0 {
				return d.Errf("limits redis timeout: '%s' is not a positive duration", s)
			}
			rc.Timeout = caddy.Duration(t)
		case "batch_wait":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			if v == "off" {
				rc.BatchWait = -1
				break
			}
			t, err := caddy.ParseDuration(v)
			if err != nil || t <= 0 {
				return d.Errf("limits redis batch_wait: '%s' is not a positive duration, nor 'off'", v)
			}
			rc.BatchWait = caddy.Duration(t)
		default:
			return d.Errf("unrecognized limits redis subdirective '%s'", d.Val())
		}
	}
	return nil
}

// redisShared is the client and settlement queue of one server and prefix.
type redisShared struct {
	client    *redis.Client
	url       string
	prefix    string
	logger    *zap.Logger
	downUntil atomic.Int64 // unix ns until which checks fail at once

	takes     chan *take
	queue     chan []Op
	kick      chan struct{} // wakes the giveLoop when a settlement is queued
	pipelines atomic.Uint64 // the pipelines of checks sent so far
	batchWait atomic.Int64  // RedisCounters.BatchWait, ns
	stop      chan struct{} // closed by Destruct: the loops end
	done      chan struct{} // closed when the giveLoop has flushed
	dropMu    sync.Mutex
	lastDrop  time.Time
	dropCount int
}

// Destruct flushes what it can of the queue, for at most flushTimeout, and
// closes the client. Checks still in flight end with it, with an error.
func (s *redisShared) Destruct() error {
	close(s.stop)
	<-s.done
	redisdb.Release(s.url)
	return nil
}

// take is one limit check on its way to Redis and back.
type take struct {
	args     []any // of the EVALSHA command
	deadline time.Time
	res      []int64
	err      error
	done     chan struct{} // receives once the check is answered
	timer    *time.Timer   // stopped while pooled
}

var takePool = sync.Pool{New: func() any {
	t := &take{done: make(chan struct{}, 1), timer: time.NewTimer(time.Hour)}
	t.timer.Stop()
	return t
}}

// takeHash is takeScript's hash, boxed once rather than per check.
var takeHash any = takeScript.Hash()

// takeLoop sends the checks: the first that comes goes with every other
// already waiting (up to redisTakeBatch) in the same pipeline, at once or,
// when none is and checks come often, after waiting up to batchWait for
// more. Checks that already share pipelines (clients that do nothing but
// check, as BenchmarkLimitCheckParallel's) never wait: there, waiting
// doubled the time a check took and added half to its CPU. One pipeline in flight at a time: with two or four
// (BenchmarkLimitCheckParallel) batches were smaller and each check cost
// more CPU, for no more checks a second on two cores.
func (s *redisShared) takeLoop() {
	pipe := s.client.Pipeline()
	batch := make([]*take, 0, redisTakeBatch)
	cmds := make([]*redis.IntSliceCmd, 0, redisTakeBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var pace pacer
	for {
		select {
		case t := <-s.takes:
			batch = append(batch[:0], t)
		case <-s.stop:
			return
		}
	drain:
		for len(batch) < redisTakeBatch {
			select {
			case t := <-s.takes:
				batch = append(batch, t)
			default:
				break drain
			}
		}
		if wait := time.Duration(s.batchWait.Load()); wait > 0 && len(batch) == 1 && pace.wait(wait, time.Now()) {
			batch = s.gather(batch, timer, wait)
			pace.waited(len(batch) > 1)
		}
		pace.sent = time.Now()
		cmds = s.runTakes(pipe, batch, cmds[:0])
		clear(batch)
		clear(cmds)
	}
}

// pacer decides for takeLoop whether a check that found no other to go
// with waits for company (RedisCounters.BatchWait).
type pacer struct {
	sent    time.Time // when the last pipeline went
	alone   int       // checks in a row that waited and none joined
	rest    int       // pipelines to send at once before waiting again
	restLen int       // the next rest's length, batchWaitRest when 0
}

// wait reports whether such a check waits up to d, at now.
func (p *pacer) wait(d time.Duration, now time.Time) bool {
	if p.rest > 0 {
		p.rest--
		return false
	}
	return now.Sub(p.sent) < batchWaitBusy*d
}

// waited records whether others joined a check that waited.
func (p *pacer) waited(joined bool) {
	if joined {
		p.alone, p.restLen = 0, 0
		return
	}
	if p.alone++; p.alone >= batchWaitAlone {
		// After the rest, one more lone wait rests again, twice as long.
		p.alone, p.rest = batchWaitAlone-1, max(p.restLen, batchWaitRest)
		p.restLen = min(2*p.rest, batchWaitRestMax)
	}
}

// gather adds to batch the checks that come within wait, up to
// redisTakeBatch.
func (s *redisShared) gather(batch []*take, timer *time.Timer, wait time.Duration) []*take {
	timer.Reset(wait)
	defer timer.Stop()
	for len(batch) < redisTakeBatch {
		select {
		case t := <-s.takes:
			batch = append(batch, t)
		case <-timer.C:
			return batch
		case <-s.stop:
			return batch
		}
	}
	return batch
}

// runTakes sends the checks of batch in one pipeline, and answers each. The
// pipeline's deadline is the earliest of theirs; a check whose deadline has
// passed while it waited is not sent.
func (s *redisShared) runTakes(pipe redis.Pipeliner, batch []*take, cmds []*redis.IntSliceCmd) []*redis.IntSliceCmd {
	now := time.Now()
	var deadline time.Time
	live := batch[:0]
	for _, t := range batch {
		if !now.Before(t.deadline) {
			t.err = context.DeadlineExceeded
			t.done <- struct{}{}
			continue
		}
		if deadline.IsZero() || t.deadline.Before(deadline) {
			deadline = t.deadline
		}
		live = append(live, t)
	}
	if len(live) == 0 {
		return cmds
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	// The settlements queued so far go first: the checks then see them,
	// and they cost no round trip of their own.
	s.pipelines.Add(1)
	gives := s.queuedGives(nil)
	var give *redis.Cmd
	if len(gives) > 0 {
		keys, args := s.giveArgs(gives)
		give = pipe.EvalSha(ctx, giveScript.Hash(), keys, args...)
	}
	for _, t := range live {
		cmd := redis.NewIntSliceCmd(ctx, t.args...)
		cmds = append(cmds, cmd)
		_ = pipe.Process(ctx, cmd)
	}
	_, _ = pipe.Exec(ctx) // each command keeps its own error
	if give != nil && give.Err() != nil {
		if redis.HasErrorPrefix(give.Err(), "NOSCRIPT") {
			_ = giveScript.Load(ctx, s.client).Err()
		}
		for _, ops := range gives {
			s.queueGive(ops) // for the next pipeline, or the giveLoop's retries
		}
	}
	s.redoUnloaded(ctx, pipe, live, cmds)
	for i, t := range live {
		t.res, t.err = cmds[i].Result()
		t.done <- struct{}{}
	}
	return cmds
}

// redoUnloaded loads the take script when Redis does not have it (its
// script cache was flushed, or it restarted) and sends again the checks it
// refused; they did not run.
func (s *redisShared) redoUnloaded(ctx context.Context, pipe redis.Pipeliner, batch []*take, cmds []*redis.IntSliceCmd) {
	var loadErr error
	loaded := false
	for i, cmd := range cmds {
		if err := cmd.Err(); err == nil || !redis.HasErrorPrefix(err, "NOSCRIPT") {
			continue
		}
		if !loaded {
			loaded = true
			if loadErr = takeScript.Load(ctx, s.client).Err(); loadErr != nil {
				loadErr = fmt.Errorf("loading the take script: %w", loadErr)
			}
		}
		if loadErr != nil {
			cmd.SetErr(loadErr)
			continue
		}
		cmds[i] = redis.NewIntSliceCmd(ctx, batch[i].args...)
		_ = pipe.Process(ctx, cmds[i])
	}
	if loaded && loadErr == nil {
		_, _ = pipe.Exec(ctx)
	}
}

// giveLoop sends the settlements that no pipeline of checks carried
// within giveLinger, in batches, one script run each, retrying a failed
// batch every redisRetryEvery. Once stopped it flushes what is queued, for
// at most flushTimeout.
func (s *redisShared) giveLoop() {
	defer close(s.done)
	var pending [][]Op
	stop := s.stop
	var flushBy time.Time
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		// Wait for a settlement, then give the checks a moment to carry it.
		if len(pending) == 0 && stop != nil {
			select {
			case <-s.kick:
				for range giveLingers {
					ran := s.pipelines.Load()
					linger.Reset(giveLinger)
					select {
					case <-linger.C:
					case <-stop:
						linger.Stop()
						stop, flushBy = nil, time.Now().Add(flushTimeout)
					}
					if stop == nil || s.pipelines.Load() == ran {
						break // no checks came to carry them
					}
				}
			case <-stop:
				stop, flushBy = nil, time.Now().Add(flushTimeout)
			}
		}
		pending = s.queuedGives(pending)
		if len(pending) == 0 {
			if stop == nil {
				return // stopped and flushed
			}
			continue // the checks carried them
		}
		err := s.give(pending)
		if err == nil {
			pending = pending[:0]
			if len(s.queue) > 0 {
				s.kickGives() // more than one batch was queued
			}
			continue
		}
		s.logger.Warn("could not settle limit counters in Redis; retrying",
			zap.String("redis", redisdb.Redact(s.url)), zap.Int("calls", len(pending)), zap.Error(err))
		wait := redisRetryEvery
		if stop == nil {
			wait = min(wait, time.Until(flushBy))
		}
		select {
		case <-time.After(wait):
		case <-stop:
			stop, flushBy = nil, time.Now().Add(flushTimeout)
		}
		if stop == nil && !time.Now().Before(flushBy) {
			n := 0
			for _, ops := range pending {
				n += len(ops)
			}
			s.dropped(n, "Redis did not answer before the config was unloaded")
			return
		}
		pending = unexpired(pending)
	}
}

// queuedGives adds to pending the settlements queued now, up to
// redisBatch calls in all, without waiting.
func (s *redisShared) queuedGives(pending [][]Op) [][]Op {
	for len(pending) < redisBatch {
		select {
		case ops := <-s.queue:
			pending = append(pending, ops)
		default:
			return pending
		}
	}
	return pending
}

// give runs the give script over the batches.
func (s *redisShared) give(batches [][]Op) error {
	keys, args := s.giveArgs(batches)
	if len(keys) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	return giveScript.Run(ctx, s.client, keys, args...).Err()
}

// giveArgs are the give script's keys and arguments for the batches, the
// adds of many calls to one counter's window summed into one.
func (s *redisShared) giveArgs(batches [][]Op) ([]string, []any) {
	type window struct {
		name    string
		expires int64
	}
	var keys []string
	args := []any{time.Now().UnixMilli()}
	var added map[window]int // the index in args of a window's add
	for _, ops := range batches {
		for i := range ops {
			op := &ops[i]
			if op.Slot == "" {
				w := window{op.Name, unixMilli(op.Expires)}
				if j, ok := added[w]; ok {
					args[j] = args[j].(int64) + op.Add
					continue
				}
				if added == nil {
					added = make(map[window]int)
				}
				added[w] = len(args)
			}
			keys = append(keys, s.prefix+op.Name)
			args = append(args, op.Add, unixMilli(op.Expires), op.Slot)
		}
	}
	return keys, args
}

// unexpired drops the ops whose window ended while Redis was away.
func unexpired(batches [][]Op) [][]Op {
	now := time.Now()
	out := batches[:0]
	for _, ops := range batches {
		kept := ops[:0]
		for _, op := range ops {
			if op.Expires.IsZero() || now.Before(op.Expires) {
				kept = append(kept, op)
			}
		}
		if len(kept) > 0 {
			out = append(out, kept)
		}
	}
	return out
}

// dropped logs lost settlements, at most once a minute with a count.
func (s *redisShared) dropped(n int, why string) {
	s.dropMu.Lock()
	defer s.dropMu.Unlock()
	s.dropCount += n
	if time.Since(s.lastDrop) < time.Minute {
		return
	}
	s.logger.Error("dropped limit settlements: counters may stay high until their window ends, and concurrency slots until their lease ends",
		zap.String("redis", redisdb.Redact(s.url)), zap.Int("ops", s.dropCount), zap.String("reason", why))
	s.lastDrop, s.dropCount = time.Now(), 0
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// takeScript checks every counter, then applies every op only if all fit.
// ARGV: now (ms), then per key: add, limit, expires (ms, 0: never), slot.
//
// A counter is added to first and the add taken back if any op does not
// fit: the common case, where all fit, then costs one INCRBY per counter
// instead of a GET and an INCRBY, and the script runs in about three quarters
// of the time (Redis's CPU is what a fleet's checks share). Nothing sees
// the add in between: the script runs alone. A plain counter gets its
// expiry when INCRBY makes it (its value is then the add): every op on one
// name has the same expiry, the end of the window the name is for, so
// setting it again would only cost Redis a call per counter and check.
var takeScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local n = #KEYS
local out = {1}
for i = 1, n do
  local b = 2 + (i - 1) * 4
  local add, limit, slot = tonumber(ARGV[b]), tonumber(ARGV[b + 1]), ARGV[b + 3]
  local cur
  if slot ~= "" then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    cur = redis.call('ZCARD', KEYS[i])
    if add > 0 then add = 1 end
  elseif add ~= 0 then
    local v = redis.call('INCRBY', KEYS[i], add)
    cur = v - add
    local exp = tonumber(ARGV[b + 2])
    if exp > 0 and v == add then redis.call('PEXPIREAT', KEYS[i], exp) end
  else
    cur = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
  out[i + 1] = cur
  if limit > 0 and cur + add > limit then out[1] = 0 end
end
for i = 1, n do
  local b = 2 + (i - 1) * 4
  local add, slot = tonumber(ARGV[b]), ARGV[b + 3]
  if slot ~= "" then
    if add > 0 and out[1] == 1 then
      local exp = tonumber(ARGV[b + 2])
      redis.call('ZADD', KEYS[i], exp, slot)
      redis.call('PEXPIREAT', KEYS[i], exp)
      out[i + 1] = out[i + 1] + 1
    end
  elseif add ~= 0 then
    if out[1] == 1 then
      out[i + 1] = out[i + 1] + add
    else
      redis.call('DECRBY', KEYS[i], add)
    end
  end
end
return out
`)

// giveScript applies settlements unconditionally: slot releases, and adds
// to counters whose window has not ended, never below 0.
// ARGV: now (ms), then per key: add, expires (ms, 0: never), slot.
var giveScript = redis.NewScript(`
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
  local b = 2 + (i - 1) * 3
  local add, exp, slot = tonumber(ARGV[b]), tonumber(ARGV[b + 1]), ARGV[b + 2]
  if slot ~= "" then
    if add < 0 then redis.call('ZREM', KEYS[i], slot) end
  elseif (exp == 0 or exp > now) and not (add < 0 and redis.call('EXISTS', KEYS[i]) == 0) then
    local v = redis.call('INCRBY', KEYS[i], add)
    if v < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
    if exp > 0 and v == add then redis.call('PEXPIREAT', KEYS[i], exp) end
  end
end
return 1
`)

// Interface guards
var (
	_ Counters              = (*RedisCounters)(nil)
	_ caddy.Provisioner     = (*RedisCounters)(nil)
	_ caddy.Validator       = (*RedisCounters)(nil)
	_ caddy.CleanerUpper    = (*RedisCounters)(nil)
	_ caddyfile.Unmarshaler = (*RedisCounters)(nil)
)
