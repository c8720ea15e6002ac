package stats

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/llmoneapi/llmoneapi/llm"
)

func newMemory(t testing.TB, config string) (*Memory, context.CancelFunc) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	mod, err := ctx.LoadModuleByID("llm.stats.memory", json.RawMessage(config))
	if err != nil {
		t.Fatal(err)
	}
	return mod.(*Memory), cancel
}

// setClock fixes the memory recorder's clock at t for the test.
func setClock(t testing.TB, at *time.Time) {
	memoryNow = func() time.Time { return *at }
	t.Cleanup(func() { memoryNow = time.Now })
}

func memCall(user, model string, start time.Time, d time.Duration, status int) llm.Call {
	return llm.Call{
		Start: start, Duration: d, TTFT: d / 4, Status: status, Model: model, Upstream: "up-" + model,
		Identity: &llm.Identity{User: user, KeyID: "k-" + user},
		Usage:    llm.Usage{PromptTokens: 10, CompletionTokens: 5, CachedTokens: 2, TotalTokens: 15},
		Cost:     0.5,
	}
}

func TestMemoryTotalsAndWindows(t *testing.T) {
	clock := time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)
	setClock(t, &clock)
	m, _ := newMemory(t, `{"max_groups":7}`)
	ctx := context.Background()

	// Two days ago (lifetime only), 3 hours ago, 30 minutes ago, now.
	for _, c := range []llm.Call{
		memCall("alice", "gpt", clock.Add(-48*time.Hour), time.Second, 200),
		memCall("alice", "gpt", clock.Add(-3*time.Hour), time.Second, 200),
		memCall("bob", "claude", clock.Add(-30*time.Minute), 2*time.Second, 502),
		memCall("alice", "gpt", clock.Add(-10*time.Second), 100*time.Millisecond, 200),
	} {
		if err := m.Record(ctx, c); err != nil {
			t.Fatal(err)
		}
	}

	rows, err := m.Query(ctx, Query{GroupBy: "user"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Group != "alice" || rows[0].Requests != 3 || rows[1].Group != "bob" || rows[1].Errors != 1 {
		t.Fatalf("lifetime rows = %+v", rows)
	}
	a := rows[0]
	if a.PromptTokens != 30 || a.CompletionTokens != 15 || a.CachedTokens != 6 || a.TotalTokens != 45 || a.Cost != 1.5 {
		t.Errorf("alice's tokens and cost = %+v", a)
	}
	if fmt.Sprintf("%.3f %.3f", a.DurationAvg, a.TTFTAvg) != "0.700 0.175" {
		t.Errorf("alice's averages = %v %v, want 0.7 0.175", a.DurationAvg, a.TTFTAvg)
	}
	// Two of three calls took 1s: the median's bucket holds 1s, within 25%.
	if a.DurationP50 < 0.8 || a.DurationP50 > 1.25 || a.DurationP95 < 0.8 || a.DurationP95 > 1.25 {
		t.Errorf("alice's p50/p95 = %v/%v, want about 1s", a.DurationP50, a.DurationP95)
	}

	for _, tt := range []struct {
		name string
		q    Query
		want string
	}{
		{"last minute", Query{From: clock.Add(-time.Minute)}, "[{ 1}]"},
		{"last hour", Query{From: clock.Add(-time.Hour)}, "[{ 2}]"},
		{"last day", Query{From: clock.Add(-24 * time.Hour)}, "[{ 3}]"},
		{"last day by model", Query{GroupBy: "model", From: clock.Add(-24 * time.Hour)}, "[{claude 1} {gpt 2}]"},
		{"last hour by key", Query{GroupBy: "key", From: clock.Add(-time.Hour)}, "[{k-alice 1} {k-bob 1}]"},
		{"by upstream until 1h ago", Query{GroupBy: "upstream", From: clock.Add(-24 * time.Hour), To: clock.Add(-time.Hour)}, "[{up-gpt 1}]"},
	} {
		rows, err := m.Query(ctx, tt.q)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rows {
			got = append(got, fmt.Sprintf("{%s %d}", r.Group, r.Requests))
		}
		if s := "[" + strings.Join(got, " ") + "]"; s != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, s, tt.want)
		}
	}

	rows, err = m.Query(ctx, Query{From: clock.Add(-4 * time.Hour), Bucket: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%s=%d", r.Bucket.Format("15:04"), r.Requests))
	}
	if s := strings.Join(got, " "); s != "09:00=1 12:00=2" {
		t.Errorf("hourly buckets = %s, want 09:00=1 12:00=2", s)
	}
	if _, err := m.Query(ctx, Query{GroupBy: "team"}); err == nil {
		t.Error("grouping by team succeeded")
	}
}

func TestMemoryBoundsGroups(t *testing.T) {
	m, _ := newMemory(t, `{"max_groups":2}`)
	for i := range 5 {
		_ = m.Record(context.Background(), memCall(fmt.Sprint("u", i), "gpt", time.Now(), time.Millisecond, 200))
	}
	rows, _ := m.Query(context.Background(), Query{GroupBy: "user"})
	if len(rows) != 3 || rows[0].Group != otherGroup || rows[0].Requests != 3 {
		t.Errorf("rows = %+v, want u0, u1 and 3 in %s", rows, otherGroup)
	}
}

// TestMemoryKeepsTotalsAcrossReload: the next config's recorder sees the
// numbers, and the summary is logged only once the last config is gone.
func TestMemoryKeepsTotalsAcrossReload(t *testing.T) {
	first, stopFirst := newMemory(t, `{"max_groups":3}`)
	core, logs := observer.New(zapcore.InfoLevel)
	first.state.logger = zap.New(core)
	_ = first.Record(context.Background(), memCall("alice", "gpt", time.Now(), time.Second, 200))

	second, stopSecond := newMemory(t, `{"max_groups":3}`)
	stopFirst()
	_ = second.Record(context.Background(), memCall("alice", "gpt", time.Now(), time.Second, 200))
	rows, _ := second.Query(context.Background(), Query{})
	if len(rows) != 1 || rows[0].Requests != 2 {
		t.Fatalf("rows after the reload = %+v, want 2 requests", rows)
	}
	if logs.Len() != 0 {
		t.Fatalf("summary logged at a reload: %v", logs.All())
	}
	stopSecond()
	entries := logs.FilterMessage("llm stats summary").All()
	if len(entries) != 1 || entries[0].ContextMap()["model"] != "gpt" || entries[0].ContextMap()["requests"] != int64(2) {
		t.Errorf("summary = %v", entries)
	}
}

func TestMemoryCaddyfile(t *testing.T) {
	m := new(Memory)
	if err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser("memory {\n max_groups 50\n}")); err != nil {
		t.Fatal(err)
	}
	if got := string(caddyconfig.JSON(m, nil)); got != `{"max_groups":50}` {
		t.Errorf("JSON = %s", got)
	}
	for input, want := range map[string]string{
		"memory x":                     "wrong argument count",
		"memory {\n max_groups 0\n}":   "bad max_groups '0'",
		"memory {\n max_groups 1 2\n}": "wrong argument count",
		"memory {\n nope\n}":           "unrecognized memory recorder subdirective 'nope'",
	} {
		err := new(Memory).UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", input, err, want)
		}
	}
}

// TestMemoryLateRecords: a call recorded after others of its group in a
// later minute (a long call, or one that waited in the queue) still counts
// in its own minute and hour.
func TestMemoryLateRecords(t *testing.T) {
	clock := time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)
	setClock(t, &clock)
	m, _ := newMemory(t, `{}`)
	ctx := context.Background()
	for _, start := range []time.Duration{-150 * time.Second, -10 * time.Second, -140 * time.Second, -2 * time.Hour, -5 * time.Second} {
		if err := m.Record(ctx, memCall("alice", "gpt", clock.Add(start), time.Second, 200)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		from, to time.Duration
		want     int64
	}{
		{-time.Minute, 0, 2}, {-3 * time.Minute, -2 * time.Minute, 2}, {-3 * time.Hour, -time.Hour, 1}, {-3 * time.Hour, 0, 5},
	} {
		rows, err := m.Query(ctx, Query{GroupBy: "user", From: clock.Add(tt.from), To: clock.Add(tt.to)})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0].Requests != tt.want {
			t.Errorf("from %v to %v: rows %+v, want %d requests of alice", tt.from, tt.to, rows, tt.want)
		}
	}
}

func BenchmarkMemoryRecord(b *testing.B) {
	m, _ := newMemory(b, `{"max_groups":9}`)
	calls := make([]llm.Call, 64)
	for i := range calls {
		calls[i] = memCall(fmt.Sprint("user", i%8), fmt.Sprint("model", i%4), time.Now(), time.Duration(i)*time.Millisecond, 200)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = m.Record(context.Background(), calls[i%len(calls)])
		i++
	}
}
