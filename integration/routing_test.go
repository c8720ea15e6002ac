package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
	"github.com/llmoneapi/llmoneapi/internal/llmtest"
)

// fleet starts n fake providers, each wanting upstreamKey, and returns
// their base URLs.
func fleet(t *testing.T, n int) ([]*fakellm.Server, []string) {
	t.Helper()
	fakes := make([]*fakellm.Server, n)
	urls := make([]string, n)
	for i := range fakes {
		fakes[i] = &fakellm.Server{APIKey: upstreamKey}
		ts := httptest.NewServer(fakes[i])
		t.Cleanup(ts.Close)
		urls[i] = ts.URL + "/v1"
	}
	return fakes, urls
}

// routeSite is a gateway with one key and the llm_route block given, which
// reports each call's tries and served model in response headers.
func routeSite(route string) string {
	return `:{PORT} {
	header {
		defer
		X-Attempts {llm.attempts}
		X-Served-Model {llm.served_model}
	}
	llm_stats {
		log
	}
	llm_auth {
		static {
			key sk-route {
				user alice
			}
			key sk-primary-only {
				user bob
				models primary
			}
		}
	}
	llm_route {
` + route + `
	}
}`
}

// upstreamLines writes one upstream line per URL.
func upstreamLines(urls ...string) string {
	var b strings.Builder
	for _, u := range urls {
		fmt.Fprintf(&b, "\t\t\tupstream openai %s %s\n", u, upstreamKey)
	}
	return b.String()
}

func routeClient(g *gateway) *openai.Client {
	return client(g, "sk-route")
}

// rawStream posts a streamed chat request and returns the status, the
// response headers and the whole body.
func rawStream(t *testing.T, g *gateway, model string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, g.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"`+model+`","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer sk-route")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(raw)
}

// upstreamsView reads GET /llm/upstreams, failing the test if it holds any
// upstream key.
type upstreamView struct {
	ID            string `json:"id"`
	URL           string `json:"url"`
	KeyHash       string `json:"key_hash"`
	Healthy       bool   `json:"healthy"`
	InFlight      int64  `json:"in_flight"`
	Requests      int    `json:"requests"`
	Failures      int    `json:"failures"`
	RecentFails   int    `json:"recent_failures"`
	CooldownUntil string `json:"cooldown_until"`
	CooldownWhy   string `json:"cooldown_reason"`
	LastError     string `json:"last_error"`
}

func upstreams(t *testing.T, g *gateway, keys ...string) map[string][]upstreamView {
	t.Helper()
	resp, err := http.Get(g.AdminURL + "/llm/upstreams")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/llm/upstreams: %d %s", resp.StatusCode, raw)
	}
	for _, k := range append(keys, upstreamKey) {
		if strings.Contains(string(raw), k) {
			t.Fatalf("/llm/upstreams shows a key: %s", raw)
		}
	}
	var view struct {
		Models []struct {
			Model     string         `json:"model"`
			Upstreams []upstreamView `json:"upstreams"`
		} `json:"models"`
	}
	if err := json.Unmarshal(raw, &view); err != nil {
		t.Fatal(err)
	}
	out := map[string][]upstreamView{}
	for _, m := range view.Models {
		out[m.Model] = m.Upstreams
	}
	return out
}

// TestFailover: two healthy upstreams and one failing serve 50 calls,
// streamed and not, without a single client error; the failing one is taken
// out after max_fails and shows so in /llm/upstreams.
func TestFailover(t *testing.T) {
	fakes, urls := fleet(t, 3)
	fakes[1].SetBehavior(fakellm.Behavior{Status: 500})
	g := start(t, nil, routeSite(`		model m {
`+upstreamLines(urls...)+`			max_fails 3
			fail_duration 1m
		}`))
	c := routeClient(g)
	ctx := context.Background()
	retried := 0
	for i := range 50 {
		var resp *http.Response
		if i%2 == 0 {
			got, err := c.Chat.Completions.New(ctx, chat("m", "hi"), option.WithResponseInto(&resp))
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			if got.Choices[0].Message.Content != "chunk0 chunk1 chunk2 chunk3 chunk4" {
				t.Fatalf("call %d: %q", i, got.Choices[0].Message.Content)
			}
		} else {
			stream := c.Chat.Completions.NewStreaming(ctx, chat("m", "hi"), option.WithResponseInto(&resp))
			var acc openai.ChatCompletionAccumulator
			for stream.Next() {
				acc.AddChunk(stream.Current())
			}
			if err := stream.Err(); err != nil || acc.Choices[0].Message.Content != "chunk0 chunk1 chunk2 chunk3 chunk4" {
				t.Fatalf("stream %d: %v %+v", i, err, acc.Choices)
			}
		}
		if resp.Header.Get("X-Attempts") == "2" {
			retried++
		}
	}
	if n := fakes[1].Count(); n != 3 {
		t.Fatalf("the failing upstream got %d calls, want max_fails = 3", n)
	}
	if fakes[0].Count()+fakes[2].Count() != 50 {
		t.Fatalf("healthy upstreams served %d and %d", fakes[0].Count(), fakes[2].Count())
	}
	if retried != 3 {
		t.Fatalf("%d calls show a retry in {llm.attempts}, want 3", retried)
	}
	// A client has its whole answer a moment before the gateway counts the
	// call as done.
	view := upstreams(t, g)["m"]
	for deadline := time.Now().Add(2 * time.Second); len(view) == 3 && view[0].InFlight+view[2].InFlight > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		view = upstreams(t, g)["m"]
	}
	if len(view) != 3 || view[1].Healthy || view[1].CooldownWhy != "unhealthy" || view[1].RecentFails != 3 ||
		view[1].LastError != "server_error (status 500)" || !view[0].Healthy || !view[2].Healthy || view[0].Requests+view[2].Requests != 50 {
		t.Fatalf("view %+v", view)
	}
	// The same state as Prometheus gauges on the admin endpoint's /metrics.
	resp, err := http.Get(g.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for i, want := range []string{"1", "0", "1"} {
		series := `llmoneapi_upstream_healthy{model="m",upstream="` + view[i].ID + `"} ` + want
		if !strings.Contains(string(metrics), series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
	if strings.Contains(string(metrics), upstreamKey) {
		t.Error("/metrics shows the upstream key")
	}
}

// TestHungUpstream: an upstream that holds its headers, or sends them and
// then nothing, is left after first_byte_timeout, and the client gets the
// answer from another upstream in about that time.
func TestHungUpstream(t *testing.T) {
	fakes, urls := fleet(t, 2)
	g := start(t, nil, routeSite(`		model m {
`+upstreamLines(urls...)+`			lb_policy first
			max_fails 100
			first_byte_timeout 400ms
		}`))
	c := routeClient(g)
	for _, tt := range []struct {
		hang    fakellm.Behavior
		streams []bool
	}{
		{fakellm.Behavior{Latency: 10 * time.Second}, []bool{false, true}},
		// Headers, then silence: only a stream sends its headers early.
		{fakellm.Behavior{Stall: 10 * time.Second}, []bool{true}},
	} {
		hang := tt.hang
		fakes[0].SetBehavior(hang)
		for _, stream := range tt.streams {
			begin := time.Now()
			var content string
			if stream {
				s := c.Chat.Completions.NewStreaming(context.Background(), chat("m", "hi"))
				var acc openai.ChatCompletionAccumulator
				for s.Next() {
					acc.AddChunk(s.Current())
				}
				if err := s.Err(); err != nil {
					t.Fatalf("%+v stream: %v", hang, err)
				}
				content = acc.Choices[0].Message.Content
			} else {
				got, err := c.Chat.Completions.New(context.Background(), chat("m", "hi"))
				if err != nil {
					t.Fatalf("%+v: %v", hang, err)
				}
				content = got.Choices[0].Message.Content
			}
			took := time.Since(begin)
			if content != "chunk0 chunk1 chunk2 chunk3 chunk4" || took < 400*time.Millisecond || took > 2*time.Second {
				t.Fatalf("%+v stream=%v: %q after %v, want the other upstream's answer after about 400ms", hang, stream, content, took)
			}
		}
	}
	if fakes[1].Count() != 3 {
		t.Fatalf("the healthy upstream served %d calls, want 3", fakes[1].Count())
	}
	// The hung upstream's requests were cancelled, not left running.
	deadline := time.Now().Add(3 * time.Second)
	for fakes[0].Cancelled() < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if fakes[0].Cancelled() != 3 {
		t.Fatalf("the hung upstream saw %d of 3 requests cancelled", fakes[0].Cancelled())
	}
}

// TestRateLimitCooldown: a 429 with Retry-After cools that upstream, later
// calls skip it, and when every upstream is limited the client gets 503
// with the soonest Retry-After.
func TestRateLimitCooldown(t *testing.T) {
	fakes, urls := fleet(t, 2)
	fakes[0].SetBehavior(fakellm.Behavior{Status: 429, Header: map[string]string{"Retry-After": "30"}})
	g := start(t, nil, routeSite(`		model m {
`+upstreamLines(urls...)+`			lb_policy first
		}`))
	c := routeClient(g)
	for i := range 5 {
		if _, err := c.Chat.Completions.New(context.Background(), chat("m", "hi")); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if fakes[0].Count() != 1 || fakes[1].Count() != 5 {
		t.Fatalf("limited upstream got %d calls, the other %d; want 1 and 5", fakes[0].Count(), fakes[1].Count())
	}
	view := upstreams(t, g)["m"]
	until, _ := time.Parse(time.RFC3339Nano, view[0].CooldownUntil)
	if view[0].Healthy || view[0].CooldownWhy != "rate_limited" || time.Until(until) < 25*time.Second || time.Until(until) > 31*time.Second {
		t.Fatalf("view %+v", view[0])
	}

	fakes[1].SetBehavior(fakellm.Behavior{Status: 429, Header: map[string]string{"retry-after-ms": "12000"}})
	_, err := c.Chat.Completions.New(context.Background(), chat("m", "hi"))
	e := apiError(t, err, http.StatusServiceUnavailable)
	if e.Code != "upstream_unavailable" || strings.Contains(e.Message, "Rate limit reached") || e.Response.Header.Get("Retry-After") != "12" {
		t.Fatalf("%s Retry-After %q", e.RawJSON(), e.Response.Header.Get("Retry-After"))
	}
	// Both rest now: the next call is answered at once, without a try.
	before := fakes[0].Count() + fakes[1].Count()
	_, err = c.Chat.Completions.New(context.Background(), chat("m", "hi"))
	if e := apiError(t, err, http.StatusServiceUnavailable); e.Response.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	if fakes[0].Count()+fakes[1].Count() != before {
		t.Fatal("a resting upstream was called")
	}
}

// TestStreamBreaks: with stream_commit first_content a stream that breaks
// before its first content event is retried on another upstream; by
// default its first event (the role chunk) was already sent, so it is cut
// like one that breaks later: an error event, no [DONE], no retry.
func TestStreamBreaks(t *testing.T) {
	fakes, urls := fleet(t, 2)
	g := start(t, nil, routeSite(`		model m {
`+upstreamLines(urls...)+`			lb_policy first
			max_fails 100
		}
		model held {
`+upstreamLines(urls...)+`			lb_policy first
			max_fails 100
			stream_commit first_content
		}`))
	fakes[0].SetBehavior(fakellm.Behavior{DropBeforeContent: true})
	status, hdr, body := rawStream(t, g, "held")
	if status != 200 || !strings.HasSuffix(body, "data: [DONE]\n\n") || strings.Count(body, `"role":"assistant"`) != 1 ||
		!strings.Contains(body, "chunk4") || hdr.Get("X-Attempts") != "2" {
		t.Fatalf("%d attempts %s:\n%s", status, hdr.Get("X-Attempts"), body)
	}
	// The retry sent the very same body.
	first, _ := fakes[0].LastRequest()
	second, _ := fakes[1].LastRequest()
	if string(first.Body) != string(second.Body) || len(first.Body) == 0 {
		t.Fatalf("first try sent %s, the retry %s", first.Body, second.Body)
	}
	backup := fakes[1].Count()

	status, hdr, body = rawStream(t, g, "m")
	if status != 200 || strings.Count(body, `"role":"assistant"`) != 1 || strings.Contains(body, "chunk0") ||
		strings.Contains(body, "[DONE]") || !strings.HasSuffix(body, `"code":"upstream_stream_broken"}}`+"\n\n") ||
		hdr.Get("X-Attempts") != "1" {
		t.Fatalf("%d attempts %s:\n%s", status, hdr.Get("X-Attempts"), body)
	}

	fakes[0].SetBehavior(fakellm.Behavior{DropAfter: 2})
	for _, model := range []string{"m", "held"} {
		status, _, body = rawStream(t, g, model)
		if status != 200 || !strings.Contains(body, "chunk1") || strings.Contains(body, "chunk2") || strings.Contains(body, "[DONE]") ||
			!strings.HasSuffix(body, `"code":"upstream_stream_broken"}}`+"\n\n") {
			t.Fatalf("%s: %d:\n%s", model, status, body)
		}
	}
	if n := fakes[1].Count() - backup; n != 0 {
		t.Fatalf("a committed stream was retried: the backup got %d more calls", n)
	}
	lines := g.StatsLines(t, 4)
	if first := lines[0]; first["attempts"] != float64(2) || first["truncated"] != nil || first["error_code"] != nil {
		t.Fatalf("stats of the retried stream %v", first)
	}
	for _, line := range lines[1:] {
		if line["truncated"] != true || line["status"] != float64(200) || line["error_code"] != "upstream_stream_broken" {
			t.Fatalf("stats %v", line)
		}
	}
}

// TestStreamFirstByte: by default the first event reaches the client as
// the upstream sends it, not with the first token; with stream_commit
// first_content it comes with the first token.
func TestStreamFirstByte(t *testing.T) {
	fakes, urls := fleet(t, 1)
	const delay = 300 * time.Millisecond
	fakes[0].SetBehavior(fakellm.Behavior{Chunks: 2, ChunkDelay: delay})
	g := start(t, nil, routeSite(`		model m {
`+upstreamLines(urls...)+`		}
		model held {
`+upstreamLines(urls...)+`			stream_commit first_content
		}`))
	for _, tc := range []struct {
		model string
		early bool
	}{{"m", true}, {"held", false}} {
		begin := time.Now()
		s := routeClient(g).Chat.Completions.NewStreaming(context.Background(), chat(tc.model, "hi"))
		if !s.Next() {
			t.Fatalf("%s: no first chunk: %v", tc.model, s.Err())
		}
		took, role := time.Since(begin), s.Current().Choices[0].Delta.Role
		for s.Next() {
		}
		if s.Err() != nil {
			t.Fatal(s.Err())
		}
		if early := took < delay/2; early != tc.early || (tc.early && role != "assistant") {
			t.Fatalf("%s: the first chunk (role %q) came after %v", tc.model, role, took)
		}
	}
}

// TestStreamIdle: a stream whose upstream goes silent ends after
// stream_idle_timeout with an error event and no [DONE].
func TestStreamIdle(t *testing.T) {
	fakes, urls := fleet(t, 1)
	fakes[0].SetBehavior(fakellm.Behavior{Stall: 10 * time.Second, StallAfter: 2})
	g := start(t, nil, routeSite(`		model m {
`+upstreamLines(urls...)+`			stream_idle_timeout 300ms
		}`))
	begin := time.Now()
	status, _, body := rawStream(t, g, "m")
	took := time.Since(begin)
	if status != 200 || !strings.Contains(body, "chunk1") || strings.Contains(body, "[DONE]") ||
		!strings.Contains(body, `"code":"stream_idle_timeout"`) || took < 300*time.Millisecond || took > 2*time.Second {
		t.Fatalf("%d after %v:\n%s", status, took, body)
	}
	// The SDK sees the cut.
	s := routeClient(g).Chat.Completions.NewStreaming(context.Background(), chat("m", "hi"))
	for s.Next() {
	}
	if s.Err() == nil || !strings.Contains(s.Err().Error(), "sent nothing for 300ms") {
		t.Fatalf("SDK error %v", s.Err())
	}
	if line := g.LastStats(t, 2); line["truncated"] != true || line["error_code"] != "stream_idle_timeout" {
		t.Fatalf("stats %v", line)
	}
}

// TestFallback: when every upstream of a model fails, its fallback answers,
// and the record says which model served; a key that may not use the
// fallback gets the primary's failure.
func TestFallback(t *testing.T) {
	fakes, urls := fleet(t, 3)
	fakes[0].SetBehavior(fakellm.Behavior{Status: 503})
	fakes[1].SetBehavior(fakellm.Behavior{Status: 500})
	g := start(t, nil, routeSite(`		model primary {
`+upstreamLines(urls[0], urls[1])+`			fallback backup
			price 10 30
		}
		model backup {
`+upstreamLines(urls[2])+`			price 1 2
		}`))
	var resp *http.Response
	c := routeClient(g)
	got, err := c.Chat.Completions.New(context.Background(), chat("primary", "a b c"), option.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	if got.Choices[0].Message.Content != "chunk0 chunk1 chunk2 chunk3 chunk4" || resp.Header.Get("X-Served-Model") != "backup" ||
		resp.Header.Get("X-Attempts") != "3" {
		t.Fatalf("served by %q after %s tries", resp.Header.Get("X-Served-Model"), resp.Header.Get("X-Attempts"))
	}
	if up, _ := fakes[2].LastRequest(); up.Model != "backup" {
		t.Fatalf("the fallback's upstream was asked for %q", up.Model)
	}
	// The record: served by the fallback, priced at its price (3 prompt and
	// 5 completion tokens at 1 and 2 USD per million), the failed tries named.
	line := g.LastStats(t, 1)
	retried, _ := line["retried"].([]any)
	if line["model"] != "primary" || line["served_model"] != "backup" || line["attempts"] != float64(3) || len(retried) != 2 ||
		!strings.HasPrefix(retried[0].(string), "primary@") || !strings.HasSuffix(retried[0].(string), " server_error") ||
		math.Abs(line["cost"].(float64)-13e-6) > 1e-12 {
		t.Fatalf("stats %v", line)
	}

	only := llmtest.OpenAI(g.URL, "sk-primary-only")
	_, err = only.Chat.Completions.New(context.Background(), chat("primary", "hi"))
	if e := apiError(t, err, http.StatusBadGateway); e.Code != "upstream_error" {
		t.Fatalf("%s", e.RawJSON())
	}
	if fakes[2].Count() != 1 {
		t.Fatal("a key outside the fallback's scope was served by it")
	}
}

// TestWeightedDistribution: weights 3:1 give 3:1 of the calls, to within 5%.
func TestWeightedDistribution(t *testing.T) {
	fakes, urls := fleet(t, 2)
	g := start(t, nil, routeSite(fmt.Sprintf(`		model m {
			upstream openai %s %s {
				weight 3
			}
			upstream openai %s %s
			lb_policy weighted_round_robin
		}`, urls[0], upstreamKey, urls[1], upstreamKey)))
	c := routeClient(g)
	const calls = 80
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range calls / 4 {
				if _, err := c.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
					Model: "m", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")},
				}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if share := float64(fakes[0].Count()) / calls; share < 0.70 || share > 0.80 || fakes[0].Count()+fakes[1].Count() != calls {
		t.Fatalf("weight 3 got %d of %d calls, weight 1 got %d", fakes[0].Count(), calls, fakes[1].Count())
	}
}

// TestLeastConnDistribution: a slow upstream holds its calls longer, so
// least_conn sends it fewer: the fast one serves at least 65% of them.
func TestLeastConnDistribution(t *testing.T) {
	fakes, urls := fleet(t, 2)
	fakes[0].SetBehavior(fakellm.Behavior{ChunkDelay: 40 * time.Millisecond})
	g := start(t, nil, routeSite(`		model m {
`+upstreamLines(urls...)+`			lb_policy least_conn
		}`))
	c := routeClient(g)
	const workers, each = 6, 10
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				if _, err := c.Chat.Completions.New(context.Background(), chat("m", "hi")); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if fast := float64(fakes[1].Count()) / (workers * each); fast < 0.65 {
		t.Fatalf("the fast upstream served %d calls, the slow one %d", fakes[1].Count(), fakes[0].Count())
	}
	for _, u := range upstreams(t, g)["m"] {
		if u.InFlight != 0 {
			t.Fatalf("%s still shows %d in flight", u.ID, u.InFlight)
		}
	}
}

// TestTwoKeysTwoUpstreams: one URL with two keys is two upstreams, each
// with its own health and its own share of the calls.
func TestTwoKeysTwoUpstreams(t *testing.T) {
	fake := &fakellm.Server{}
	keys := []string{"sk-upstream-one-1111111111", "sk-upstream-two-2222222222"}
	g := start(t, fake, routeSite(`		model m {
			upstream openai {UPSTREAM} `+keys[0]+`
			upstream openai {UPSTREAM} `+keys[1]+`
		}`))
	c := routeClient(g)
	for range 4 {
		if _, err := c.Chat.Completions.New(context.Background(), chat("m", "hi")); err != nil {
			t.Fatal(err)
		}
	}
	sent := map[string]int{}
	for _, r := range fake.Requests() {
		sent[r.Header.Get("Authorization")]++
	}
	if sent["Bearer "+keys[0]] != 2 || sent["Bearer "+keys[1]] != 2 {
		t.Fatalf("keys sent %v", sent)
	}
	view := upstreams(t, g, keys...)["m"]
	if len(view) != 2 || view[0].URL != view[1].URL || view[0].KeyHash == view[1].KeyHash || len(view[0].KeyHash) != 8 ||
		view[0].ID == view[1].ID || view[0].Requests != 2 || view[1].Requests != 2 {
		t.Fatalf("view %+v", view)
	}
}

// TestReloadUnderStreams: a config reload while streams run finishes every
// stream, and keeps what the gateway learnt of its upstreams.
func TestReloadUnderStreams(t *testing.T) {
	fakes, urls := fleet(t, 2)
	fakes[0].SetBehavior(fakellm.Behavior{Status: 429, Header: map[string]string{"Retry-After": "60"}})
	fakes[1].SetBehavior(fakellm.Behavior{Chunks: 10, ChunkDelay: 150 * time.Millisecond})
	route := `		model m {
` + upstreamLines(urls...) + `			lb_policy first
		}`
	g := start(t, nil, routeSite(route))
	c := routeClient(g)
	if _, err := c.Chat.Completions.New(context.Background(), chat("m", "hi")); err != nil {
		t.Fatal(err)
	}
	const streams = 8
	var wg sync.WaitGroup
	started := make(chan struct{}, streams)
	for range streams {
		wg.Go(func() {
			s := c.Chat.Completions.NewStreaming(context.Background(), chat("m", "hi"))
			var acc openai.ChatCompletionAccumulator
			first := true
			for s.Next() {
				acc.AddChunk(s.Current())
				if first {
					started <- struct{}{}
					first = false
				}
			}
			if err := s.Err(); err != nil {
				t.Errorf("stream across the reload: %v", err)
			} else if got := acc.Choices[0].Message.Content; !strings.HasSuffix(got, "chunk9") {
				t.Errorf("stream across the reload got %q", got)
			}
		})
	}
	for range streams {
		<-started
	}
	if fakes[1].Active() != streams {
		t.Fatalf("%d streams running at the reload, want %d", fakes[1].Active(), streams)
	}
	g.Load(routeSite(route + `
		model other {
` + upstreamLines(urls[1]) + `		}`))
	if view := upstreams(t, g)["m"]; view[0].CooldownWhy != "rate_limited" || view[1].InFlight != streams {
		t.Fatalf("after the reload: %+v", view)
	}
	wg.Wait()
	// The new config still skips the limited upstream.
	if _, err := c.Chat.Completions.New(context.Background(), chat("m", "hi")); err != nil {
		t.Fatal(err)
	}
	if fakes[0].Count() != 1 {
		t.Fatalf("the rate-limited upstream got %d calls, want 1: the reload forgot its cool-down", fakes[0].Count())
	}
}

// TestDuplicateKeys: a body naming the model twice is refused, whichever
// copy an upstream would keep.
func TestDuplicateKeys(t *testing.T) {
	g := start(t, nil, routeSite(`		model primary {
			upstream openai {UPSTREAM} `+upstreamKey+`
		}`))
	for _, body := range []string{
		`{"model":"primary","messages":[{"role":"user","content":"hi"}],"model":"gpt-4o"}`,
		`{"model":"primary","stream":false,"messages":[],"stream":true}`,
	} {
		status, e := post(t, g.URL+"/v1/chat/completions", "sk-primary-only", body)
		if status != 400 || e.Error.Code != "invalid_value" || !strings.Contains(e.Error.Message, "more than once") {
			t.Fatalf("%s: %d %+v", body, status, e)
		}
	}
	if g.Fake.Count() != 0 {
		t.Fatal("a body with a repeated key reached the upstream")
	}
}

// TestActiveHealth: an upstream out after failures comes back as soon as
// its health check answers, and stays out while the check fails too.
func TestActiveHealth(t *testing.T) {
	fakes, urls := fleet(t, 2)
	fakes[0].SetModelBehavior("m", fakellm.Behavior{Status: 500})
	g := start(t, nil, routeSite(`		model m {
`+upstreamLines(urls...)+`			lb_policy first
			max_fails 1
			fail_duration 1m
			health_interval 100ms
		}`))
	if _, err := routeClient(g).Chat.Completions.New(context.Background(), chat("m", "hi")); err != nil {
		t.Fatal(err)
	}
	healthy := func() bool { return upstreams(t, g)["m"][0].Healthy }
	deadline := time.Now().Add(2 * time.Second)
	for !healthy() {
		if time.Now().After(deadline) {
			t.Fatal("the upstream's health check answers, yet it stays out")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if probes := fakes[0].Count() - 1; probes < 1 || fakes[0].Requests()[1].Path != "/v1/models" ||
		fakes[0].Requests()[1].Header.Get("Authorization") != "Bearer "+upstreamKey {
		t.Fatalf("no GET /v1/models probe with the upstream's key: %+v", fakes[0].Requests())
	}

	fakes[0].SetBehavior(fakellm.Behavior{Status: 500})
	if _, err := routeClient(g).Chat.Completions.New(context.Background(), chat("m", "hi")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	if v := upstreams(t, g)["m"][0]; v.Healthy || v.LastError != "health check: status 500" {
		t.Fatalf("a failing health check brought the upstream back: %+v", v)
	}
}

// TestCallTimeout: timeout bounds the whole call, tries and stream included.
func TestCallTimeout(t *testing.T) {
	fakes, urls := fleet(t, 1)
	g := start(t, nil, routeSite(`		model m {
`+upstreamLines(urls...)+`			timeout 500ms
		}`))
	fakes[0].SetBehavior(fakellm.Behavior{Latency: 5 * time.Second})
	begin := time.Now()
	_, err := routeClient(g).Chat.Completions.New(context.Background(), chat("m", "hi"))
	if e := apiError(t, err, http.StatusGatewayTimeout); e.Code != "timeout" || time.Since(begin) > 2*time.Second {
		t.Fatalf("%s after %v", e.RawJSON(), time.Since(begin))
	}
	fakes[0].SetBehavior(fakellm.Behavior{Chunks: 50, ChunkDelay: 50 * time.Millisecond})
	status, _, body := rawStream(t, g, "m")
	if status != 200 || !strings.Contains(body, "chunk1") || strings.Contains(body, "[DONE]") || !strings.Contains(body, `"code":"timeout"`) {
		t.Fatalf("%d:\n%s", status, body)
	}
}
