package stats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/llmoneapi/llmoneapi/llm"
)

// workers holds the queue and worker of every recorder config in use, so
// that they outlive a config reload that keeps the config.
var workers = caddy.NewUsagePool()

// drainTimeout bounds how long a stopping worker may take to write what is
// still queued, so that a slow sink cannot stall a config reload or
// shutdown. A variable so that tests can shorten it.
var drainTimeout = 5 * time.Second

// worker is one recorder config's queue and the goroutine that empties it.
type worker struct {
	name  string
	queue chan llm.Call
	// current is the recorder of the newest config using this worker,
	// the last of targets (guarded by targetsMu).
	current   atomic.Pointer[target]
	targetsMu sync.Mutex
	targets   []*target
	// batch is the most records per RecordBatch call, interval how long the
	// first of them waits for more; batch < 2 means Record one at a time.
	batch    int
	interval time.Duration

	// mu orders sends against Destruct: send holds it shared, so once
	// Destruct holds it exclusively and sets closed, no send is underway
	// and the queue can be drained to empty.
	mu     sync.RWMutex
	closed bool
	// stop is closed by Destruct to make the worker drain and exit; the
	// queue itself is never closed, so a late sender cannot panic.
	stop chan struct{}
	// done is closed by the worker when it exits.
	done chan struct{}
	// cancel aborts a recorder still writing when Destruct stops waiting.
	cancel context.CancelFunc

	// The counters, curried once so that the hot path does no label lookup.
	ok, failed, spooled, dropped prometheus.Counter
}

// target is a recorder and the logger of the config it came from.
type target struct {
	rec    Recorder
	logger *zap.Logger
}

// acquireWorker returns the worker for key, starting it if no config uses
// it yet, and points it at rec. Each call is matched by a releaseWorker
// with the same target.
func acquireWorker(key, name string, rec Recorder, queueSize int, logger *zap.Logger) (*worker, *target, error) {
	t := &target{rec, logger}
	v, _, err := workers.LoadOrNew(key, func() (caddy.Destructor, error) {
		return newWorker(name, rec, queueSize), nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("starting stats recorder %s: %w", name, err)
	}
	w := v.(*worker)
	w.targetsMu.Lock()
	w.targets = append(w.targets, t)
	w.current.Store(t)
	w.targetsMu.Unlock()
	return w, t, nil
}

// releaseWorker lets go of the worker for key, acquired with t: the
// worker goes back to the recorder of the newest config still using it
// (a config that failed to load gives the worker back to the running
// one), and stops when none is left.
func releaseWorker(key string, w *worker, t *target) error {
	w.targetsMu.Lock()
	if i := slices.Index(w.targets, t); i >= 0 && len(w.targets) > 1 {
		w.targets = slices.Delete(w.targets, i, i+1)
		w.current.Store(w.targets[len(w.targets)-1])
	}
	w.targetsMu.Unlock()
	// The last target stays current, for the drain.
	if _, err := workers.Delete(key); err != nil {
		return fmt.Errorf("stopping stats recorder %s: %w", w.name, err)
	}
	return nil
}

func newWorker(name string, rec Recorder, queueSize int) *worker {
	w := &worker{
		name:    name,
		queue:   make(chan llm.Call, queueSize),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		ok:      metrics.records.WithLabelValues(name, "ok"),
		failed:  metrics.records.WithLabelValues(name, "failed"),
		spooled: metrics.records.WithLabelValues(name, "spooled"),
		dropped: metrics.records.WithLabelValues(name, "dropped"),
	}
	if b, ok := rec.(BatchRecorder); ok {
		w.batch, w.interval = b.Batch()
	}
	// Recorders get a context of their own: Caddy cancels the config's
	// context before Cleanup runs, and the worker outlives the config.
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go w.run(ctx)
	return w
}

// send queues c without ever waiting: when the queue is full (or the
// worker stopped), c goes to the recorder's spool if it has one, and is
// dropped (and counted) if not.
func (w *worker) send(c llm.Call) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	// A closed worker is one whose every config is gone, and the request
	// outlived it (a long stream across a reload that changed the
	// recorder's config): like a full queue, it leaves only the spool.
	if !w.closed {
		select {
		case w.queue <- c:
			return
		default:
		}
	}
	if sp, ok := w.current.Load().rec.(Spooler); ok {
		if err := sp.Spool(c); err == nil {
			w.spooled.Inc()
			return
		}
	}
	w.dropped.Inc()
}

// Destruct stops taking records, gives the recorder a bounded time to write
// what is queued, then abandons the rest. The pool calls it when the last
// config using the worker is cleaned up.
func (w *worker) Destruct() error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	defer w.cancel()

	close(w.stop)
	timer := time.NewTimer(drainTimeout)
	defer timer.Stop()
	select {
	case <-w.done:
	case <-timer.C:
		w.current.Load().logger.Warn("stats recorder did not write its queued records in time; the rest are dropped",
			zap.String("recorder", w.name),
			zap.Int("queued", len(w.queue)),
			zap.Duration("timeout", drainTimeout))
	}
	return nil
}

// run is the worker's goroutine.
func (w *worker) run(ctx context.Context) {
	defer close(w.done)
	if w.batch < 2 {
		w.runSingle(ctx)
		return
	}
	w.runBatches(ctx)
}

func (w *worker) runSingle(ctx context.Context) {
	for {
		select {
		case c := <-w.queue:
			w.record(ctx, c)
		case <-w.stop:
			// Nothing is added to the queue once stop is closed, so this ends.
			for {
				select {
				case c := <-w.queue:
					w.record(ctx, c)
				default:
					return
				}
			}
		}
	}
}

// runBatches hands the recorder batches of up to w.batch records, each
// written at the latest w.interval after its first record arrived.
func (w *worker) runBatches(ctx context.Context) {
	buf := make([]llm.Call, 0, w.batch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		timer.Stop()
		if len(buf) == 0 {
			return
		}
		w.recordBatch(ctx, buf)
		clear(buf) // let go of the records' strings
		buf = buf[:0]
	}
	for {
		select {
		case c := <-w.queue:
			buf = append(buf, c)
			if len(buf) >= w.batch {
				flush()
			} else if len(buf) == 1 {
				timer.Reset(w.interval)
			}
		case <-timer.C:
			flush()
		case <-w.stop:
			for {
				select {
				case c := <-w.queue:
					buf = append(buf, c)
					if len(buf) >= w.batch {
						flush()
					}
				default:
					flush()
					return
				}
			}
		}
	}
}

// record hands c to the recorder and counts the outcome. Once ctx is
// cancelled, Destruct has given up on this recorder, so records still
// queued are counted as dropped instead of being handed to it.
func (w *worker) record(ctx context.Context, c llm.Call) {
	if ctx.Err() != nil {
		w.dropped.Inc()
		return
	}
	t := w.current.Load()
	err := safely(func() error { return t.rec.Record(ctx, c) })
	w.count(t, err, 1, c.ID)
}

func (w *worker) recordBatch(ctx context.Context, calls []llm.Call) {
	if ctx.Err() != nil {
		w.dropped.Add(float64(len(calls)))
		return
	}
	t := w.current.Load()
	b, ok := t.rec.(BatchRecorder)
	if !ok {
		// A reload swapped in a recorder of another kind under the same
		// config: impossible for one module, but cheap to get right.
		for _, c := range calls {
			w.count(t, safely(func() error { return t.rec.Record(ctx, c) }), 1, c.ID)
		}
		return
	}
	err := safely(func() error { return b.RecordBatch(ctx, calls) })
	w.count(t, err, len(calls), calls[0].ID)
}

// count counts n records with the outcome err and logs a failure, naming
// the (first) record's id.
func (w *worker) count(t *target, err error, n int, id string) {
	switch {
	case err == nil:
		w.ok.Add(float64(n))
		return
	case errors.Is(err, ErrDropped):
		w.dropped.Add(float64(n))
	default:
		w.failed.Add(float64(n))
	}
	if ce := t.logger.Check(zapcore.WarnLevel, "stats recorder failed"); ce != nil {
		ce.Write(zap.String("recorder", w.name), zap.String("request_id", id), zap.Int("records", n), zap.Error(err))
	}
}

// safely turns a recorder's panic into an error: the worker runs outside
// any request, so nothing else would recover it and Caddy would crash.
func safely(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("recorder panicked: %v", p)
		}
	}()
	return f()
}

// Interface guards
var _ caddy.Destructor = (*worker)(nil)
