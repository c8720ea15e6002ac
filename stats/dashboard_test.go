package stats

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmoneapi/llmoneapi/llm"
)

// failingQuerier is a store that is down.
type failingQuerier struct{}

func (failingQuerier) Query(context.Context, Query) ([]Row, error) {
	return nil, errors.New("connection refused")
}

// TestDashboardQuerierFails checks that a querier's failure gives a page
// that says what failed, with a 500.
func TestDashboardQuerierFails(t *testing.T) {
	t.Cleanup(RegisterQuerier(failingQuerier{}, true))
	status, body, err := renderDashboard(context.Background(), dashboardRanges[1], "model", "", false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusInternalServerError || !strings.Contains(string(body), "The stats could not be read: querying by total: connection refused") {
		t.Errorf("status %d\n%s", status, body)
	}
}

// cannedQuerier answers each query with rows computed once, so that the
// benchmark measures the page, not the querier. (A pointer, since
// RegisterQuerier compares queriers and maps are not comparable.)
type cannedQuerier struct {
	rows map[Query][]Row
	// all, when set, answers every query.
	all []Row
}

func (c *cannedQuerier) Query(_ context.Context, q Query) ([]Row, error) {
	if c.all != nil {
		return c.all, nil
	}
	return c.rows[q], nil
}

// BenchmarkDashboard draws the 24-hour page for a busy gateway: 20 models,
// 200 users and keys, 5 upstreams, a call every few seconds.
func BenchmarkDashboard(b *testing.B) {
	now := time.Date(2026, 3, 4, 12, 30, 0, 0, time.UTC)
	log := new(CallLog)
	for i := range 20000 {
		user := fmt.Sprintf("user-%d", i%200)
		log.Add(llm.Call{
			Start: now.Add(-time.Duration(i) * 4 * time.Second), Model: fmt.Sprintf("model-%d", i%20),
			Upstream: fmt.Sprintf("upstream-%d", i%5), Status: 200 + 300*(i%50/49),
			Identity: &llm.Identity{User: user, KeyID: user + "-key"},
			Usage:    llm.Usage{PromptTokens: int64(i % 900), CompletionTokens: int64(i % 300), TotalTokens: int64(i%900 + i%300)},
			Cost:     float64(i%1000) * 1e-6, Duration: time.Duration(i%3000) * time.Millisecond,
		})
	}
	rng := dashboardRanges[1]
	from := now.Truncate(rng.Step).Add(-rng.Length + rng.Step)
	canned := &cannedQuerier{rows: map[Query][]Row{}}
	for _, q := range []Query{
		{From: from}, {GroupBy: "model", From: from, Bucket: rng.Step}, {GroupBy: "user", From: from},
		{GroupBy: "key", From: from}, {GroupBy: "model", From: from}, {GroupBy: "upstream", From: from},
		{GroupBy: "upstream", From: from, Bucket: rng.Step},
	} {
		canned.rows[q], _ = log.Query(context.Background(), q)
	}
	b.Cleanup(RegisterQuerier(canned, true))
	b.ReportAllocs()
	for b.Loop() {
		status, body, err := renderDashboard(context.Background(), rng, "model", "", false, now)
		if err != nil || status != http.StatusOK || len(body) == 0 {
			b.Fatalf("status %d, %v", status, err)
		}
	}
}

// FuzzDashboardRows draws the page from whatever a querier might answer:
// any groups, buckets in or out of range, negative, huge or NaN numbers.
// The page must draw, with finite coordinates only.
func FuzzDashboardRows(f *testing.F) {
	f.Add("gpt-4o", int64(30), int64(3), int64(1), int64(120), 0.25, 1.5)
	f.Add("", int64(-5), int64(-1), int64(0), int64(-7), -1.0, math.NaN())
	f.Add("<script>", int64(1e6), int64(1<<62), int64(1<<62), int64(1<<62), math.Inf(1), math.Inf(-1))
	now := time.Date(2026, 3, 4, 12, 30, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, group string, minutesAgo, requests, errors, tokens int64, cost, duration float64) {
		row := Row{Group: group, Bucket: now.Add(-time.Duration(minutesAgo) * time.Minute).Truncate(time.Minute),
			Requests: requests, Errors: errors, PromptTokens: tokens, TotalTokens: tokens, Cost: cost,
			DurationAvg: duration, DurationP95: duration, TTFTAvg: duration}
		q := &cannedQuerier{rows: map[Query][]Row{}}
		q.all = []Row{row, row}
		t.Cleanup(RegisterQuerier(q, true))
		status, body, err := renderDashboard(context.Background(), dashboardRanges[0], "user", "", true, now)
		if err != nil || status != http.StatusOK {
			t.Fatalf("status %d, %v", status, err)
		}
		for _, bad := range []string{"NaN", "Inf", "<script"} {
			if strings.Contains(string(body), bad) {
				t.Fatalf("the page has %q", bad)
			}
		}
	})
}
