package stats

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/llmoneapi/llmoneapi/llm"
)

func init() {
	caddy.RegisterModule(Memory{})
}

// DefaultMaxGroups is how many models, users, keys or upstreams the memory
// recorder tells apart when the config sets no max_groups.
const DefaultMaxGroups = 200

// otherGroup collects the values beyond max_groups.
const otherGroup = "(other)"

// Memory is a stats recorder that keeps totals in memory: per model, user,
// key and upstream, the requests, errors (status 400 and up), tokens by
// kind, cost, and latency and time-to-first-token averages and percentiles.
// It keeps them over the process's lifetime and per minute for the last
// hour and per hour for the last day, and answers the stats API from them
// (as a stats.Querier) when no database recorder is configured. The totals
// live across config reloads; when Caddy stops, a summary per model is
// logged.
//
// Memory is bounded: at most max_groups values per dimension are told
// apart (later ones count as "(other)"), percentiles come from fixed-size
// histograms (buckets 1.5x apart from 1ms, so within about 25%), and a
// query older than a day sees only the lifetime totals (without From/To).
type Memory struct {
	// The most models, users, keys and upstreams told apart, each.
	// Default: 200.
	MaxGroups int `json:"max_groups,omitempty"`

	key        string
	state      *memState
	unregister func()
}

// CaddyModule returns the Caddy module information.
func (Memory) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.stats.memory",
		New: func() caddy.Module { return new(Memory) },
	}
}

// memStates holds the memory recorders' totals, per config, across reloads.
var memStates = caddy.NewUsagePool()

// memoryNow is the memory recorder's clock; tests move it.
var memoryNow = time.Now

// Provision gets the totals kept for this config, or starts them.
func (m *Memory) Provision(ctx caddy.Context) error {
	if m.MaxGroups < 0 {
		return fmt.Errorf("memory: max_groups must not be negative, got %d", m.MaxGroups)
	}
	if m.MaxGroups == 0 {
		m.MaxGroups = DefaultMaxGroups
	}
	m.key = "memory|" + strconv.Itoa(m.MaxGroups)
	v, _, err := memStates.LoadOrNew(m.key, func() (caddy.Destructor, error) {
		return newMemState(m.MaxGroups, ctx.Logger()), nil
	})
	if err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	m.state = v.(*memState)
	m.unregister = RegisterQuerier(m, false)
	return nil
}

// Cleanup stops answering queries and lets go of the totals; the last
// config using them logs the summary.
func (m *Memory) Cleanup() error {
	if m.unregister != nil {
		m.unregister()
	}
	if m.state != nil {
		if _, err := memStates.Delete(m.key); err != nil {
			return fmt.Errorf("memory: %w", err)
		}
	}
	return nil
}

// Record implements Recorder.
func (m *Memory) Record(_ context.Context, c llm.Call) error {
	m.state.add(c)
	return nil
}

// Query implements Querier.
func (m *Memory) Query(_ context.Context, q Query) ([]Row, error) {
	return m.state.query(q)
}

// The dimensions totals are kept by; dimTotal is every call.
const (
	dimTotal = iota
	dimModel
	dimUser
	dimKey
	dimUpstream
	dims
)

var dimNames = map[string]int{"": dimTotal, "model": dimModel, "user": dimUser, "key": dimKey, "upstream": dimUpstream}

type groupKey struct {
	dim   int
	value string
}

// memState is the totals of one memory recorder config.
type memState struct {
	maxGroups int
	logger    *zap.Logger

	mu       sync.Mutex
	lifetime map[groupKey]*memAgg
	// seen counts the values told apart per dimension.
	seen    [dims]int
	minutes [60]memSlot
	hours   [24]memSlot
}

// memSlot is the totals of one minute or hour.
type memSlot struct {
	start  int64 // Unix seconds; 0 when unused
	groups map[groupKey]*memAgg
}

func newMemState(maxGroups int, logger *zap.Logger) *memState {
	return &memState{maxGroups: maxGroups, logger: logger, lifetime: map[groupKey]*memAgg{}}
}

func (s *memState) add(c llm.Call) {
	var user, key string
	if c.Identity != nil {
		user, key = c.Identity.User, c.Identity.KeyID
	}
	values := [dims]string{dimModel: c.Model, dimUser: user, dimKey: key, dimUpstream: c.Upstream}
	t := c.Start
	if t.IsZero() {
		t = memoryNow()
	}
	// Each of the call's 15 totals (5 dimensions, 3 spans) counts it in the
	// same buckets: found once, outside the lock.
	duration, ttft := bucket(c.Duration), bucket(c.TTFT)
	s.mu.Lock()
	defer s.mu.Unlock()
	spans := [2]*memSlot{s.slot(s.minutes[:], t, 60), s.slot(s.hours[:], t, 3600)}
	for dim := range dims {
		k := groupKey{dim, values[dim]}
		a := s.lifetime[k]
		if a == nil {
			if dim != dimTotal && s.seen[dim] >= s.maxGroups {
				k.value = otherGroup
				a = s.lifetime[k]
			} else if dim != dimTotal {
				s.seen[dim]++
			}
			if a == nil {
				a = new(memAgg)
				s.lifetime[k] = a
			}
		}
		a.add(&c, duration, ttft)
		for i, sl := range spans {
			if sl == nil {
				continue
			}
			// The lifetime total keeps its current minute's and hour's, so
			// that a call costs one map lookup per dimension, not three.
			sa := a.spans[i]
			if sa == nil || a.spanStarts[i] != sl.start {
				if sa = sl.groups[k]; sa == nil {
					sa = new(memAgg)
					sl.groups[k] = sa
				}
				a.spans[i], a.spanStarts[i] = sa, sl.start
			}
			sa.add(&c, duration, ttft)
		}
	}
}

// slot returns the slot of ring (of slots width seconds long) that t falls
// in, emptying a slot left from an earlier round; nil when t is older than
// the ring.
func (s *memState) slot(ring []memSlot, t time.Time, width int64) *memSlot {
	start := t.Unix() / width * width
	if memoryNow().Unix()-start >= width*int64(len(ring)) {
		return nil
	}
	sl := &ring[(start/width)%int64(len(ring))]
	if sl.start != start {
		if sl.start > start {
			return nil // a newer round holds the slot
		}
		sl.start, sl.groups = start, map[groupKey]*memAgg{}
	}
	return sl
}

func (s *memState) query(q Query) ([]Row, error) {
	dim, ok := dimNames[q.GroupBy]
	if !ok {
		return nil, fmt.Errorf("cannot group by '%s': use model, user, key or upstream", q.GroupBy)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if q.From.IsZero() && q.To.IsZero() && q.Bucket == 0 {
		return rows(dim, map[int64]map[groupKey]*memAgg{0: s.lifetime}, false), nil
	}
	// The finest slots that reach back to From.
	ring, width := s.minutes[:], int64(60)
	if q.From.IsZero() || memoryNow().Sub(q.From) > time.Hour || q.Bucket >= time.Hour {
		ring, width = s.hours[:], 3600
	}
	bucket := max(int64(q.Bucket/time.Second), width)
	merged := map[int64]map[groupKey]*memAgg{}
	oldest := memoryNow().Unix() - width*int64(len(ring))
	for i := range ring {
		sl := &ring[i]
		if sl.start == 0 || sl.start <= oldest ||
			(!q.From.IsZero() && sl.start < q.From.Unix()) || (!q.To.IsZero() && sl.start >= q.To.Unix()) {
			continue
		}
		b := int64(0)
		if q.Bucket > 0 {
			b = sl.start / bucket * bucket
		}
		groups := merged[b]
		if groups == nil {
			groups = map[groupKey]*memAgg{}
			merged[b] = groups
		}
		for k, a := range sl.groups {
			if k.dim != dim {
				continue
			}
			into := groups[k]
			if into == nil {
				into = new(memAgg)
				groups[k] = into
			}
			into.merge(a)
		}
	}
	return rows(dim, merged, q.Bucket > 0), nil
}

// rows turns totals per bucket (Unix seconds) into Rows, ordered by
// bucket and group.
func rows(dim int, buckets map[int64]map[groupKey]*memAgg, bucketed bool) []Row {
	var out []Row
	for b, groups := range buckets {
		for k, a := range groups {
			if k.dim != dim {
				continue
			}
			r := a.row(k.value)
			if bucketed {
				r.Bucket = time.Unix(b, 0).UTC()
			}
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Row) int {
		return cmp.Or(a.Bucket.Compare(b.Bucket), cmp.Compare(a.Group, b.Group))
	})
	return out
}

// Destruct logs the lifetime totals per model: Caddy is stopping, or the
// config no longer has this recorder.
func (s *memState) Destruct() error {
	totals, _ := s.query(Query{GroupBy: "model"})
	for _, r := range totals {
		s.logger.Info("llm stats summary",
			zap.String("model", r.Group),
			zap.Int64("requests", r.Requests),
			zap.Int64("errors", r.Errors),
			zap.Int64("prompt_tokens", r.PromptTokens),
			zap.Int64("completion_tokens", r.CompletionTokens),
			zap.Int64("total_tokens", r.TotalTokens),
			zap.Float64("cost", r.Cost),
			zap.Float64("duration_p50", r.DurationP50),
			zap.Float64("duration_p95", r.DurationP95))
	}
	return nil
}

// memAgg is the totals of one group in one slot.
type memAgg struct {
	requests, errors                  int64
	prompt, completion, cached, total int64
	cost                              float64
	durationSum, ttftSum              float64
	ttftCount                         int64
	duration, ttft                    histogram

	// For a lifetime total: its totals in the minute and the hour (slots
	// starting at spanStarts) it last counted a call in.
	spans      [2]*memAgg
	spanStarts [2]int64
}

// add counts c, whose duration and time to first byte fall in the
// histogram buckets given.
func (a *memAgg) add(c *llm.Call, duration, ttft int) {
	a.requests++
	if c.Status >= 400 {
		a.errors++
	}
	a.prompt += c.Usage.PromptTokens
	a.completion += c.Usage.CompletionTokens
	a.cached += c.Usage.CachedTokens
	a.total += c.Usage.TotalTokens
	a.cost += c.Cost
	a.durationSum += c.Duration.Seconds()
	a.duration[duration]++
	if c.TTFT > 0 {
		a.ttftSum += c.TTFT.Seconds()
		a.ttftCount++
		a.ttft[ttft]++
	}
}

func (a *memAgg) merge(b *memAgg) {
	a.requests += b.requests
	a.errors += b.errors
	a.prompt += b.prompt
	a.completion += b.completion
	a.cached += b.cached
	a.total += b.total
	a.cost += b.cost
	a.durationSum += b.durationSum
	a.ttftSum += b.ttftSum
	a.ttftCount += b.ttftCount
	for i := range a.duration {
		a.duration[i] += b.duration[i]
		a.ttft[i] += b.ttft[i]
	}
}

func (a *memAgg) row(group string) Row {
	r := Row{
		Group: group, Requests: a.requests, Errors: a.errors,
		PromptTokens: a.prompt, CompletionTokens: a.completion, CachedTokens: a.cached, TotalTokens: a.total,
		Cost:        a.cost,
		DurationP50: a.duration.quantile(0.5), DurationP95: a.duration.quantile(0.95),
		TTFTP50: a.ttft.quantile(0.5), TTFTP95: a.ttft.quantile(0.95),
	}
	if a.requests > 0 {
		r.DurationAvg = a.durationSum / float64(a.requests)
	}
	if a.ttftCount > 0 {
		r.TTFTAvg = a.ttftSum / float64(a.ttftCount)
	}
	return r
}

// histogram counts durations in buckets growing 1.5x from 1ms: bucket 0 is
// up to 1ms, bucket i up to 1.5^i ms, the last everything beyond ~2h.
type histogram [histBuckets]uint32

const (
	histBuckets = 40
	histGrowth  = 1.5
)

// bucket returns the histogram bucket d falls in.
func bucket(d time.Duration) int {
	ms := float64(d) / float64(time.Millisecond)
	if ms <= 1 {
		return 0
	}
	return min(int(math.Ceil(math.Log(ms)/math.Log(histGrowth))), histBuckets-1)
}

// quantile estimates the q-quantile in seconds: the geometric middle of
// the bucket it falls in. 0 for an empty histogram.
func (h *histogram) quantile(q float64) float64 {
	var n uint64
	for _, c := range h {
		n += uint64(c)
	}
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for i, c := range h {
		seen += uint64(c)
		if seen >= max(rank, 1) {
			if i == 0 {
				return 0.0005
			}
			// Between 1.5^(i-1) and 1.5^i ms.
			return math.Pow(histGrowth, float64(i)-0.5) / 1000
		}
	}
	return math.Pow(histGrowth, histBuckets-1) / 1000
}

// UnmarshalCaddyfile sets up the recorder from Caddyfile tokens. Syntax:
//
//	memory [{
//	    max_groups <n>
//	}]
func (m *Memory) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the recorder's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "max_groups":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return d.Errf("memory: bad max_groups '%s': must be a positive whole number", d.Val())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			m.MaxGroups = n
		default:
			return d.Errf("unrecognized memory recorder subdirective '%s'", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ Recorder              = (*Memory)(nil)
	_ Querier               = (*Memory)(nil)
	_ caddy.Provisioner     = (*Memory)(nil)
	_ caddy.CleanerUpper    = (*Memory)(nil)
	_ caddyfile.Unmarshaler = (*Memory)(nil)
	_ caddy.Destructor      = (*memState)(nil)
)
