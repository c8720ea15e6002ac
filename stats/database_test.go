package stats

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/llmoneapi/llmoneapi/internal/sqldb"
	"github.com/llmoneapi/llmoneapi/llm"
)

const testPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// uniqueTable names a table no other test (or package) uses.
func uniqueTable(testing.TB) string {
	return fmt.Sprintf("stats_test_%d_%d", os.Getpid(), tableSeq.Add(1))
}

var tableSeq atomic.Int64

// newDatabase provisions a database recorder from JSON; the test's end
// cleans it up and, for PostgreSQL, drops its table.
func newDatabase(t testing.TB, config map[string]any) *Database {
	t.Helper()
	if config["spool"] == nil {
		config["spool"] = filepath.Join(t.TempDir(), "spool.jsonl")
	}
	raw, _ := json.Marshal(config)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	mod, err := ctx.LoadModuleByID("llm.stats.database", raw)
	if err != nil {
		cancel()
		t.Fatalf("provisioning %s: %v", raw, err)
	}
	d := mod.(*Database)
	t.Cleanup(func() {
		if d.Dialect == sqldb.Postgres {
			_, _ = d.store.db.Load().Exec("DROP TABLE " + d.Table)
			_, _ = d.store.db.Load().Exec(d.store.db.Load().Rebind("DELETE FROM llm_schema_migrations WHERE component = ?"), usageComponent+":"+d.Table)
		}
		cancel()
	})
	return d
}

func dialects(t *testing.T) []map[string]any {
	return []map[string]any{
		{"dialect": "sqlite", "dsn": filepath.Join(t.TempDir(), "usage.db")},
		{"dialect": "postgres", "dsn": testPostgres, "table": uniqueTable(t)},
	}
}

func sampleCall(id string, start time.Time) llm.Call {
	return llm.Call{
		ID: id, Start: start, Duration: 1500 * time.Millisecond, Endpoint: llm.EndpointChat, API: llm.APIOpenAIChat,
		Identity: &llm.Identity{User: "alice", KeyID: "k-alice", Team: "research"},
		Model:    "gpt-4o-mini", ServedModel: "gpt-4o", UpstreamModel: "gpt-4o-2024-08-06",
		Provider: "openai", Upstream: "api.openai.com", Stream: true, Status: 200,
		Usage: llm.Usage{PromptTokens: 100, CompletionTokens: 20, TotalTokens: 120, CachedTokens: 40,
			CacheCreationTokens: 5, ReasoningTokens: 7},
		UsageSource: llm.UsageUpstream, Cost: 0.0123, TTFT: 250 * time.Millisecond,
		Truncated: true, ClientAborted: true, ErrorCode: "upstream_stream_cut",
		Attempts: []llm.Attempt{{Upstream: "a.example", Outcome: "timeout"}, {Upstream: "api.openai.com", Outcome: "ok"}},
	}
}

// requestIDs are the request ids of d's rows, in order.
func requestIDs(t *testing.T, d *Database) []string {
	t.Helper()
	rows, err := d.store.db.Load().Query("SELECT request_id FROM " + d.Table + " ORDER BY request_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func TestDatabaseStoresEveryColumn(t *testing.T) {
	for _, config := range dialects(t) {
		t.Run(config["dialect"].(string), func(t *testing.T) {
			d := newDatabase(t, config)
			start := time.UnixMilli(1_750_000_000_123)
			c := sampleCall("req-1", start)
			// Twice: a replayed record is stored once.
			for range 2 {
				if err := d.RecordBatch(context.Background(), []llm.Call{c}); err != nil {
					t.Fatal(err)
				}
			}
			db := d.store.db.Load()
			var n int
			if err := db.QueryRow("SELECT COUNT(*) FROM " + d.Table).Scan(&n); err != nil || n != 1 {
				t.Fatalf("rows = %d (%v), want 1", n, err)
			}
			var (
				id, user, key, team, api, endpoint, model, served, upModel, provider, upstream, source, code string
				startMS, prompt, completion, total, cached, creation, reasoning                              int64
				attempts, status, stream, truncated, aborted                                                 int
				cost, durMS, ttftMS                                                                          float64
			)
			err := db.QueryRow("SELECT "+strings.Join(usageColumns, ", ")+" FROM "+d.Table).Scan(
				&id, &startMS, &user, &key, &team, &api, &endpoint, &model, &served, &upModel, &provider, &upstream,
				&attempts, &status, &stream, &prompt, &completion, &total, &cached, &creation, &reasoning, &source,
				&cost, &durMS, &ttftMS, &truncated, &aborted, &code)
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprintln(id, startMS, user, key, team, api, endpoint, model, served, upModel, provider, upstream,
				attempts, status, stream, prompt, completion, total, cached, creation, reasoning, source,
				cost, durMS, ttftMS, truncated, aborted, code)
			want := "req-1 1750000000123 alice k-alice research openai.chat chat.completions gpt-4o-mini gpt-4o " +
				"gpt-4o-2024-08-06 openai api.openai.com 2 200 1 100 20 120 40 5 7 upstream 0.0123 1500 250 1 1 upstream_stream_cut\n"
			if got != want {
				t.Errorf("row =\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// A ledger made by version 1 (keyed by request id alone) keeps its rows
// when version 2 rekeys it, and a replayed record still counts once.
func TestDatabaseMigratesKey(t *testing.T) {
	for _, config := range dialects(t) {
		t.Run(config["dialect"].(string), func(t *testing.T) {
			table := DefaultUsageTable
			if config["table"] != nil {
				table = config["table"].(string)
			}
			db, err := sqldb.Open(context.Background(), config["dialect"].(string), config["dsn"].(string))
			if err != nil {
				t.Fatal(err)
			}
			component := usageComponent
			if table != DefaultUsageTable {
				component += ":" + table
			}
			if err := db.Migrate(context.Background(), component, usageMigrations(table)[:1]); err != nil {
				t.Fatal(err)
			}
			start := time.UnixMilli(1_750_000_000_000)
			for _, id := range []string{"old-1", "old-2"} {
				if _, err := db.Exec(db.Rebind("INSERT INTO "+table+" (request_id, start_unix_ms, model) VALUES (?, ?, 'm')"), id, start.UnixMilli()); err != nil {
					t.Fatal(err)
				}
			}
			sqldb.Release(db)

			d := newDatabase(t, config)
			calls := []llm.Call{sampleCall("old-1", start), sampleCall("new-1", start)}
			for range 2 {
				if err := d.RecordBatch(context.Background(), calls); err != nil {
					t.Fatal(err)
				}
			}
			if ids := requestIDs(t, d); fmt.Sprint(ids) != "[new-1 old-1 old-2]" {
				t.Errorf("rows after the migration: %v, want [new-1 old-1 old-2]", ids)
			}
			// The key is the pair now: the request id alone is not unique.
			if err := d.RecordBatch(context.Background(), []llm.Call{sampleCall("old-1", start.Add(time.Second))}); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := d.store.db.Load().QueryRow("SELECT COUNT(*) FROM " + table + " WHERE request_id = 'old-1'").Scan(&n); err != nil || n != 2 {
				t.Errorf("rows of old-1 at two starts = %d (%v), want 2", n, err)
			}
		})
	}
}

func TestDatabaseQuery(t *testing.T) {
	for _, config := range dialects(t) {
		t.Run(config["dialect"].(string), func(t *testing.T) {
			d := newDatabase(t, config)
			hour := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
			var calls []llm.Call
			for i := range 6 {
				c := sampleCall(fmt.Sprintf("q-%d", i), hour.Add(time.Duration(i)*20*time.Minute))
				c.Identity = &llm.Identity{User: []string{"alice", "bob"}[i%2]}
				c.Status = 200
				if i == 5 {
					c.Status = 502
					c.TTFT = 0
				}
				calls = append(calls, c)
			}
			if err := d.RecordBatch(context.Background(), calls); err != nil {
				t.Fatal(err)
			}

			rows, err := d.Query(context.Background(), Query{GroupBy: "user"})
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 2 || rows[0].Group != "alice" || rows[1].Group != "bob" {
				t.Fatalf("rows = %+v, want alice and bob", rows)
			}
			bob := rows[1]
			if bob.Requests != 3 || bob.Errors != 1 || bob.PromptTokens != 300 || bob.CompletionTokens != 60 ||
				bob.CachedTokens != 120 || bob.TotalTokens != 360 || fmt.Sprintf("%.4f", bob.Cost) != "0.0369" ||
				bob.DurationAvg != 1.5 || bob.TTFTAvg != 0.25 {
				t.Errorf("bob = %+v", bob)
			}

			// Hourly buckets over [10:20, 12:00): 10:20 and 10:40, then 11:00, 11:20, 11:40.
			rows, err = d.Query(context.Background(), Query{From: hour.Add(20 * time.Minute), To: hour.Add(2 * time.Hour), Bucket: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 2 || !rows[0].Bucket.Equal(hour) || rows[0].Requests != 2 ||
				!rows[1].Bucket.Equal(hour.Add(time.Hour)) || rows[1].Requests != 3 || rows[1].Errors != 1 {
				t.Errorf("bucketed rows = %+v", rows)
			}
			if _, err := d.Query(context.Background(), Query{GroupBy: "nope"}); err == nil {
				t.Error("grouping by an unknown field succeeded")
			}
		})
	}
}

func TestDatabaseRetention(t *testing.T) {
	d := newDatabase(t, map[string]any{"dialect": "sqlite", "dsn": filepath.Join(t.TempDir(), "u.db"), "retention": int64(time.Hour)})
	old, recent := sampleCall("old", time.Now().Add(-2*time.Hour)), sampleCall("recent", time.Now())
	if err := d.RecordBatch(context.Background(), []llm.Call{old, recent}); err != nil {
		t.Fatal(err)
	}
	d.store.purge(context.Background(), time.Hour)
	if ids := requestIDs(t, d); fmt.Sprint(ids) != "[recent]" {
		t.Errorf("rows after retention = %v, want [recent]", ids)
	}
}

// TestSpoolReplayedAtStart: records spooled by an earlier run (with a line
// a crash tore) are written when the recorder starts, each once.
func TestSpoolReplayedAtStart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spool.jsonl")
	sp, err := openSpool(path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.append([]llm.Call{sampleCall("s-1", time.Now()), sampleCall("s-2", time.Now())}); err != nil {
		t.Fatal(err)
	}
	_ = sp.close()
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	_, _ = f.WriteString(`{"request_id":"s-torn","sta`)
	f.Close()

	d := newDatabase(t, map[string]any{"dialect": "sqlite", "dsn": filepath.Join(dir, "u.db"), "spool": path})
	deadline := time.Now().Add(5 * time.Second)
	for d.store.spool.pending() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var n int
	if err := d.store.db.Load().QueryRow("SELECT COUNT(*) FROM " + d.Table + " WHERE request_id IN ('s-1', 's-2')").Scan(&n); err != nil || n != 2 {
		t.Fatalf("replayed rows = %d (%v), want 2", n, err)
	}
	if info, _ := os.Stat(path); info.Size() != 0 {
		t.Errorf("spool is %d bytes after the replay, want empty", info.Size())
	}
}

func TestSpoolFullDrops(t *testing.T) {
	sp, err := openSpool(filepath.Join(t.TempDir(), "s.jsonl"), 1500)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	c := sampleCall("x", time.Now())
	if err := sp.append([]llm.Call{c}); err != nil {
		t.Fatal(err)
	}
	err = sp.append([]llm.Call{c, c})
	if !errors.Is(err, ErrDropped) || !errors.Is(err, errSpoolFull) {
		t.Fatalf("append past the limit: %v, want a dropped error", err)
	}
	calls, end, bad, err := sp.next(10)
	if err != nil || len(calls) != 1 || bad != 0 || calls[0].ID != "x" || calls[0].Identity.User != "alice" {
		t.Fatalf("next = %d calls (%+v), bad %d, %v", len(calls), calls, bad, err)
	}
	if err := sp.commit(end); err != nil || sp.pending() {
		t.Errorf("commit: %v, pending %v", err, sp.pending())
	}
}

func TestDatabaseCaddyfile(t *testing.T) {
	for _, tt := range []struct{ input, want string }{
		{`database sqlite ./u.db`, `{"dialect":"sqlite","dsn":"./u.db"}`},
		{`database postgres://u@db/llm`, `{"dialect":"postgres","dsn":"postgres://u@db/llm"}`},
		{"database postgres {env.DB} {\n table usage\n batch_size 100\n flush_interval 1s\n write_timeout 2s\n spool /var/spool/llm\n spool_size 10MiB\n retention 90d\n}",
			`{"dialect":"postgres","dsn":"{env.DB}","table":"usage","batch_size":100,"flush_interval":1000000000,"write_timeout":2000000000,"spool":"/var/spool/llm","spool_size":10485760,"retention":7776000000000000}`},
	} {
		d := new(Database)
		if err := d.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input)); err != nil {
			t.Errorf("%s: %v", tt.input, err)
			continue
		}
		if got := string(caddyconfig.JSON(d, nil)); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.input, got, tt.want)
		}
	}
	for _, tt := range []struct{ input, want string }{
		{`database`, "write 'sqlite <path>' or 'postgres <dsn>', got 0"},
		{`database mysql x`, "unknown kind 'mysql'"},
		{`database ./u.db`, "is not a store"},
		{"database sqlite u.db {\n table Bad-Name\n}", "bad table name 'Bad-Name'"},
		{"database sqlite u.db {\n batch_size 5000\n}", "bad batch_size '5000'"},
		{"database sqlite u.db {\n retention soon\n}", "bad retention 'soon'"},
		{"database sqlite u.db {\n spool_size lots\n}", "'lots' is not a size"},
		{"database sqlite u.db {\n nope\n}", "unrecognized database recorder subdirective 'nope'"},
	} {
		err := new(Database).UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.input, err, tt.want)
		}
	}
}

// BenchmarkDatabaseRecord is the database recorder's cost per record,
// written in batches of 256 to SQLite and to PostgreSQL; cpu-ns/op is the
// process's CPU per record, the driver's work included (not the PostgreSQL
// server's). The request ids are random, as Caddy's request UUIDs are.
func BenchmarkDatabaseRecord(b *testing.B) {
	for _, config := range []map[string]any{
		{"dialect": "sqlite", "dsn": filepath.Join(b.TempDir(), "bench.db")},
		{"dialect": "postgres", "dsn": testPostgres, "table": uniqueTable(b)},
	} {
		b.Run(config["dialect"].(string), func(b *testing.B) {
			d := newDatabase(b, config)
			batch := make([]llm.Call, 256)
			n := 0
			b.ReportAllocs()
			report := cpuPerOp(b)
			for b.Loop() {
				batch[n%256] = sampleCall(rand.Text(), time.Now())
				n++
				if n%256 == 0 {
					if err := d.RecordBatch(context.Background(), batch); err != nil {
						b.Fatal(err)
					}
				}
			}
			report()
		})
	}
}

// FuzzSpool: whatever a spool file holds (a torn write, a disk error),
// opening and replaying it never fails or panics, and the records
// appended after it read back intact.
func FuzzSpool(f *testing.F) {
	good, _ := json.Marshal(sampleCall("seed", time.Unix(1700000000, 0)))
	for _, seed := range []string{"", "\n", string(good) + "\n", string(good) + "\n" + string(good[:20]), "{\n}\n\x00\xff\n", `{"request_id":1}` + "\n"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, content []byte) {
		path := filepath.Join(t.TempDir(), "spool.jsonl")
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		sp, err := openSpool(path, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		defer sp.close()
		if err := sp.append([]llm.Call{sampleCall("after", time.Unix(1700000000, 0))}); err != nil {
			t.Fatal(err)
		}
		var last llm.Call
		for sp.pending() {
			calls, end, _, err := sp.next(7)
			if err != nil {
				t.Fatal(err)
			}
			if len(calls) > 0 {
				last = calls[len(calls)-1]
			}
			if err := sp.commit(end); err != nil {
				t.Fatal(err)
			}
		}
		if last.ID != "after" || last.Usage.TotalTokens != 120 {
			t.Errorf("the record appended last read back as %+v", last)
		}
	})
}

func TestDatabaseBadConfigFailsAtLoad(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	for config, want := range map[string]string{
		`{"dialect":"postgres","dsn":"postgres://u@h:port/db"}`:               "bad PostgreSQL URL",
		`{"dialect":"mysql","dsn":"x"}`:                                       "unknown store 'mysql'",
		`{"dialect":"sqlite","dsn":""}`:                                       "no sqlite path or URL given",
		`{"dialect":"sqlite","dsn":"u.db","table":"Bad"}`:                     "bad table name 'Bad'",
		`{"dialect":"sqlite","dsn":"u.db","batch_size":5000}`:                 "batch_size 5000 out of range",
		`{"dialect":"sqlite","dsn":"/proc/nope/u.db","spool":"/proc/nope/s"}`: "spool",
	} {
		_, err := ctx.LoadModuleByID("llm.stats.database", json.RawMessage(config))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", config, err, want)
		}
	}
}

// TestDatabaseSlowWritesSpool: while another session holds the table
// locked, writes time out into the spool without holding the worker up,
// and are written once the lock goes.
func TestDatabaseSlowWritesSpool(t *testing.T) {
	d := newDatabase(t, map[string]any{"dialect": "postgres", "dsn": testPostgres, "table": uniqueTable(t), "write_timeout": "200ms"})
	db := d.store.db.Load()
	lock, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec("LOCK TABLE " + d.Table + " IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 3 {
		if err := d.RecordBatch(context.Background(), []llm.Call{sampleCall(fmt.Sprint("slow-", i), time.Now())}); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("three writes to a locked table took %v with a 200ms write timeout", took)
	}
	if !d.store.spool.pending() {
		t.Fatal("nothing spooled while the table was locked")
	}
	_ = lock.Rollback()

	deadline := time.Now().Add(10 * time.Second)
	var n int
	for time.Now().Before(deadline) {
		if err := db.QueryRow("SELECT COUNT(*) FROM " + d.Table).Scan(&n); err == nil && n == 3 && !d.store.spool.pending() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%d rows after the lock went, want 3 (spool pending: %v)", n, d.store.spool.pending())
}

// TestDatabaseBatchSizes: batches of every shape (one row, full ones that
// reuse the prepared statement, one SQLite splits in two statements, ids
// repeated within and across batches) leave exactly one row per request,
// with its values.
func TestDatabaseBatchSizes(t *testing.T) {
	for _, config := range dialects(t) {
		t.Run(config["dialect"].(string), func(t *testing.T) {
			config["batch_size"] = 1000
			d := newDatabase(t, config)
			start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
			n, want := 0, map[string]int64{}
			batch := func(size int, repeat ...string) []llm.Call {
				var calls []llm.Call
				for range size {
					id := fmt.Sprintf("bs-%d", n)
					c := sampleCall(id, start)
					c.Usage.PromptTokens = int64(n)
					want[id] = int64(n)
					calls = append(calls, c)
					n++
				}
				for _, id := range repeat {
					c := sampleCall(id, start)
					c.Usage.PromptTokens = -1 // a second record under a stored id is skipped
					calls = append(calls, c)
				}
				return calls
			}
			for _, calls := range [][]llm.Call{batch(1), batch(256), batch(255, "bs-3"), batch(700, "bs-600"), batch(3, "bs-1000", "bs-1")} {
				if err := d.RecordBatch(context.Background(), calls); err != nil {
					t.Fatal(err)
				}
			}
			rows, err := d.store.db.Load().Query("SELECT request_id, prompt_tokens, user_name, cost FROM " + d.Table)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			got := map[string]int64{}
			for rows.Next() {
				var id, user string
				var prompt int64
				var cost float64
				if err := rows.Scan(&id, &prompt, &user, &cost); err != nil {
					t.Fatal(err)
				}
				if user != "alice" || cost != 0.0123 {
					t.Errorf("row %s: user %q cost %v", id, user, cost)
				}
				got[id] = prompt
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d rows, want %d", len(got), len(want))
			}
			for id, p := range want {
				if got[id] != p {
					t.Errorf("row %s: prompt_tokens %d, want %d", id, got[id], p)
				}
			}
		})
	}
}
