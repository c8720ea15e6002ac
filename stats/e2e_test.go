package stats_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"github.com/openai/openai-go/v3"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
	"github.com/llmoneapi/llmoneapi/internal/llmtest"
	"github.com/llmoneapi/llmoneapi/stats"
)

// The tests' site: the API under /v1/ with its stats, and the dashboard
// at /dashboard behind basic_auth, outside llm_stats so that looking at the
// dashboard is not counted as a call. {RECORDER} is the stats recorder and
// {BROKEN} an upstream that answers every call with a 503.
const siteTemplate = `:{PORT} {
	handle /v1/* {
		llm_stats {
			{RECORDER}
		}
		llm_auth {
			static {
				key sk-alice-0123456789 {
					id alice-laptop
					user alice
				}
				key sk-bob-0123456789 {
					id bob-ci
					user bob
				}
			}
		}
		llm_route {
			model gpt-4o-mini {
				upstream openai {UPSTREAM} ` + llmtest.UpstreamKey + `
				price 0.15 0.60
			}
			model gpt-4o {
				upstream openai {UPSTREAM} ` + llmtest.UpstreamKey + `
				price 2.5 10 1.25
			}
			model flaky {
				upstream openai {BROKEN} ` + llmtest.UpstreamKey + `
			}
		}
	}
	handle /dashboard {
		basic_auth {
			admin ` + dashboardHash + `
		}
		llm_dashboard {
			title "Team gateway"
		}
	}
}
`

// The dashboard's basic_auth user is admin, with this password and its
// bcrypt hash (caddy hash-password).
const (
	dashboardPassword = "dashboard-secret"
	dashboardHash     = "$2a$10$5TcOBmA2iVgMulfNr9jV8O5TAeFbeGeX2qa9EER/8CdWU4yE4mmSC"
)

// prices are the site's, in USD per million tokens (input, output).
var prices = map[string][2]float64{"gpt-4o-mini": {0.15, 0.60}, "gpt-4o": {2.5, 10}, "flaky": {0, 0}}

// queriers are the recorders the stats API and the dashboard are tested
// against: a name, the module that answers, and the recorder's line in
// llm_stats (made per test, for a PostgreSQL table of its own). The tests'
// own querier adds up the calls the obvious way; the real ones must agree.
var queriers = []struct {
	name, module string
	config       func(t *testing.T) string
}{
	{"testquery", "llm.stats.testquery", func(*testing.T) string { return "testquery" }},
	{"memory", "llm.stats.memory", func(*testing.T) string { return "memory" }},
	{"sqlite", "llm.stats.database", func(*testing.T) string { return "database sqlite {TMP}/stats.db" }},
	{"postgres", "llm.stats.database", func(t *testing.T) string {
		_, table := postgresTable(t)
		return "database postgres " + llmtest.PostgresDSN + " {\n\t\t\t\ttable " + table + "\n\t\t\t}"
	}},
}

// eachQuerier runs test once per querier, as a subtest.
func eachQuerier(t *testing.T, test func(t *testing.T, config, module string)) {
	for _, q := range queriers {
		t.Run(q.name, func(t *testing.T) { test(t, q.config(t), q.module) })
	}
}

// startSite runs the site with the recorder given and returns the gateway
// and the host of its broken upstream.
func startSite(t *testing.T, recorder string) (*llmtest.Gateway, string) {
	t.Helper()
	broken := httptest.NewServer(&fakellm.Server{APIKey: llmtest.UpstreamKey,
		Behavior: fakellm.Behavior{Status: http.StatusServiceUnavailable}})
	t.Cleanup(broken.Close)
	host := strings.TrimPrefix(broken.URL, "http://")
	return llmtest.Start(t, nil, siteWith(recorder, host)), host
}

// siteWith returns the site with the recorder and broken upstream given.
func siteWith(recorder, broken string) string {
	return strings.NewReplacer("{RECORDER}", recorder, "{BROKEN}", "http://"+broken+"/v1").Replace(siteTemplate)
}

// totals are what a group of calls should show.
type totals struct {
	Requests, Errors, Prompt, Completion, Total int64
	Cost                                        float64
}

func (x *totals) add(status int, u openai.CompletionUsage, model string) {
	x.Requests++
	if status >= 400 {
		x.Errors++
	}
	x.Prompt += u.PromptTokens
	x.Completion += u.CompletionTokens
	x.Total += u.TotalTokens
	p := prices[model]
	x.Cost += (float64(u.PromptTokens)*p[0] + float64(u.CompletionTokens)*p[1]) / 1e6
}

// traffic is what was sent, grouped as the stats API groups it.
type traffic struct {
	all    totals
	groups map[string]map[string]*totals // group_by -> group -> totals
}

func (tr *traffic) add(user, key, model, upstream string, status int, u openai.CompletionUsage) {
	tr.all.add(status, u, model)
	for by, g := range map[string]string{"user": user, "key": key, "model": model, "upstream": upstream} {
		if tr.groups[by] == nil {
			tr.groups[by] = map[string]*totals{}
		}
		if tr.groups[by][g] == nil {
			tr.groups[by][g] = new(totals)
		}
		tr.groups[by][g].add(status, u, model)
	}
}

// sendTraffic makes calls through the gateway with the OpenAI SDK (plain
// and streamed, two users, three models, one failing upstream) and returns
// what they should add up to, from the usage the SDK got back.
func sendTraffic(t *testing.T, g *llmtest.Gateway, broken string) *traffic {
	t.Helper()
	upstream := strings.TrimSuffix(strings.TrimPrefix(g.Upstream, "http://"), "/v1")
	tr := &traffic{groups: map[string]map[string]*totals{}}
	ctx := context.Background()
	alice, bob := llmtest.OpenAI(g.URL, "sk-alice-0123456789"), llmtest.OpenAI(g.URL, "sk-bob-0123456789")
	chat := func(c openai.Client, user, key, model, prompt string) {
		resp, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:    model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
		})
		if err != nil {
			t.Fatalf("%s on %s: %v", user, model, err)
		}
		tr.add(user, key, model, upstream, http.StatusOK, resp.Usage)
	}
	chat(alice, "alice", "alice-laptop", "gpt-4o-mini", "hello there")
	chat(alice, "alice", "alice-laptop", "gpt-4o-mini", "a somewhat longer prompt of eight words")
	chat(alice, "alice", "alice-laptop", "gpt-4o-mini", "three words here")
	chat(bob, "bob", "bob-ci", "gpt-4o", "summarise the incident report please")
	chat(bob, "bob", "bob-ci", "gpt-4o", "and now in French")

	stream := alice.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model:         "gpt-4o",
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("stream me a poem about Caddy")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("streaming: %v", err)
	}
	if acc.Usage.TotalTokens == 0 {
		t.Fatal("the stream reported no usage")
	}
	tr.add("alice", "alice-laptop", "gpt-4o", upstream, http.StatusOK, acc.Usage)

	_, err := bob.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    "flaky",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("will this work")},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode < 500 {
		t.Fatalf("the broken upstream's call: got %v, want a 5xx", err)
	}
	tr.add("bob", "bob-ci", "flaky", broken, apiErr.StatusCode, openai.CompletionUsage{})
	return tr
}

// statsResponse is the JSON of GET /llm/stats.
type statsResponse struct {
	GroupBy       string      `json:"group_by"`
	From          time.Time   `json:"from"`
	To            time.Time   `json:"to"`
	BucketSeconds int64       `json:"bucket_seconds"`
	Rows          []stats.Row `json:"rows"`
}

// getStats asks the admin endpoint's stats API, wanting status want.
func getStats(t *testing.T, g *llmtest.Gateway, query string, want int) (statsResponse, string) {
	t.Helper()
	resp, err := http.Get(g.AdminURL + "/llm/stats?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		t.Fatalf("GET /llm/stats?%s: status %d, want %d: %s", query, resp.StatusCode, want, body)
	}
	var out statsResponse
	if want == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("GET /llm/stats?%s: %v\n%s", query, err, body)
		}
	}
	return out, string(body)
}

// waitForStats waits until the recorders (which run after the responses)
// have every call sent.
func waitForStats(t *testing.T, g *llmtest.Gateway, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ := getStats(t, g, "", http.StatusOK)
		if len(got.Rows) == 1 && got.Rows[0].Requests == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stats never showed the %d calls sent: %+v", n, got.Rows)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkRow compares a row of the stats with the calls sent.
func checkRow(t *testing.T, what string, got stats.Row, want totals) {
	t.Helper()
	if got.Requests != want.Requests || got.Errors != want.Errors || got.PromptTokens != want.Prompt ||
		got.CompletionTokens != want.Completion || got.TotalTokens != want.Total {
		t.Errorf("%s: requests %d, errors %d, tokens %d+%d=%d; sent %d, %d errors, %d+%d=%d",
			what, got.Requests, got.Errors, got.PromptTokens, got.CompletionTokens, got.TotalTokens,
			want.Requests, want.Errors, want.Prompt, want.Completion, want.Total)
	}
	if diff := got.Cost - want.Cost; diff > 1e-12 || diff < -1e-12 {
		t.Errorf("%s: cost %v, want %v", what, got.Cost, want.Cost)
	}
	if got.Requests > 0 && got.DurationAvg <= 0 {
		t.Errorf("%s: average duration %v, want more than 0", what, got.DurationAvg)
	}
}
