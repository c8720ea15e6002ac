package stats

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/llmoneapi/llmoneapi/llm"
)

func init() {
	caddy.RegisterModule(TestQuerier{})
}

// CallLog is the tests' querier: it keeps every call and answers a query
// by going through all of them, the slow and obvious way, so that what the
// stats API and the dashboard show can be checked against it and against
// the requests sent.
type CallLog struct {
	mu    sync.Mutex
	calls []llm.Call
}

// Add records c.
func (l *CallLog) Add(c llm.Call) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, c)
}

// Query implements Querier.
func (l *CallLog) Query(_ context.Context, q Query) ([]Row, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	type key struct {
		group  string
		bucket time.Time
	}
	groups := map[key][]llm.Call{}
	for _, c := range l.calls {
		if !q.From.IsZero() && c.Start.Before(q.From) || !q.To.IsZero() && !c.Start.Before(q.To) {
			continue
		}
		k := key{group: groupOf(c, q.GroupBy)}
		if q.Bucket > 0 {
			k.bucket = c.Start.Truncate(q.Bucket).UTC()
		}
		groups[k] = append(groups[k], c)
	}
	rows := make([]Row, 0, len(groups))
	for k, calls := range groups {
		r := Row{Group: k.group, Bucket: k.bucket}
		var durations, ttfts []float64
		for _, c := range calls {
			r.Requests++
			if c.Status >= 400 {
				r.Errors++
			}
			r.PromptTokens += c.Usage.PromptTokens
			r.CompletionTokens += c.Usage.CompletionTokens
			r.CachedTokens += c.Usage.CachedTokens
			r.TotalTokens += c.Usage.TotalTokens
			r.Cost += c.Cost
			durations = append(durations, c.Duration.Seconds())
			if c.TTFT > 0 {
				ttfts = append(ttfts, c.TTFT.Seconds())
			}
		}
		r.DurationAvg, r.DurationP50, r.DurationP95 = spread(durations)
		r.TTFTAvg, r.TTFTP50, r.TTFTP95 = spread(ttfts)
		rows = append(rows, r)
	}
	// Map order would do, since the API sorts; a stable order keeps test
	// failures readable.
	slices.SortFunc(rows, func(a, b Row) int {
		return cmp.Or(a.Bucket.Compare(b.Bucket), cmp.Compare(a.Group, b.Group))
	})
	return rows, nil
}

func groupOf(c llm.Call, by string) string {
	switch by {
	case "model":
		return c.Model
	case "upstream":
		return c.Upstream
	}
	if c.Identity == nil {
		return ""
	}
	switch by {
	case "user":
		return c.Identity.User
	case "key":
		return c.Identity.KeyID
	}
	return ""
}

// spread returns the mean, median and 95th percentile (nearest rank).
func spread(v []float64) (avg, p50, p95 float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	slices.Sort(v)
	var sum float64
	for _, x := range v {
		sum += x
	}
	rank := func(p float64) float64 {
		i := int(p*float64(len(v))+0.999999) - 1
		return v[max(0, min(i, len(v)-1))]
	}
	return sum / float64(len(v)), rank(0.5), rank(0.95)
}

// TestQuerier is the llm.stats.testquery recorder: a CallLog that the
// stats API and the dashboard read while it is configured. Calls gets the
// log of the running config.
type TestQuerier struct {
	log        *CallLog
	unregister func()
}

// CaddyModule returns the Caddy module information.
func (TestQuerier) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.stats.testquery",
		New: func() caddy.Module { return new(TestQuerier) },
	}
}

// Provision registers the querier.
func (t *TestQuerier) Provision(caddy.Context) error {
	t.log = new(CallLog)
	t.unregister = RegisterQuerier(t, false)
	return nil
}

// Cleanup unregisters it.
func (t *TestQuerier) Cleanup() error {
	if t.unregister != nil {
		t.unregister()
	}
	return nil
}

// Record implements Recorder.
func (t *TestQuerier) Record(_ context.Context, c llm.Call) error {
	t.log.Add(c)
	return nil
}

// Query implements Querier.
func (t *TestQuerier) Query(ctx context.Context, q Query) ([]Row, error) {
	return t.log.Query(ctx, q)
}

// UnmarshalCaddyfile takes no arguments: `testquery` in an llm_stats block.
func (t *TestQuerier) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}
