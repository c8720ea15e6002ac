package stats

import (
	"context"
	"sync"
	"time"
)

// Querier is a recorder that can answer for the calls it recorded: the
// memory and database recorders are, and the stats API and the dashboard
// read through it.
type Querier interface {
	Query(ctx context.Context, q Query) ([]Row, error)
}

// Query asks for call totals over [From, To), one Row per group and, when
// Bucket is set, per time bucket of that length.
type Query struct {
	// GroupBy is "model", "user", "key", "upstream", or "" for one total.
	GroupBy string
	// From and To bound the calls' start times; zero means unbounded.
	From, To time.Time
	// Bucket splits the rows into time buckets of this length (e.g. an
	// hour, for charts); 0 means none.
	Bucket time.Duration
}

// Row is the totals of one group (and bucket).
type Row struct {
	// Group is the model, user, key id or upstream; "" for the total.
	Group string `json:"group"`
	// Bucket is the start of the row's time bucket; zero when the query
	// asked for no buckets.
	Bucket time.Time `json:"bucket,omitzero"`

	Requests         int64   `json:"requests"`
	Errors           int64   `json:"errors"`
	PromptTokens     int64   `json:"prompt_tokens"`
	CompletionTokens int64   `json:"completion_tokens"`
	CachedTokens     int64   `json:"cached_tokens"`
	TotalTokens      int64   `json:"total_tokens"`
	Cost             float64 `json:"cost"`
	// Latency and time to first token, in seconds; the percentiles are 0
	// when the querier cannot compute them.
	DurationAvg float64 `json:"duration_avg"`
	DurationP50 float64 `json:"duration_p50,omitempty"`
	DurationP95 float64 `json:"duration_p95,omitempty"`
	TTFTAvg     float64 `json:"ttft_avg"`
	TTFTP50     float64 `json:"ttft_p50,omitempty"`
	TTFTP95     float64 `json:"ttft_p95,omitempty"`
}

var queriers struct {
	sync.Mutex
	list []registered
}

type registered struct {
	q       Querier
	durable bool
}

// RegisterQuerier makes q answer the stats API and the dashboard, until the
// returned function is called (from the recorder's Cleanup). A durable
// querier (one backed by a store, such as the database recorder) is
// preferred over an in-memory one; among equals, the newest registration.
func RegisterQuerier(q Querier, durable bool) (unregister func()) {
	queriers.Lock()
	defer queriers.Unlock()
	queriers.list = append(queriers.list, registered{q, durable})
	return func() {
		queriers.Lock()
		defer queriers.Unlock()
		for i, r := range queriers.list {
			if r.q == q {
				queriers.list = append(queriers.list[:i], queriers.list[i+1:]...)
				return
			}
		}
	}
}

// CurrentQuerier returns the querier the stats API should read, or nil when
// no recorder that can answer is configured.
func CurrentQuerier() Querier {
	queriers.Lock()
	defer queriers.Unlock()
	var best *registered
	for i := range queriers.list {
		r := &queriers.list[i]
		if best == nil || r.durable || !best.durable {
			best = r
		}
	}
	if best == nil {
		return nil
	}
	return best.q
}
