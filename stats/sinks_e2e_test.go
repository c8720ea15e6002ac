package stats_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/caddyserver/caddy/v2/modules/metrics" // the admin endpoint's /metrics
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/openai/openai-go/v3"

	"github.com/llmoneapi/llmoneapi/internal/llmtest"
	"github.com/llmoneapi/llmoneapi/stats"
)

// site is a gateway with the recorders given, one key (alice's) and one
// priced model.
func site(recorders string) string {
	return `:{PORT} {
	llm_stats {
` + recorders + `
	}
	llm_auth {
		static {
			key sk-e2e-alice {
				user alice
			}
		}
	}
	llm_route {
		model gpt-4o-mini {
			upstream openai {UPSTREAM} ` + llmtest.UpstreamKey + `
			price 0.15 0.60
		}
	}
}
`
}

func client(g *llmtest.Gateway) openai.Client { return llmtest.OpenAI(g.URL, "sk-e2e-alice") }

// tally counts the requests a load sent and the answers it got.
type tally struct {
	sent, answered, transportErrors atomic.Int64
	done                            chan struct{}
}

// load runs clients concurrent clients, each sending chats (every third
// one streamed) until stop is closed or each has sent max (0: no limit).
func load(g *llmtest.Gateway, clients, max int, stop <-chan struct{}) *tally {
	t := &tally{done: make(chan struct{})}
	var wg sync.WaitGroup
	for i := range clients {
		c := client(g)
		wg.Go(func() {
			for j := 0; max == 0 || j < max; j++ {
				select {
				case <-stop:
					return
				default:
				}
				p := openai.ChatCompletionNewParams{
					Model:    "gpt-4o-mini",
					Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(strings.Repeat("word ", i%5+1))},
				}
				t.sent.Add(1)
				var err error
				if j%3 == 2 {
					p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
					s := c.Chat.Completions.NewStreaming(context.Background(), p)
					for s.Next() {
					}
					err = s.Err()
				} else {
					_, err = c.Chat.Completions.New(context.Background(), p)
				}
				var apiErr *openai.Error
				switch {
				case err == nil:
					t.answered.Add(1)
				case errors.As(err, &apiErr):
					t.answered.Add(1) // an HTTP answer, recorded like any
				default:
					t.transportErrors.Add(1)
				}
			}
		})
	}
	go func() { wg.Wait(); close(t.done) }()
	return t
}

// wait waits for the load to end.
func (t *tally) wait() { <-t.done }

// countRows waits up to timeout for table to hold want rows and returns
// how many it holds.
func countRows(t *testing.T, db *sql.DB, table string, want int64, timeout time.Duration) int64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var n int64
		if err := db.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil && !strings.Contains(err.Error(), "does not exist") && !strings.Contains(err.Error(), "no such table") {
			t.Fatal(err)
		}
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func checkNothingLost(t *testing.T, g *llmtest.Gateway, db *sql.DB, table string, l *tally) {
	t.Helper()
	sent, answered := l.sent.Load(), l.answered.Load()
	countRows(t, db, table, answered, 30*time.Second)
	// Give a request that lost its connection (and may have reached the
	// gateway) time to be written too.
	time.Sleep(300 * time.Millisecond)
	rows := countRows(t, db, table, 0, 0)
	t.Logf("%d requests sent, %d answered, %d transport errors; %d rows", sent, answered, l.transportErrors.Load(), rows)
	// Every answered request reached the gateway and has its row; one whose
	// connection broke may or may not have.
	if rows < answered || rows > sent {
		t.Errorf("%d rows for %d answered requests (%d sent)", rows, answered, sent)
	}
	if answered < sent*9/10 {
		t.Errorf("only %d of %d requests answered", answered, sent)
	}
	for _, result := range []string{"dropped", "failed"} {
		series := `llmoneapi_stats_records_total{recorder="database",result="` + result + `"}`
		if text := scrape(t, g); strings.Contains(text, series) && metricValue(t, text, series) != "0" {
			t.Errorf("%s = %s", series, metricValue(t, text, series))
		}
	}
}

var tableSeq atomic.Int64

// postgresTable names a table of its own for the test and drops it after.
func postgresTable(t *testing.T) (*sql.DB, string) {
	db, err := sql.Open("pgx", llmtest.PostgresDSN)
	if err != nil {
		t.Fatal(err)
	}
	table := fmt.Sprintf("stats_e2e_%d_%d", os.Getpid(), tableSeq.Add(1))
	t.Cleanup(func() {
		_, _ = db.Exec("DROP TABLE IF EXISTS " + table)
		_, _ = db.Exec("DELETE FROM llm_schema_migrations WHERE component = $1", "stats_usage:"+table)
		db.Close()
	})
	return db, table
}

// TestDatabaseSurvivesPostgresOutages starts the gateway while PostgreSQL
// is cut off, brings it back, then cuts it off again in the middle of a
// load of concurrent requests and brings it back: every request still gets
// its row, written from the spool once the database answers.
func TestDatabaseSurvivesPostgresOutages(t *testing.T) {
	db, table := postgresTable(t)
	proxy := llmtest.StartProxy(t, "127.0.0.1:5432")
	proxy.Cut()
	spool := filepath.Join(t.TempDir(), "spool.jsonl")
	g := llmtest.Start(t, nil, site(fmt.Sprintf(`		database postgres postgres://postgres@%s/test?sslmode=disable {
			table %s
			write_timeout 1s
			flush_interval 20ms
			spool %s
		}`, proxy.Addr(), table, spool)))

	stop := make(chan struct{})
	l := load(g, 8, 0, stop)
	spooled := func(when string) {
		if info, err := os.Stat(spool); err != nil || info.Size() == 0 {
			t.Errorf("the spool is empty %s (%v)", when, err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	spooled("with the database down at start")
	proxy.Restore()
	time.Sleep(700 * time.Millisecond)
	proxy.Cut()
	time.Sleep(1200 * time.Millisecond)
	spooled("during the outage")
	proxy.Restore()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	l.wait()
	checkNothingLost(t, g, db, table, l)

	var distinct int64
	if err := db.QueryRow("SELECT COUNT(DISTINCT request_id) FROM " + table).Scan(&distinct); err != nil {
		t.Fatal(err)
	}
	if rows := countRows(t, db, table, 0, 0); distinct != rows {
		t.Errorf("%d distinct request ids in %d rows", distinct, rows)
	}
}

// TestDatabaseKeepsEverythingAcrossReloads reloads the config three times
// under load, once changing the recorder's own options.
func TestDatabaseKeepsEverythingAcrossReloads(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "usage.db")
	database := func(batch int) string {
		return fmt.Sprintf(`		database sqlite %s {
			batch_size %d
			flush_interval 20ms
			spool %s
		}`, dbPath, batch, filepath.Join(dir, "spool.jsonl"))
	}
	g := llmtest.Start(t, nil, site(database(100)))
	stop := make(chan struct{})
	l := load(g, 8, 0, stop)
	for _, recorders := range []string{
		database(100) + "\n\t\tlog",
		database(100),
		database(50), // a new worker; the old one writes what it holds
	} {
		time.Sleep(300 * time.Millisecond)
		g.Load(site(recorders))
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	l.wait()

	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checkNothingLost(t, g, db, "llm_usage", l)
}

// TestSQLiteUnderFiftyClients: every call of 50 concurrent clients gets
// its row, with its cost from the model's price.
func TestSQLiteUnderFiftyClients(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "usage.db")
	g := llmtest.Start(t, nil, site("\t\tlog\n\t\tdatabase sqlite "+dbPath+" {\n\t\t\tspool {TMP}/spool.jsonl\n\t\t}"))
	const clients, each = 50, 8
	l := load(g, clients, each, nil)
	l.wait()
	if l.answered.Load() != clients*each {
		t.Fatalf("%d of %d requests answered (%d transport errors)", l.answered.Load(), clients*each, l.transportErrors.Load())
	}
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n := countRows(t, db, "llm_usage", clients*each, 20*time.Second); n != clients*each {
		t.Fatalf("%d rows for %d calls", n, clients*each)
	}
	var users, ok, priced int64
	var prompt, completion int64
	var cost float64
	err = db.QueryRow(`SELECT COUNT(DISTINCT user_name), SUM(CASE WHEN status = 200 THEN 1 ELSE 0 END),
		SUM(CASE WHEN cost > 0 THEN 1 ELSE 0 END), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost) FROM llm_usage`).
		Scan(&users, &ok, &priced, &prompt, &completion, &cost)
	if err != nil {
		t.Fatal(err)
	}
	want := (float64(prompt)*0.15 + float64(completion)*0.60) / 1e6
	if users != 1 || ok != clients*each || priced != clients*each || fmt.Sprintf("%.9f", cost) != fmt.Sprintf("%.9f", want) {
		t.Errorf("users %d, ok %d, priced %d, cost %v (want %v)", users, ok, priced, cost, want)
	}
	// The log recorder has the same cost.
	last := g.LastStats(t, clients*each)
	if c, _ := last["cost"].(float64); c <= 0 || last["served_model"] != "gpt-4o-mini" || last["attempts"] == nil {
		t.Errorf("log line %v: want cost, served_model and attempts", last)
	}
}

// scrape returns the admin endpoint's metrics text.
func scrape(t *testing.T, g *llmtest.Gateway) string {
	t.Helper()
	resp, err := http.Get(g.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// metricValue finds the value of the series whose line starts with prefix.
func metricValue(t *testing.T, text, prefix string) string {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			return line[strings.LastIndexByte(line, ' ')+1:]
		}
	}
	t.Fatalf("no series %s in\n%s", prefix, text)
	return ""
}

// TestPrometheusAndMemoryAcrossReload: after a reload, the metrics are
// registered once and go on counting, and the memory recorder's totals
// are kept.
func TestPrometheusAndMemoryAcrossReload(t *testing.T) {
	g := llmtest.Start(t, nil, site("\t\tprometheus\n\t\tmemory"))
	send := func(n int) {
		l := load(g, 1, n, nil)
		l.wait()
		if l.answered.Load() != int64(n) {
			t.Fatalf("%d of %d answered", l.answered.Load(), n)
		}
	}
	const series = `llmoneapi_requests_total{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o-mini",gen_ai_response_model="gpt-4o-mini",status_class="2xx"}`
	waitFor := func(want string) string {
		deadline := time.Now().Add(5 * time.Second)
		for {
			text := scrape(t, g)
			if strings.Contains(text, series) && metricValue(t, text, series) == want || time.Now().After(deadline) {
				return text
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	send(3)
	before := waitFor("3")
	if v := metricValue(t, before, series); v != "3" {
		t.Fatalf("%s = %s before the reload, want 3", series, v)
	}

	g.Load(site("\t\tmemory\n\t\tprometheus\n\t\tlog"))
	send(2)
	after := waitFor("5")
	if v := metricValue(t, after, series); v != "5" {
		t.Errorf("%s = %s after the reload, want 5 (3 + 2)", series, v)
	}
	// llmoneapi_gateway_overhead_seconds shows once llm_route records its
	// attempts; TestPrometheusAcrossReload checks it.
	for _, name := range []string{"gen_ai_client_token_usage", "gen_ai_server_request_duration_seconds",
		"gen_ai_server_time_to_first_token_seconds", "gen_ai_server_time_per_output_token_seconds",
		"llmoneapi_requests_total", "llmoneapi_cost_usd_total", "llmoneapi_stats_records_total"} {
		if n := strings.Count(after, "# TYPE "+name+" "); n != 1 {
			t.Errorf("%d TYPE lines for %s after the reload, want 1", n, name)
		}
	}
	if !strings.Contains(after, `gen_ai_token_type="input"`) {
		t.Error("no input token usage series")
	}

	q := stats.CurrentQuerier()
	if q == nil {
		t.Fatal("no querier registered with a memory recorder configured")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		rows, err := q.Query(context.Background(), stats.Query{GroupBy: "user"})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 1 && rows[0].Group == "alice" && rows[0].Requests == 5 && rows[0].Cost > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("memory totals after the reload = %+v, want alice with 5 requests and a cost", rows)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
