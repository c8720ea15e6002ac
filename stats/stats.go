// Package stats provides the llm_stats handler, which finishes the record of
// every request through the gateway and hands it to recorder modules in the
// llm.stats namespace, and the built-in recorders.
package stats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/llmoneapi/llmoneapi/internal/directive"
	"github.com/llmoneapi/llmoneapi/llm"
)

func init() {
	caddy.RegisterModule(new(Handler))
}

// Recorder receives the record of every finished request. Record runs on the
// recorder's own goroutine, never on the request's; an error counts the record as failed.
//
// Calls to one recorder are serialized, so Record needs no locking of its
// own, and the Call must be treated as read-only. The context is cancelled
// when the handler gives up draining its queue at shutdown. Caddy cleans up
// modules in no set order, so during that drain Record may run after the
// recorder's own Cleanup: it must then fail or do its best, never panic.
type Recorder interface {
	Record(ctx context.Context, c *llm.Call) error
}

// DefaultQueueSize is the number of records buffered per recorder when the
// config sets none.
const DefaultQueueSize = 4096

// drainTimeout bounds how long Cleanup waits for recorders to write what is
// still queued, so that a slow sink cannot stall a config reload or shutdown.
// A variable so that tests can shorten it.
var drainTimeout = 5 * time.Second

// Handler is the llm_stats HTTP middleware. It starts the request's llm.Call
// record if no handler did yet, lets the rest of the chain run, then completes
// the record (duration, final status, whether the client went away) and hands
// it to each of its recorders through a bounded queue. The response never
// waits on a recorder: when a recorder falls behind and its queue is full,
// new records are dropped for it and counted.
//
// It sets these placeholders, which resolve to the record's latest state, so
// they also work in access logs and log_append after the response:
//
//   - {llm.user}: the user the client key belongs to
//   - {llm.key_id}: the public id of the client key (never the key)
//   - {llm.model}: the model the client asked for
//   - {llm.upstream_model}: the model name sent upstream
//   - {llm.provider}: the provider module that served the call
//   - {llm.upstream}: the upstream host that served the call
//   - {llm.usage.prompt_tokens}: prompt tokens used
//   - {llm.usage.completion_tokens}: completion tokens used
//   - {llm.usage.total_tokens}: total tokens used
//   - {llm.usage.source}: where the usage figures came from (none, upstream, ...)
//   - {llm.ttft_ms}: milliseconds to the first response byte; empty if none was sent
//   - {llm.stream}: whether the client asked for a streamed response
//
// Metrics: llmoneapi_stats_records_total{recorder,result} counts records per
// recorder module name, with result "ok", "failed" or "dropped".
type Handler struct {
	// The recorders that receive every finished record, in order. Each is
	// an llm.stats.* module, named by the "recorder" key.
	RecordersRaw []json.RawMessage `json:"recorders,omitempty" caddy:"namespace=llm.stats inline_key=recorder"`

	// How many records are buffered per recorder before new ones are
	// dropped (and counted as dropped). Default: 4096.
	QueueSize int `json:"queue_size,omitempty"`

	sinks  []*sink
	logger *zap.Logger
	// cancel aborts recorders still draining when Cleanup stops waiting.
	cancel context.CancelFunc

	// mu orders enqueueing against Cleanup: ServeHTTP holds it shared while
	// it sends, so once Cleanup holds it exclusively and sets closed, no
	// send can still be underway and the queues can be drained to empty.
	mu     sync.RWMutex
	closed bool
}

// sink is one recorder with its queue and worker.
type sink struct {
	name  string
	rec   Recorder
	queue chan *llm.Call
	// stop is closed by Cleanup to make the worker drain and exit; the
	// queue itself is never closed, so a late sender cannot panic.
	stop chan struct{}
	// done is closed by the worker when it exits.
	done   chan struct{}
	logger *zap.Logger

	// The counters, curried once so that the hot path does no label lookup.
	ok, failed, dropped prometheus.Counter
}

// CaddyModule returns the Caddy module information. The receiver is a
// pointer because Handler holds a mutex, which must not be copied.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.llm_stats",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision loads the recorders and starts one worker per recorder.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.QueueSize < 0 {
		return fmt.Errorf("queue_size must not be negative, got %d", h.QueueSize)
	}
	if h.QueueSize == 0 {
		h.QueueSize = DefaultQueueSize
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}

	mods, err := ctx.LoadModule(h, "RecordersRaw")
	if err != nil {
		return fmt.Errorf("loading stats recorders: %w", err)
	}
	sinks := make([]*sink, 0, len(mods.([]any)))
	for _, mod := range mods.([]any) {
		id := mod.(caddy.Module).CaddyModule().ID
		rec, ok := mod.(Recorder)
		if !ok {
			return fmt.Errorf("loading stats recorders: module %s is not a stats recorder (it has no Record method)", id)
		}
		name := id.Name()
		sinks = append(sinks, &sink{
			name:    name,
			rec:     rec,
			queue:   make(chan *llm.Call, h.QueueSize),
			stop:    make(chan struct{}),
			done:    make(chan struct{}),
			logger:  h.logger,
			ok:      metrics.records.WithLabelValues(name, "ok"),
			failed:  metrics.records.WithLabelValues(name, "failed"),
			dropped: metrics.records.WithLabelValues(name, "dropped"),
		})
	}

	// Recorders get a context of their own: Caddy cancels the config's
	// context before Cleanup runs, which would fail every record still
	// queued for the drain.
	workCtx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.sinks = sinks
	for _, s := range sinks {
		go s.run(workCtx)
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	c := llm.CallFrom(r)
	sw := &statusWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
	err := next.ServeHTTP(sw, r)

	c.Duration = time.Since(c.Start)
	if c.Status == 0 {
		c.Status = finalStatus(sw.status, err)
	}
	if errors.Is(r.Context().Err(), context.Canceled) {
		c.ClientAborted = true
	}
	h.enqueue(c)
	return err
}

// finalStatus is the status the client got when no handler recorded one.
func finalStatus(written int, err error) int {
	if written != 0 {
		return written
	}
	if err == nil {
		// net/http sends 200 when a handler writes nothing.
		return http.StatusOK
	}
	// Caddy's server answers an unwritten error with its status, 500 if none.
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode != 0 {
		return he.StatusCode
	}
	return http.StatusInternalServerError
}

// enqueue hands c to every recorder without ever waiting for one.
func (h *Handler) enqueue(c *llm.Call) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, s := range h.sinks {
		if h.closed {
			// A request that outlived its config (a long stream across a
			// reload) ends after Cleanup; count it rather than lose it silently.
			s.dropped.Inc()
			continue
		}
		select {
		case s.queue <- c:
		default:
			s.dropped.Inc()
		}
	}
}

// Cleanup stops taking records, gives the recorders a bounded time to write
// what is queued, then abandons the rest.
func (h *Handler) Cleanup() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()

	// Provision failed before it started any worker: nothing to stop.
	if h.cancel == nil {
		return nil
	}
	defer h.cancel()

	for _, s := range h.sinks {
		close(s.stop)
	}
	wait, stopWaiting := context.WithTimeout(context.Background(), drainTimeout)
	defer stopWaiting()
	for _, s := range h.sinks {
		select {
		case <-s.done:
		case <-wait.Done():
			h.logger.Warn("stats recorder did not write its queued records in time; the rest are dropped",
				zap.String("recorder", s.name),
				zap.Int("queued", len(s.queue)),
				zap.Duration("timeout", drainTimeout))
		}
	}
	return nil
}

// run is the worker of one recorder.
func (s *sink) run(ctx context.Context) {
	defer close(s.done)
	for {
		select {
		case c := <-s.queue:
			s.record(ctx, c)
		case <-s.stop:
			s.drain(ctx)
			return
		}
	}
}

// drain writes what is left in the queue. Nothing is added to it any more
// once stop is closed, so it ends.
func (s *sink) drain(ctx context.Context) {
	for {
		select {
		case c := <-s.queue:
			s.record(ctx, c)
		default:
			return
		}
	}
}

// record hands c to the recorder and counts the outcome. Once ctx is
// cancelled, Cleanup has given up on this recorder, so records still queued
// are counted as dropped instead of being handed to it.
func (s *sink) record(ctx context.Context, c *llm.Call) {
	if ctx.Err() != nil {
		s.dropped.Inc()
		return
	}
	err := s.safeRecord(ctx, c)
	if err == nil {
		s.ok.Inc()
		return
	}
	s.failed.Inc()
	if ce := s.logger.Check(zapcore.WarnLevel, "stats recorder failed"); ce != nil {
		ce.Write(zap.String("recorder", s.name), zap.String("request_id", c.ID), zap.Error(err))
	}
}

// safeRecord turns a recorder's panic into an error: the worker runs outside
// any request, so nothing else would recover it and Caddy would crash.
func (s *sink) safeRecord(ctx context.Context, c *llm.Call) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("recorder panicked: %v", p)
		}
	}()
	return s.rec.Record(ctx, c)
}

// statusWriter notes the status of the response as it is written. Flush,
// Hijack and the like reach the underlying writer through Unwrap, which
// http.ResponseController follows.
type statusWriter struct {
	caddyhttp.ResponseWriterWrapper
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	// 1xx responses other than 101 are informational; the final status follows.
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriterWrapper.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriterWrapper.Write(b)
}

// ReadFrom is overridden because the promoted one would write past the
// status check.
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriterWrapper.ReadFrom(r)
}

// metrics are package-level so that their values survive config reloads; each
// config's registry gets the same collectors.
var metrics struct {
	once    sync.Once
	records *prometheus.CounterVec
}

func registerMetrics(reg *prometheus.Registry) error {
	metrics.once.Do(func() {
		metrics.records = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "llmoneapi",
			Subsystem: "stats",
			Name:      "records_total",
			Help:      "Request records handed to stats recorders, by recorder module and result (ok, failed, dropped).",
		}, []string{"recorder", "result"})
	})
	// Several llm_stats handlers in one config register the same collector.
	var are prometheus.AlreadyRegisteredError
	if err := reg.Register(metrics.records); err != nil && !errors.As(err, &are) {
		return fmt.Errorf("registering stats metrics: %w", err)
	}
	return nil
}

// ParseCaddyfile sets up an llm_stats handler from Caddyfile tokens, for
// httpcaddyfile.RegisterHandlerDirective.
func ParseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	s := new(Handler)
	if err := s.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return s, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	llm_stats [<matcher>] {
//	    queue_size <n>
//	    <recorder> [<args...>] [{
//	        ...
//	    }]
//	}
//
// Every subdirective other than queue_size names an llm.stats.<recorder>
// module, which parses its own arguments and block; recorders may repeat and
// run in the order written. Without a block, records are still made (and
// placeholders set) but go nowhere.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if name == "queue_size" {
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return d.Errf("bad queue_size '%s': must be a positive whole number", d.Val())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			h.QueueSize = n
			continue
		}

		mod, raw, err := directive.Guest(d, "llm_stats", "llm.stats", "recorder", "recorder")
		if err != nil {
			return err
		}
		if _, ok := mod.(Recorder); !ok {
			return d.Errf("module %T is not a stats recorder", mod)
		}
		h.RecordersRaw = append(h.RecordersRaw, raw)
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
