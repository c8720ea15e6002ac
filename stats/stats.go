// Package stats provides the llm_stats handler, which finishes the record of
// every request through the gateway and hands it to recorder modules in the
// llm.stats namespace, and the built-in recorders.
package stats

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmoneapi/llmoneapi/internal/directive"
	promreg "github.com/llmoneapi/llmoneapi/internal/metrics"
	"github.com/llmoneapi/llmoneapi/llm"
)

func init() {
	caddy.RegisterModule(new(Handler))
}

// Recorder receives the record of every finished request. Record runs on a
// worker goroutine of the recorder's own, never on the request's; an error
// counts the record as failed (or as dropped, when it wraps ErrDropped).
//
// The record is the recorder's own copy, taken when the response ended:
// later changes by the request's handlers do not reach it, and it holds no
// request body (Request is nil). Its Identity and Attempts are shared with
// the other recorders of the request, so treat them as read-only.
//
// Calls to one recorder are serialized, so Record needs no locking of its
// own. The worker and its queue live across config reloads (they are kept
// per recorder config in a caddy.UsagePool): after a reload that keeps a
// recorder's config, the worker goes on with the records still queued and
// hands them, and every later one, to the recorder of the new config. Caddy
// cleans up modules in no set order, so Record may run after the
// recorder's own Cleanup (during a reload, or the final drain at shutdown):
// it must then fail or do its best, never panic. The context is cancelled
// when the handler gives up draining the queue at shutdown.
type Recorder interface {
	Record(ctx context.Context, c llm.Call) error
}

// BatchRecorder is a Recorder that takes records in batches, which a store
// writes in one round trip. Its worker collects up to size records, or what
// arrived within interval of the first one, and calls RecordBatch with
// them; Record is then used only if Batch returns a size below 2. The slice
// is reused after RecordBatch returns: keep none of it.
type BatchRecorder interface {
	Recorder
	// Batch returns the largest batch and how long the first record of a
	// batch may wait for more.
	Batch() (size int, interval time.Duration)
	// RecordBatch writes the calls. An error counts every one of them as
	// failed (as dropped, when it wraps ErrDropped); the host does not
	// retry, so a recorder that must not lose records retries or spools
	// them itself.
	RecordBatch(ctx context.Context, calls []llm.Call) error
}

// Spooler is a recorder that can keep records on local storage when its
// queue is full (a durable sink whose store is slow). Spool runs on the
// request's goroutine, possibly from many at once, so it must be quick and
// safe for concurrent use; an error means the record is dropped.
type Spooler interface {
	Spool(c llm.Call) error
}

// ErrDropped marks a recorder error that lost its records on purpose (a
// spool that is full, for example): they are counted as dropped rather than
// failed.
var ErrDropped = errors.New("records dropped")

// DefaultQueueSize is the number of records buffered per recorder when the
// config sets none.
const DefaultQueueSize = 4096

// Handler is the llm_stats HTTP middleware. It starts the request's llm.Call
// record if no handler did yet, lets the rest of the chain run, then completes
// the record (duration, final status, whether the client went away) and hands
// a copy of it to each of its recorders through a bounded queue. The
// response never waits on a recorder: when a recorder falls behind and its
// queue is full, new records go to its spool if it has one (see Spooler) and
// are otherwise dropped and counted.
//
// Queues and their workers are kept per recorder config across config
// reloads, so a reload neither loses queued records nor restarts a sink;
// changing a recorder's config (or queue_size) starts a new worker and lets
// the old one write what it holds.
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
//   - {llm.cost}: what the call cost in USD, from the model's price
//   - {llm.served_model}: the model that served the call (the asked one or a fallback)
//   - {llm.attempts}: how many upstream tries the call took
//
// Metrics: llmoneapi_stats_records_total{recorder,result} counts records per
// recorder module name, with result "ok", "failed", "spooled" (queue full,
// kept in the recorder's spool) or "dropped".
type Handler struct {
	// The recorders that receive every finished record, in order. Each is
	// an llm.stats.* module, named by the "recorder" key.
	RecordersRaw []json.RawMessage `json:"recorders,omitempty" caddy:"namespace=llm.stats inline_key=recorder"`

	// How many records are buffered per recorder before new ones are
	// spooled or dropped (and counted). Default: 4096.
	QueueSize int `json:"queue_size,omitempty"`

	workers []*worker
	// keys are the workers' keys in the pool, and targets what this
	// handler pointed each at: one reference each.
	keys    []string
	targets []*target

	mu      sync.Mutex
	cleaned bool
}

// CaddyModule returns the Caddy module information. The receiver is a
// pointer because Handler holds a mutex, which must not be copied.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.llm_stats",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision loads the recorders and gets a worker for each, the one already
// running for the same config if any.
func (h *Handler) Provision(ctx caddy.Context) error {
	if h.QueueSize < 0 {
		return fmt.Errorf("queue_size must not be negative, got %d", h.QueueSize)
	}
	if h.QueueSize == 0 {
		h.QueueSize = DefaultQueueSize
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}

	// LoadModule clears the raw configs, and they are the workers' keys.
	keys, err := workerKeys(h.RecordersRaw, h.QueueSize)
	if err != nil {
		return err
	}
	mods, err := ctx.LoadModule(h, "RecordersRaw")
	if err != nil {
		return fmt.Errorf("loading stats recorders: %w", err)
	}
	logger := ctx.Logger()
	for i, mod := range mods.([]any) {
		id := mod.(caddy.Module).CaddyModule().ID
		rec, ok := mod.(Recorder)
		if !ok {
			return fmt.Errorf("loading stats recorders: module %s is not a stats recorder (it has no Record method)", id)
		}
		w, t, err := acquireWorker(keys[i], id.Name(), rec, h.QueueSize, logger)
		if err != nil {
			return err
		}
		h.keys = append(h.keys, keys[i])
		h.workers = append(h.workers, w)
		h.targets = append(h.targets, t)
	}
	return nil
}

// workerKeys names each recorder's worker by its config: the same config
// in the next config load (or another llm_stats handler) shares the worker,
// and a recorder written twice in one handler gets two.
func workerKeys(raws []json.RawMessage, queueSize int) ([]string, error) {
	keys := make([]string, len(raws))
	seen := make(map[string]int, len(raws))
	for i, raw := range raws {
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return nil, fmt.Errorf("recorder %d: %w", i, err)
		}
		k := strconv.Itoa(queueSize) + "|" + b.String()
		seen[k]++
		keys[i] = k + "|" + strconv.Itoa(seen[k])
	}
	return keys, nil
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
	if len(h.workers) > 0 {
		rec := snapshot(c)
		for _, wk := range h.workers {
			wk.send(rec)
		}
	}
	return err
}

// snapshot copies the record for the recorders, field by field so that
// neither the request body nor the handlers' admission hooks (which may
// hold the request) stay alive in a queue. TestSnapshotCopiesEveryField
// fails when llm.Call gains a field this does not copy.
func snapshot(c *llm.Call) llm.Call {
	s := llm.Call{
		ID:            c.ID,
		Start:         c.Start,
		Duration:      c.Duration,
		Endpoint:      c.Endpoint,
		Model:         c.Model,
		UpstreamModel: c.UpstreamModel,
		Provider:      c.Provider,
		Upstream:      c.Upstream,
		Stream:        c.Stream,
		Status:        c.Status,
		Usage:         c.Usage,
		UsageSource:   c.UsageSource,
		TTFT:          c.TTFT,
		Truncated:     c.Truncated,
		ClientAborted: c.ClientAborted,
		Error:         c.Error,
		ErrorCode:     c.ErrorCode,
		API:           c.API,
		ServedModel:   c.ServedModel,
		Cost:          c.Cost,
	}
	if c.Identity != nil {
		id := *c.Identity
		s.Identity = &id
	}
	if c.Price != nil {
		p := *c.Price
		s.Price = &p
	}
	if len(c.Attempts) > 0 {
		s.Attempts = slices.Clone(c.Attempts)
	}
	return s
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

// Cleanup lets go of the workers. A worker that no other config uses stops
// taking records and gets a bounded time to write what is queued.
// Requests of this config that end later still reach the workers the next
// config shares.
func (h *Handler) Cleanup() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cleaned {
		return nil
	}
	h.cleaned = true
	var errs []error
	for i, k := range h.keys {
		errs = append(errs, releaseWorker(k, h.workers[i], h.targets[i]))
	}
	return errors.Join(errs...)
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
			Help:      "Request records handed to stats recorders, by recorder module and result (ok, failed, spooled, dropped).",
		}, []string{"recorder", "result"})
	})
	if err := promreg.Register(reg, metrics.records); err != nil {
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
