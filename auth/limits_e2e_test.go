package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/caddyserver/caddy/v2/modules/metrics" // the admin endpoint's /metrics
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
	"github.com/llmoneapi/llmoneapi/internal/llmtest"
)

func TestMain(m *testing.M) { llmtest.Main(m) }

// limitsSite is a gateway whose llm_auth holds the keys given, with the
// extra llm_auth settings given, in front of one priced model: $1000 per
// million prompt tokens and $2000 per million completion tokens, so that
// a few tokens make whole thousandths of a dollar.
func limitsSite(keys, settings string) string {
	return `:{PORT} {
	llm_stats {
		log
	}
	llm_auth {
		static {
` + keys + `
		}
` + settings + `
	}
	llm_route {
		model gpt-4o-mini {
			upstream openai {UPSTREAM} ` + llmtest.UpstreamKey + `
			price 1000 2000
		}
	}
}
`
}

// The model's price in micro-USD per token, and the real cost of a call
// of params("hello there", n >= 5): 2 prompt and 5 completion tokens.
const (
	inputMicro  = 1000
	outputMicro = 2000
	realMicro   = 2*inputMicro + 5*outputMicro
)

// params is a chat request whose prompt the fake counts as words tokens
// and whose reply is capped at maxTokens (the fake sends 5 chunks, one
// token each, unless capped lower).
func params(prompt string, maxTokens int64) openai.ChatCompletionNewParams {
	p := openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
	}
	if maxTokens > 0 {
		p.MaxCompletionTokens = openai.Int(maxTokens)
	}
	return p
}

// estimate is the reservation llm_auth makes for p: the body's bytes / 4,
// rounded up, plus the completion cap; and its cost in micro-USD.
func estimate(t *testing.T, p openai.ChatCompletionNewParams, maxTokens int64) (tokens, micro int64) {
	return estimateBody(t, p, maxTokens, 0)
}

// estimateStream is estimate for a streamed p, whose body the SDK sends
// with `,"stream":true` added.
func estimateStream(t *testing.T, p openai.ChatCompletionNewParams, maxTokens int64) (tokens, micro int64) {
	return estimateBody(t, p, maxTokens, len(`,"stream":true`))
}

func estimateBody(t *testing.T, p openai.ChatCompletionNewParams, maxTokens int64, extra int) (tokens, micro int64) {
	t.Helper()
	body, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	prompt := (int64(len(body)+extra) + 3) / 4
	return prompt + maxTokens, prompt*inputMicro + maxTokens*outputMicro
}

// answer is what a client saw of one call.
type answer struct {
	status int
	header http.Header
	code   string
	typ    string
	msg    string
	usage  openai.CompletionUsage
}

func chat(t *testing.T, c openai.Client, p openai.ChatCompletionNewParams) answer {
	t.Helper()
	var resp *http.Response
	out, err := c.Chat.Completions.New(context.Background(), p, option.WithResponseInto(&resp))
	return toAnswer(t, resp, err, func() openai.CompletionUsage { return out.Usage })
}

func stream(t *testing.T, c openai.Client, p openai.ChatCompletionNewParams) answer {
	t.Helper()
	var resp *http.Response
	s := c.Chat.Completions.NewStreaming(context.Background(), p, option.WithResponseInto(&resp))
	var acc openai.ChatCompletionAccumulator
	for s.Next() {
		acc.AddChunk(s.Current())
	}
	return toAnswer(t, resp, s.Err(), func() openai.CompletionUsage { return acc.Usage })
}

func toAnswer(t *testing.T, resp *http.Response, err error, usage func() openai.CompletionUsage) answer {
	t.Helper()
	var e *openai.Error
	switch {
	case errors.As(err, &e):
		return answer{status: e.StatusCode, header: e.Response.Header, code: e.Code, typ: e.Type, msg: e.Message}
	case err != nil && resp != nil:
		// A stream cut after its headers: the client got a 200 and part
		// of the answer.
		return answer{status: resp.StatusCode, header: resp.Header, msg: err.Error()}
	case err != nil:
		t.Fatalf("call failed without an answer: %v", err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, usage: usage()}
}

// reload loads site into g and waits until the new config serves: the
// connections the old one held are closed as it stops.
func reload(t *testing.T, g *llmtest.Gateway, site string) {
	t.Helper()
	g.Load(site)
	client := &http.Client{Transport: &http.Transport{}, Timeout: time.Second}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := client.Get(g.URL + "/v1/models")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway does not answer after a reload: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// finished waits until the gateway has finished n calls in all: llm_stats
// logs each once llm_auth has settled it, a moment after the client read
// the end of the answer.
func finished(t *testing.T, g *llmtest.Gateway, n int) { g.StatsLines(t, n) }

// concurrently runs n calls at once and returns their answers.
func concurrently(n int, call func(i int) answer) []answer {
	out := make([]answer, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			out[i] = call(i)
		})
	}
	close(start)
	wg.Wait()
	return out
}

func byStatus(answers []answer) map[int][]answer {
	m := map[int][]answer{}
	for _, a := range answers {
		m[a.status] = append(m[a.status], a)
	}
	return m
}

// freshWindow waits, when the current one-minute window ends within 5s,
// for the next one, so that a test's burst counts in one window.
func freshWindow(t *testing.T) {
	left := time.Until(time.Now().Truncate(time.Minute).Add(time.Minute))
	if left < 5*time.Second {
		t.Logf("waiting %v for the next rate-limit window", left.Round(time.Millisecond))
		time.Sleep(left + 50*time.Millisecond)
	}
}

func wantHeader(t *testing.T, a answer, name, want string) {
	t.Helper()
	if got := a.header.Get(name); got != want {
		t.Errorf("%s: %q, want %q (status %d)", name, got, want, a.status)
	}
}

// wantReset checks a reset header: a Go-style duration ("1s", "6m0s")
// within (0, most].
func wantReset(t *testing.T, a answer, name string, most time.Duration) {
	t.Helper()
	d, err := time.ParseDuration(a.header.Get(name))
	if err != nil || d <= 0 || d > most {
		t.Errorf("%s: %q, want a duration in (0, %v]", name, a.header.Get(name), most)
	}
}

// wantRetryAfter checks Retry-After: whole seconds within [1, most].
func wantRetryAfter(t *testing.T, a answer, most int) int {
	t.Helper()
	n, err := strconv.Atoi(a.header.Get("Retry-After"))
	if err != nil || n < 1 || n > most {
		t.Errorf("Retry-After: %q, want whole seconds in [1, %d]", a.header.Get("Retry-After"), most)
	}
	return n
}

func wantRefusal(t *testing.T, a answer, code, typ string) {
	t.Helper()
	if a.status != http.StatusTooManyRequests || a.code != code || a.typ != typ {
		t.Errorf("got %d %s/%s (%s), want 429 %s/%s", a.status, a.code, a.typ, a.msg, code, typ)
	}
}

func TestLimitRPM(t *testing.T) {
	g := llmtest.Start(t, nil, limitsSite(`key sk-rpm {
				rpm 5
			}`, ""))
	c := llmtest.OpenAI(g.URL, "sk-rpm")
	freshWindow(t)
	got := byStatus(concurrently(12, func(int) answer { return chat(t, c, params("hi", 0)) }))
	if len(got[200]) != 5 || len(got[429]) != 7 {
		t.Fatalf("got %d successes and %d refusals, want 5 and 7", len(got[200]), len(got[429]))
	}
	if n := g.Fake.Count(); n != 5 {
		t.Errorf("the upstream got %d calls, want 5", n)
	}
	remaining := map[string]bool{}
	for _, a := range got[200] {
		wantHeader(t, a, "X-Ratelimit-Limit-Requests", "5")
		wantReset(t, a, "X-Ratelimit-Reset-Requests", time.Minute)
		remaining[a.header.Get("X-Ratelimit-Remaining-Requests")] = true
		if a.header.Get("X-Ratelimit-Limit-Tokens") != "" {
			t.Errorf("tokens headers for a key without tpm: %v", a.header)
		}
	}
	for _, want := range []string{"0", "1", "2", "3", "4"} {
		if !remaining[want] {
			t.Errorf("no success saw x-ratelimit-remaining-requests %s; saw %v", want, remaining)
		}
	}
	for _, a := range got[429] {
		wantRefusal(t, a, "rate_limit_exceeded", "requests")
		wantHeader(t, a, "X-Ratelimit-Limit-Requests", "5")
		wantHeader(t, a, "X-Ratelimit-Remaining-Requests", "0")
		wantReset(t, a, "X-Ratelimit-Reset-Requests", time.Minute)
		wantRetryAfter(t, a, 60)
		if !strings.Contains(a.msg, "requests per min (RPM): Limit 5, Used 5") {
			t.Errorf("message %q does not say the limit and use", a.msg)
		}
	}
}

func TestLimitConcurrency(t *testing.T) {
	fake := &fakellm.Server{APIKey: llmtest.UpstreamKey, Behavior: fakellm.Behavior{ChunkDelay: 80 * time.Millisecond}}
	g := llmtest.Start(t, fake, limitsSite(`key sk-conc {
				max_concurrent 2
			}`, ""))
	c := llmtest.OpenAI(g.URL, "sk-conc")
	got := byStatus(concurrently(6, func(int) answer { return chat(t, c, params("hi", 0)) }))
	if len(got[200]) != 2 || len(got[429]) != 4 {
		t.Fatalf("got %d successes and %d refusals, want 2 and 4", len(got[200]), len(got[429]))
	}
	for _, a := range got[429] {
		wantRefusal(t, a, "rate_limit_exceeded", "requests")
		wantHeader(t, a, "Retry-After", "1")
		if !strings.Contains(a.msg, "concurrent requests") || !strings.Contains(a.msg, "Limit 2, In flight 2") {
			t.Errorf("message %q does not say the concurrency limit", a.msg)
		}
	}
	// The slots are free again once the calls are done, streams and cut
	// streams included.
	fake.SetBehavior(fakellm.Behavior{DropAfter: 2})
	for i := range 3 {
		if a := stream(t, c, params("hi", 0)); a.status != 200 {
			t.Fatalf("cut stream %d: status %d %s", i, a.status, a.code)
		}
		finished(t, g, 6+i+1)
	}
	fake.SetBehavior(fakellm.Behavior{})
	got = byStatus(concurrently(2, func(int) answer { return stream(t, c, params("hi", 0)) }))
	if len(got[200]) != 2 {
		t.Fatalf("after the calls ended: %d of 2 streams served, want both", len(got[200]))
	}
}

// TestLimitCombined: a key with rate limits and a budget has all its
// checks made at once when llm_route admits the call; a call refused by
// one limit uses up none of the others, and a call llm_route refuses
// before admission still counts against rpm.
func TestLimitCombined(t *testing.T) {
	fake := &fakellm.Server{APIKey: llmtest.UpstreamKey, Behavior: fakellm.Behavior{ChunkDelay: 60 * time.Millisecond}}
	g := llmtest.Start(t, fake, limitsSite(`key sk-combo {
				rpm 4
				max_concurrent 2
				budget 1
			}`, ""))
	c := llmtest.OpenAI(g.URL, "sk-combo")
	freshWindow(t)
	got := byStatus(concurrently(5, func(int) answer { return chat(t, c, params("hi", 20)) }))
	if len(got[200]) != 2 || len(got[429]) != 3 {
		t.Fatalf("got %d successes and %d refusals, want 2 and 3", len(got[200]), len(got[429]))
	}
	for _, a := range got[429] {
		wantRefusal(t, a, "rate_limit_exceeded", "requests")
		if !strings.Contains(a.msg, "concurrent requests") {
			t.Errorf("message %q: want the concurrency limit", a.msg)
		}
		wantHeader(t, a, "X-Ratelimit-Limit-Requests", "4")
		wantHeader(t, a, "X-Ratelimit-Remaining-Requests", "2")
	}
	finished(t, g, 5)
	if a := chat(t, c, openai.ChatCompletionNewParams{Model: "no-such-model",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}}); a.status != 404 {
		t.Fatalf("unknown model: status %d, want 404", a.status)
	}
	finished(t, g, 6)
	a := chat(t, c, params("hi", 20))
	if a.status != 200 {
		t.Fatalf("fourth request of the minute: %d %s", a.status, a.msg)
	}
	wantHeader(t, a, "X-Ratelimit-Remaining-Requests", "0")
	a = chat(t, c, params("hi", 20))
	wantRefusal(t, a, "rate_limit_exceeded", "requests")
	if !strings.Contains(a.msg, "Limit 4, Used 4") {
		t.Errorf("message %q: want rpm used up", a.msg)
	}
}

func TestLimitTPM(t *testing.T) {
	p := params("hello there", 20)
	est, _ := estimate(t, p, 20)
	tpm := 3*est + 1
	fake := &fakellm.Server{APIKey: llmtest.UpstreamKey, Behavior: fakellm.Behavior{ChunkDelay: 60 * time.Millisecond}}
	g := llmtest.Start(t, fake, limitsSite(fmt.Sprintf(`key sk-tpm {
				tpm %d
			}`, tpm), ""))
	c := llmtest.OpenAI(g.URL, "sk-tpm")
	freshWindow(t)
	// Reservations hold while the calls run: 3 fit, the rest are refused.
	got := byStatus(concurrently(8, func(int) answer { return chat(t, c, p) }))
	if len(got[200]) != 3 || len(got[429]) != 5 {
		t.Fatalf("got %d successes and %d refusals, want 3 and 5 (estimate %d, tpm %d)", len(got[200]), len(got[429]), est, tpm)
	}
	for _, a := range got[429] {
		wantRefusal(t, a, "rate_limit_exceeded", "tokens")
		wantHeader(t, a, "X-Ratelimit-Limit-Tokens", strconv.FormatInt(tpm, 10))
		wantReset(t, a, "X-Ratelimit-Reset-Tokens", time.Minute)
		wantRetryAfter(t, a, 60)
	}
	used := int64(0)
	for _, a := range got[200] {
		used += a.usage.TotalTokens
	}
	if used != 3*(2+5) {
		t.Fatalf("the 3 calls used %d tokens, want 21 (2 prompt + 5 completion each)", used)
	}
	// Settled: the window now holds the real usage, not the reservations,
	// and the next call's headers say what is left after its reservation.
	finished(t, g, 8)
	a := chat(t, c, p)
	if a.status != 200 {
		t.Fatalf("after settlement: status %d %s %s", a.status, a.code, a.msg)
	}
	wantHeader(t, a, "X-Ratelimit-Remaining-Tokens", strconv.FormatInt(tpm-used-est, 10))
}

// TestLimitTPMEmbeddings: an embeddings call reserves its input only, since
// it generates nothing.
func TestLimitTPMEmbeddings(t *testing.T) {
	const tpm = 100000
	g := llmtest.Start(t, &fakellm.Server{APIKey: llmtest.UpstreamKey}, limitsSite(fmt.Sprintf(`key sk-embed {
				tpm %d
			}`, tpm), ""))
	freshWindow(t)
	body := `{"model":"gpt-4o-mini","input":"some text to embed"}`
	req, _ := http.NewRequest(http.MethodPost, g.URL+"/v1/embeddings", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer sk-embed")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := strconv.Itoa(tpm - (len(body)+3)/4)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Ratelimit-Remaining-Tokens") != want {
		t.Fatalf("status %d, X-Ratelimit-Remaining-Tokens %q, want %s", resp.StatusCode, resp.Header.Get("X-Ratelimit-Remaining-Tokens"), want)
	}
}

func TestLimitQuota(t *testing.T) {
	p := params("hello there", 20)
	est, _ := estimate(t, p, 20)
	quota := 2*est + 1
	fake := &fakellm.Server{APIKey: llmtest.UpstreamKey, Behavior: fakellm.Behavior{ChunkDelay: 60 * time.Millisecond}}
	g := llmtest.Start(t, fake, limitsSite(fmt.Sprintf(`key sk-quota {
				quota %d daily
			}`, quota), ""))
	c := llmtest.OpenAI(g.URL, "sk-quota")
	got := byStatus(concurrently(5, func(int) answer { return chat(t, c, p) }))
	if len(got[200]) != 2 || len(got[429]) != 3 {
		t.Fatalf("got %d successes and %d refusals, want 2 and 3 (estimate %d, quota %d)", len(got[200]), len(got[429]), est, quota)
	}
	for _, a := range got[429] {
		wantRefusal(t, a, "insufficient_quota", "insufficient_quota")
		wantRetryAfter(t, a, 86400)
	}
	// Each call is settled at its 7 real tokens: calls go on until the
	// next reservation no longer fits.
	used, calls := int64(14), 5
	for used+est <= quota {
		finished(t, g, calls)
		if a := chat(t, c, p); a.status != 200 {
			t.Fatalf("with %d of %d tokens used: status %d %s", used, quota, a.status, a.msg)
		}
		used += 7
		calls++
	}
	finished(t, g, calls)
	a := chat(t, c, p)
	wantRefusal(t, a, "insufficient_quota", "insufficient_quota")
	if want := fmt.Sprintf("Limit %d, Used %d, Requested %d", quota, used, est); !strings.Contains(a.msg, want) {
		t.Errorf("message %q, want it to say %q", a.msg, want)
	}
}

// TestLimitBudgetSettlesStreams: a streamed call is charged its real cost
// from the stream's usage, a stream cut before its usage is charged what
// llm_route counted of it (usage_source partial), and the budget's refusal
// says what was used.
func TestLimitBudgetSettlesStreams(t *testing.T) {
	p := params("hello there", 20)
	_, est := estimateStream(t, p, 20)
	budget := 3*realMicro + est + est/2
	g := llmtest.Start(t, nil, limitsSite(`key sk-budget {
				budget `+usd(budget)+` monthly
			}`, ""))
	c := llmtest.OpenAI(g.URL, "sk-budget")
	// Streams: usage arrives in the stream's last chunk, which the gateway
	// asks for and keeps from a client that did not. A client has the
	// whole stream a moment before llm_auth settles it, so each call waits
	// for its record, which llm_stats writes after the settlement.
	for i := range 3 {
		if a := stream(t, c, p); a.status != 200 {
			t.Fatalf("stream: status %d %s", a.status, a.msg)
		}
		finished(t, g, i+1)
	}
	// A cut stream: no usage came; it is charged the tokens counted.
	g.Fake.SetBehavior(fakellm.Behavior{DropAfter: 2})
	if a := stream(t, c, p); a.status != 200 {
		t.Fatalf("cut stream: status %d %s: %s", a.status, a.code, a.msg)
	}
	cut := g.StatsLines(t, 4)[3]
	prompt, _ := cut["prompt_tokens"].(float64)
	completion, _ := cut["completion_tokens"].(float64)
	if cut["usage_source"] != "partial" || prompt <= 0 || completion <= 0 {
		t.Fatalf("cut stream's record %v", cut)
	}
	used := 3*realMicro + int64(prompt)*inputMicro + int64(completion)*outputMicro
	g.Fake.SetBehavior(fakellm.Behavior{})
	// Streams go on until what is left is less than one more reservation.
	for calls := 5; used+est <= budget; calls++ {
		if a := stream(t, c, p); a.status != 200 {
			t.Fatalf("with $%s of $%s used: status %d %s", usd(used), usd(budget), a.status, a.msg)
		}
		finished(t, g, calls)
		used += realMicro
	}
	a := stream(t, c, p)
	wantRefusal(t, a, "insufficient_quota", "insufficient_quota")
	wantRetryAfter(t, a, 31*86400)
	want := fmt.Sprintf("Limit $%s, Used $%s, Requested $%s", usd(budget), usd(used), usd(est))
	if !strings.Contains(a.msg, want) {
		t.Errorf("message %q, want it to say %q", a.msg, want)
	}
}

// usd formats micro-USD as dollars, as the refusal does.
func usd(micro int64) string { return strconv.FormatFloat(float64(micro)/1e6, 'f', -1, 64) }

func TestLimitTeamBudget(t *testing.T) {
	p := params("hello there", 20)
	_, est := estimate(t, p, 20)
	budget := 4*realMicro + est
	g := llmtest.Start(t, nil, limitsSite(`key sk-ml-a {
				team ml
			}
			key sk-ml-b {
				team ml
			}
			key sk-other {
				team other
			}`, `budget team ml `+usd(budget)))
	a, b := llmtest.OpenAI(g.URL, "sk-ml-a"), llmtest.OpenAI(g.URL, "sk-ml-b")
	// Five calls from either key settle at their real cost; then what is
	// left is less than a reservation, for both keys.
	for i := range 5 {
		c := a
		if i%2 == 1 {
			c = b
		}
		if r := chat(t, c, p); r.status != 200 {
			t.Fatalf("call %d: %d %s", i, r.status, r.msg)
		}
		finished(t, g, i+1)
	}
	for _, c := range []openai.Client{a, b} {
		r := chat(t, c, p)
		wantRefusal(t, r, "insufficient_quota", "insufficient_quota")
		if !strings.Contains(r.msg, "the budget shared with this key") {
			t.Errorf("message %q does not say the budget is shared", r.msg)
		}
		if want := fmt.Sprintf("Used $%s", usd(5*realMicro)); !strings.Contains(r.msg, want) {
			t.Errorf("message %q, want it to say %q", r.msg, want)
		}
	}
	if r := chat(t, llmtest.OpenAI(g.URL, "sk-other"), p); r.status != 200 {
		t.Errorf("another team's key: %d %s, want 200", r.status, r.msg)
	}
}

// TestLimitMemoryCountersSurviveReload: a config reload keeps the counts.
func TestLimitMemoryCountersSurviveReload(t *testing.T) {
	site := limitsSite(`key sk-reload {
				rpm 3
			}`, "limits memory")
	g := llmtest.Start(t, nil, site)
	c := llmtest.OpenAI(g.URL, "sk-reload")
	freshWindow(t)
	for range 2 {
		if a := chat(t, c, params("hi", 0)); a.status != 200 {
			t.Fatalf("status %d", a.status)
		}
	}
	reload(t, g, site)
	a := chat(t, c, params("hi", 0))
	wantHeader(t, a, "X-Ratelimit-Remaining-Requests", "0")
	wantRefusal(t, chat(t, c, params("hi", 0)), "rate_limit_exceeded", "requests")
}

// metric returns the value of the sample of the admin endpoint's /metrics
// whose line starts with series, 0 when there is none.
func metric(t *testing.T, adminURL, series string) float64 {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// TestLimitStoreErrors stops and restarts Redis under each on_store_error
// setting.
func TestLimitStoreErrors(t *testing.T) {
	r := llmtest.StartRedis(t)
	keys := `key sk-rate {
				rpm 100
			}
			key sk-spend {
				budget 10
			}`
	store := `limits redis ` + r.URL + ` {
			timeout 200ms
		}`
	g := llmtest.Start(t, nil, limitsSite(keys, store))
	rate, spend := llmtest.OpenAI(g.URL, "sk-rate"), llmtest.OpenAI(g.URL, "sk-spend")
	p := params("hi", 10)
	wantServed := func(c openai.Client, what string) answer {
		t.Helper()
		a := chat(t, c, p)
		if a.status != 200 {
			t.Fatalf("%s: %d %s %s, want 200", what, a.status, a.code, a.msg)
		}
		return a
	}
	wantUnavailable := func(c openai.Client, what string) {
		t.Helper()
		a := chat(t, c, p)
		if a.status != 503 || a.code != "limits_unavailable" {
			t.Fatalf("%s: %d %s, want 503 limits_unavailable", what, a.status, a.code)
		}
		wantHeader(t, a, "Retry-After", "1")
	}
	// waitBack polls until the key is limited through Redis again: the
	// store fails fast for a second after an error, then tries Redis.
	waitBack := func(c openai.Client, rateHeaders bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			a := chat(t, c, p)
			if a.status == 200 && (!rateHeaders || a.header.Get("X-Ratelimit-Limit-Requests") != "") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("not limited through Redis again 5s after it came back: %d %s", a.status, a.code)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	openBefore := metric(t, g.AdminURL, `llmoneapi_auth_limit_store_errors_total{decision="fail_open",store="redis"}`)
	closedBefore := metric(t, g.AdminURL, `llmoneapi_auth_limit_store_errors_total{decision="fail_closed",store="redis"}`)

	t.Run("defaults", func(t *testing.T) {
		wantHeader(t, wantServed(rate, "rate key, Redis up"), "X-Ratelimit-Limit-Requests", "100")
		wantServed(spend, "budget key, Redis up")
		r.Stop()
		// Rate limits fail open: served, without limit headers it cannot know.
		a := wantServed(rate, "rate key, Redis down")
		if h := a.header.Get("X-Ratelimit-Limit-Requests"); h != "" {
			t.Errorf("x-ratelimit-limit-requests %q while the store is down", h)
		}
		// Budgets fail closed.
		wantUnavailable(spend, "budget key, Redis down")
		if got := metric(t, g.AdminURL, `llmoneapi_auth_limit_store_errors_total{decision="fail_open",store="redis"}`); got < openBefore+1 {
			t.Errorf("fail_open store errors: %v, want at least %v", got, openBefore+1)
		}
		if got := metric(t, g.AdminURL, `llmoneapi_auth_limit_store_errors_total{decision="fail_closed",store="redis"}`); got < closedBefore+1 {
			t.Errorf("fail_closed store errors: %v, want at least %v", got, closedBefore+1)
		}
		r.Start()
		waitBack(rate, true)
		waitBack(spend, false)
	})
	t.Run("fail_closed", func(t *testing.T) {
		reload(t, g, limitsSite(keys, store+"\n\t\ton_store_error fail_closed"))
		r.Stop()
		wantUnavailable(rate, "rate key, Redis down")
		wantUnavailable(spend, "budget key, Redis down")
		r.Start()
		waitBack(rate, true)
	})
	t.Run("fail_open", func(t *testing.T) {
		reload(t, g, limitsSite(keys, store+"\n\t\ton_store_error budget fail_open"))
		r.Stop()
		wantServed(rate, "rate key, Redis down")
		wantServed(spend, "budget key, Redis down")
		r.Start()
		waitBack(rate, true)
		waitBack(spend, false)
	})
}

// TestLimitFleet runs two gateways, this process and a child, sharing one
// Redis, and loads both at once: the limits hold across the fleet.
func TestLimitFleet(t *testing.T) {
	prefix := fmt.Sprintf("llmtest:fleet:%d:", time.Now().UnixNano())
	t.Cleanup(func() { llmtest.ClearRedis(t, llmtest.RedisURL, prefix) })
	p := params("hello there", 20)
	_, est := estimate(t, p, 20)
	budget := 40*realMicro + est/2 // 40 calls' worth
	site := limitsSite(`key sk-fleet-rpm {
				rpm 20
			}
			key sk-fleet-conc {
				max_concurrent 3
			}
			key sk-fleet-budget {
				budget `+usd(budget)+`
			}
			key sk-fleet-under {
				budget `+usd(budget)+`
			}`, `limits redis `+llmtest.RedisURL+` {
			prefix `+prefix+`
		}
		default_max_tokens 1`)
	fake := &fakellm.Server{APIKey: llmtest.UpstreamKey, KeepRequests: -1, Behavior: fakellm.Behavior{ChunkDelay: 20 * time.Millisecond}}
	g := llmtest.Start(t, fake, site)
	child := g.StartProcess(t, site)
	urls := []string{g.URL, child.URL}
	clients := func(key string) []openai.Client {
		return []openai.Client{llmtest.OpenAI(urls[0], key), llmtest.OpenAI(urls[1], key)}
	}

	t.Run("rpm", func(t *testing.T) {
		cs := clients("sk-fleet-rpm")
		freshWindow(t)
		got := byStatus(concurrently(60, func(i int) answer { return chat(t, cs[i%2], params("hi", 0)) }))
		if len(got[200]) != 20 || len(got[429]) != 40 {
			t.Fatalf("rpm 20 across two instances: %d successes, %d refusals; want 20 and 40", len(got[200]), len(got[429]))
		}
		for _, a := range got[429] {
			wantRefusal(t, a, "rate_limit_exceeded", "requests")
		}
	})

	t.Run("max_concurrent", func(t *testing.T) {
		cs := clients("sk-fleet-conc")
		got := byStatus(concurrently(12, func(i int) answer { return chat(t, cs[i%2], params("hi", 0)) }))
		if len(got[200]) != 3 || len(got[429]) != 9 {
			t.Fatalf("max_concurrent 3 across two instances: %d successes, %d refusals; want 3 and 9", len(got[200]), len(got[429]))
		}
	})

	// spend runs waves of concurrent calls on both instances until the key
	// is refused everywhere, and returns the real spend in micro-USD.
	spend := func(t *testing.T, key string, p openai.ChatCompletionNewParams) (micro int64, served int) {
		cs := clients(key)
		for wave := 0; ; wave++ {
			got := byStatus(concurrently(16, func(i int) answer { return chat(t, cs[i%2], p) }))
			for _, a := range got[200] {
				micro += a.usage.PromptTokens*inputMicro + a.usage.CompletionTokens*outputMicro
			}
			served += len(got[200])
			for status, as := range got {
				if status != 200 && status != 429 {
					t.Fatalf("status %d: %s", status, as[0].msg)
				}
			}
			if len(got[200]) == 0 {
				return micro, served
			}
			if wave > 50 {
				t.Fatal("the budget never ran out")
			}
		}
	}

	t.Run("budget", func(t *testing.T) {
		// Every call names max_tokens, so its reservation covers its cost:
		// the budget is never overspent.
		micro, served := spend(t, "sk-fleet-budget", p)
		t.Logf("budget $%s, spent $%s in %d calls, 16 at a time over two instances", usd(budget), usd(micro), served)
		if micro > budget {
			t.Fatalf("spent $%s of a $%s budget", usd(micro), usd(budget))
		}
		if served < 40-16 {
			t.Errorf("only %d calls served of a budget for 40: reservations refused too early", served)
		}
	})

	t.Run("budget_underestimated", func(t *testing.T) {
		// No max_tokens and default_max_tokens 1, and replies of 50
		// tokens: each call reserves far less than it costs, so the calls
		// in flight when the budget runs out overspend it, by their
		// shortfall at most.
		fake.SetBehavior(fakellm.Behavior{Chunks: 50, ChunkDelay: 2 * time.Millisecond})
		defer fake.SetBehavior(fakellm.Behavior{ChunkDelay: 20 * time.Millisecond})
		under := params("hello there", 0)
		_, est := estimate(t, under, 1)
		real := int64(2*inputMicro + 50*outputMicro)
		micro, served := spend(t, "sk-fleet-under", under)
		bound := budget + 16*(real-est)
		t.Logf("budget $%s, spent $%s in %d calls; bound $%s (16 in flight, each reserving $%s of its $%s)",
			usd(budget), usd(micro), served, usd(bound), usd(est), usd(real))
		if micro > bound {
			t.Fatalf("spent $%s, over the bound $%s", usd(micro), usd(bound))
		}
	})
}
