package stats

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/llmoneapi/llmoneapi/llm"
)

func init() {
	caddy.RegisterModule(testRecorder{})
}

// testRecorder is the llm.stats.testrec module: it passes every record it gets
// to the test through a channel.
type testRecorder struct {
	// Fail makes Record return an error.
	Fail bool `json:"fail,omitempty"`
	// Panic makes Record panic.
	Panic bool `json:"panic,omitempty"`
	// Block makes Record wait until the test closes gate or ctx is done.
	Block bool `json:"block,omitempty"`
	// Args holds the Caddyfile arguments, to check they reach the guest.
	Args []string `json:"args,omitempty"`

	got     chan llm.Call
	entered chan struct{}
	gate    chan struct{}
}

func (testRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.stats.testrec",
		New: func() caddy.Module { return new(testRecorder) },
	}
}

func (t *testRecorder) Provision(caddy.Context) error {
	t.got = make(chan llm.Call, 1000)
	t.entered = make(chan struct{}, 1000)
	t.gate = make(chan struct{})
	return nil
}

func (t *testRecorder) Record(ctx context.Context, c llm.Call) error {
	t.entered <- struct{}{}
	if t.Block {
		select {
		case <-t.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if t.Panic {
		panic("boom")
	}
	t.got <- c
	if t.Fail {
		return errors.New("sink unavailable")
	}
	return nil
}

func (t *testRecorder) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	t.Args = d.RemainingArgs()
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "fail":
			t.Fail = true
		case "block":
			t.Block = true
		default:
			return d.Errf("unrecognized testrec subdirective '%s'", d.Val())
		}
	}
	return nil
}

// newHandler provisions an llm_stats handler from JSON in a fresh Caddy
// context, which the test cancels (running Cleanup) when it ends.
func newHandler(t *testing.T, config string) (*Handler, caddy.Context) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	mod, err := ctx.LoadModuleByID("http.handlers.llm_stats", json.RawMessage(config))
	if err != nil {
		t.Fatalf("provisioning %s: %v", config, err)
	}
	return mod.(*Handler), ctx
}

func recorderOf(t *testing.T, h *Handler, i int) *testRecorder {
	t.Helper()
	return h.targets[i].rec.(*testRecorder)
}

func prepare(w http.ResponseWriter, req *http.Request) (*http.Request, *caddy.Replacer) {
	repl := caddy.NewReplacer()
	return caddyhttp.PrepareRequest(req, repl, w, &caddyhttp.Server{}), repl
}

func serve(h *Handler, next caddyhttp.HandlerFunc) (*httptest.ResponseRecorder, error) {
	w := httptest.NewRecorder()
	req, _ := prepare(w, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil))
	return w, h.ServeHTTP(w, req, next)
}

func next(status int, body string) caddyhttp.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(status)
		_, err := io.WriteString(w, body)
		return err
	}
}

func receive(t *testing.T, rec *testRecorder) llm.Call {
	t.Helper()
	select {
	case c := <-rec.got:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no record reached the recorder")
		return llm.Call{}
	}
}

func waitEntered(t *testing.T, rec *testRecorder) {
	t.Helper()
	select {
	case <-rec.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the recorder was never called")
	}
}

// count reads a records_total counter. The counters are shared by all tests,
// so tests compare differences.
func count(recorder, result string) float64 {
	var m dto.Metric
	if err := metrics.records.WithLabelValues(recorder, result).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func TestRecordReachesRecorderAfterResponse(t *testing.T) {
	h, _ := newHandler(t, `{"recorders":[{"recorder":"testrec"}]}`)
	rec := recorderOf(t, h, 0)
	okBefore := count("testrec", "ok")

	w, err := serve(h, func(w http.ResponseWriter, r *http.Request) error {
		c := llm.CallFrom(r)
		c.Model = "gpt-4o-mini"
		c.Provider = "openai"
		c.Usage = llm.Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7}
		time.Sleep(5 * time.Millisecond)
		if len(rec.entered) != 0 {
			t.Error("the recorder was called before the response ended")
		}
		w.WriteHeader(http.StatusCreated)
		_, err := io.WriteString(w, "ok")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusCreated || w.Body.String() != "ok" {
		t.Errorf("response = %d %q, want 201 \"ok\"", w.Code, w.Body)
	}

	c := receive(t, rec)
	if c.Model != "gpt-4o-mini" || c.Provider != "openai" || c.Usage.TotalTokens != 7 {
		t.Errorf("record lost the inner handler's fields: %+v", c)
	}
	if c.Status != http.StatusCreated {
		t.Errorf("Status = %d, want 201", c.Status)
	}
	if c.Duration < 5*time.Millisecond {
		t.Errorf("Duration = %v, want at least 5ms", c.Duration)
	}
	if c.ID == "" {
		t.Error("ID is empty, want the request's uuid")
	}
	if c.ClientAborted {
		t.Error("ClientAborted set on a finished request")
	}
	waitCount(t, "testrec", "ok", okBefore+1)
}

// waitCount waits for a counter the worker increments after Record returns.
func waitCount(t *testing.T, recorder, result string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for count(recorder, result) != want {
		if time.Now().After(deadline) {
			t.Fatalf("records_total{recorder=%q,result=%q} = %v, want %v", recorder, result, count(recorder, result), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestEveryRecorderGetsTheRecord(t *testing.T) {
	h, _ := newHandler(t, `{"recorders":[{"recorder":"testrec"},{"recorder":"testrec","fail":true}]}`)
	if _, err := serve(h, next(200, "")); err != nil {
		t.Fatal(err)
	}
	a, b := receive(t, recorderOf(t, h, 0)), receive(t, recorderOf(t, h, 1))
	if a.ID == "" || a.ID != b.ID || a.Status != b.Status {
		t.Errorf("the recorders got different records: %+v and %+v", a, b)
	}
}

func TestStatus(t *testing.T) {
	errPlain := errors.New("plain")
	tests := []struct {
		name    string
		next    caddyhttp.HandlerFunc
		want    int
		wantErr error
	}{
		{"nothing written", func(http.ResponseWriter, *http.Request) error { return nil }, 200, nil},
		{"body only", func(w http.ResponseWriter, _ *http.Request) error {
			_, err := io.WriteString(w, "x")
			return err
		}, 200, nil},
		{"written", next(http.StatusTeapot, "x"), http.StatusTeapot, nil},
		{"early hints first", func(w http.ResponseWriter, _ *http.Request) error {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusAccepted)
			return nil
		}, http.StatusAccepted, nil},
		{"read from", func(w http.ResponseWriter, _ *http.Request) error {
			_, err := io.Copy(w, strings.NewReader("streamed"))
			return err
		}, 200, nil},
		{"handler error", func(http.ResponseWriter, *http.Request) error {
			return caddyhttp.Error(http.StatusTooManyRequests, errPlain)
		}, http.StatusTooManyRequests, errPlain},
		{"plain error", func(http.ResponseWriter, *http.Request) error { return errPlain }, 500, errPlain},
		{"error after writing", func(w http.ResponseWriter, _ *http.Request) error {
			w.WriteHeader(http.StatusBadGateway)
			return caddyhttp.Error(http.StatusTooManyRequests, errPlain)
		}, http.StatusBadGateway, errPlain},
		{"inner handler's status wins", func(w http.ResponseWriter, r *http.Request) error {
			llm.CallFrom(r).Status = 499
			w.WriteHeader(http.StatusOK)
			return nil
		}, 499, nil},
		{"llm.Error", func(w http.ResponseWriter, r *http.Request) error {
			llm.Errorf(http.StatusForbidden, llm.TypePermission, "model_not_allowed", "no").Write(w, r)
			return nil
		}, http.StatusForbidden, nil},
	}
	h, _ := newHandler(t, `{"recorders":[{"recorder":"testrec"}]}`)
	rec := recorderOf(t, h, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := serve(h, tt.next)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("ServeHTTP returned %v, want %v", err, tt.wantErr)
			}
			if c := receive(t, rec); c.Status != tt.want {
				t.Errorf("Status = %d, want %d", c.Status, tt.want)
			}
		})
	}
}

func TestErrorReturnedUnchanged(t *testing.T) {
	h, _ := newHandler(t, `{}`)
	want := caddyhttp.Error(http.StatusBadGateway, errors.New("upstream down"))
	_, err := serve(h, func(http.ResponseWriter, *http.Request) error { return want })
	var got caddyhttp.HandlerError
	if !errors.As(err, &got) || got.ID != want.ID || got.StatusCode != want.StatusCode {
		t.Errorf("ServeHTTP returned %#v, want %#v", err, want)
	}
}

func TestClientAborted(t *testing.T) {
	h, _ := newHandler(t, `{"recorders":[{"recorder":"testrec"}]}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := httptest.NewRecorder()
	req, _ := prepare(w, httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/chat/completions", nil))
	err := h.ServeHTTP(w, req, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusOK)
		cancel() // the client goes away mid-response
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c := receive(t, recorderOf(t, h, 0)); !c.ClientAborted {
		t.Error("ClientAborted not set after the request context was cancelled")
	}
}

func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	h, _ := newHandler(t, `{"recorders":[{"recorder":"testrec","block":true}],"queue_size":1}`)
	rec := recorderOf(t, h, 0)
	dropped := count("testrec", "dropped")

	// The first record occupies the worker, the second fills the queue.
	if _, err := serve(h, next(200, "")); err != nil {
		t.Fatal(err)
	}
	waitEntered(t, rec)
	if _, err := serve(h, next(200, "")); err != nil {
		t.Fatal(err)
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 3 {
			_, _ = serve(h, next(200, ""))
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a request blocked on a full recorder queue")
	}
	if got := count("testrec", "dropped") - dropped; got != 3 {
		t.Errorf("dropped %v records, want 3", got)
	}

	close(rec.gate)
	receive(t, rec)
	receive(t, rec)
}

func TestCleanupDrainsQueue(t *testing.T) {
	h, _ := newHandler(t, `{"recorders":[{"recorder":"testrec","block":true}]}`)
	rec := recorderOf(t, h, 0)
	ok, dropped := count("testrec", "ok"), count("testrec", "dropped")

	for range 5 {
		if _, err := serve(h, next(200, "")); err != nil {
			t.Fatal(err)
		}
	}
	waitEntered(t, rec)

	cleaned := make(chan error)
	go func() { cleaned <- h.Cleanup() }()
	select {
	case <-cleaned:
		t.Fatal("Cleanup returned before the queued records were written")
	case <-time.After(20 * time.Millisecond):
	}
	close(rec.gate)
	if err := <-cleaned; err != nil {
		t.Fatal(err)
	}
	if got := len(rec.got); got != 5 {
		t.Errorf("recorder got %d records by the end of Cleanup, want 5", got)
	}
	if got := count("testrec", "ok") - ok; got != 5 {
		t.Errorf("ok count grew by %v, want 5", got)
	}

	// A request that ends after Cleanup is counted, not lost.
	if _, err := serve(h, next(200, "")); err != nil {
		t.Fatal(err)
	}
	if got := count("testrec", "dropped") - dropped; got != 1 {
		t.Errorf("dropped count grew by %v after Cleanup, want 1", got)
	}
	if len(rec.got) != 5 {
		t.Error("a record reached the recorder after Cleanup")
	}
}

func TestCleanupGivesUpOnStuckRecorder(t *testing.T) {
	defer func(d time.Duration) { drainTimeout = d }(drainTimeout)
	drainTimeout = 50 * time.Millisecond

	h, _ := newHandler(t, `{"recorders":[{"recorder":"testrec","block":true}]}`)
	rec := recorderOf(t, h, 0)
	failed, dropped := count("testrec", "failed"), count("testrec", "dropped")
	for range 3 {
		if _, err := serve(h, next(200, "")); err != nil {
			t.Fatal(err)
		}
	}
	waitEntered(t, rec)

	start := time.Now()
	if err := h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Cleanup took %v with a %v drain timeout", took, drainTimeout)
	}
	// The stuck Record sees its context cancelled; the rest are dropped.
	<-h.workers[0].done
	if got := count("testrec", "failed") - failed; got != 1 {
		t.Errorf("failed count grew by %v, want 1", got)
	}
	if got := count("testrec", "dropped") - dropped; got != 2 {
		t.Errorf("dropped count grew by %v, want 2", got)
	}
}

func TestCleanupAfterFailedProvision(t *testing.T) {
	for _, config := range []string{
		`{"queue_size":-1}`,
		`{"recorders":[{"recorder":"testrec"},{"recorder":"nonexistent"}]}`,
		`{"recorders":[{"recorder":"log","level":"loud"}]}`,
	} {
		t.Run(config, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			h := new(Handler)
			if err := json.Unmarshal([]byte(config), h); err != nil {
				t.Fatal(err)
			}
			if err := h.Provision(ctx); err == nil {
				t.Fatal("Provision succeeded, want an error")
			}
			if err := h.Cleanup(); err != nil {
				t.Errorf("Cleanup after a failed Provision: %v", err)
			}
		})
	}
}

func TestFailingRecorder(t *testing.T) {
	for _, tt := range []struct{ config, wantErr string }{
		{`{"recorders":[{"recorder":"testrec","fail":true}]}`, "sink unavailable"},
		{`{"recorders":[{"recorder":"testrec","panic":true}]}`, "recorder panicked: boom"},
	} {
		t.Run(tt.wantErr, func(t *testing.T) {
			h, _ := newHandler(t, tt.config)
			core, logs := observer.New(zapcore.WarnLevel)
			// Safe without locking: the worker reads the logger only after
			// receiving a record, which is sent after this write.
			w := h.workers[0]
			w.current.Store(&target{w.current.Load().rec, zap.New(core)})
			failed := count("testrec", "failed")

			if _, err := serve(h, next(200, "")); err != nil {
				t.Fatal(err)
			}
			waitCount(t, "testrec", "failed", failed+1)
			// The counter is shared by every testrec of the package, and
			// a worker counts a failure before it logs it: wait for the
			// warning itself.
			var entries []observer.LoggedEntry
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				if entries = logs.FilterMessage("stats recorder failed").AllUntimed(); len(entries) > 0 {
					break
				}
			}
			if len(entries) != 1 {
				t.Fatalf("got %d warnings, want 1", len(entries))
			}
			fields := entries[0].ContextMap()
			if fields["recorder"] != "testrec" || fields["error"] != tt.wantErr || fields["request_id"] == "" {
				t.Errorf("warning fields = %v", fields)
			}
		})
	}
}

func TestPlaceholders(t *testing.T) {
	h, _ := newHandler(t, `{}`)
	w := httptest.NewRecorder()
	req, repl := prepare(w, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil))
	err := h.ServeHTTP(w, req, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		c := llm.CallFrom(r)
		c.Identity = &llm.Identity{User: "alice", KeyID: "k1"}
		c.Model = "gpt-4o-mini"
		c.Usage.TotalTokens = 42
		c.TTFT = 1500 * time.Millisecond
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	got := repl.ReplaceAll("{llm.user} {llm.key_id} {llm.model} {llm.usage.total_tokens} {llm.ttft_ms} {llm.stream}", "-")
	if want := "alice k1 gpt-4o-mini 42 1500 false"; got != want {
		t.Errorf("placeholders = %q, want %q", got, want)
	}
}

func TestStreamingFlushReachesClient(t *testing.T) {
	h, _ := newHandler(t, `{"recorders":[{"recorder":"testrec"}]}`)
	w := httptest.NewRecorder()
	req, _ := prepare(w, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil))
	err := h.ServeHTTP(w, req, caddyhttp.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) error {
		llm.CallFrom(r).Stream = true
		rw.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(rw)
		for _, event := range []string{"data: 1\n\n", "data: [DONE]\n\n"} {
			if _, err := io.WriteString(rw, event); err != nil {
				return err
			}
			if err := rc.Flush(); err != nil {
				return err
			}
			if !w.Flushed {
				t.Errorf("event %q not flushed to the client", event)
			}
			w.Flushed = false
		}
		return nil
	}))
	if err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	if want := "data: 1\n\ndata: [DONE]\n\n"; w.Body.String() != want {
		t.Errorf("body = %q, want %q", w.Body, want)
	}
	if c := receive(t, recorderOf(t, h, 0)); c.Status != http.StatusOK || !c.Stream {
		t.Errorf("record: status %d stream %v, want 200 true", c.Status, c.Stream)
	}
}

func TestMetricsRegisteredOnEveryProvision(t *testing.T) {
	_, ctx := newHandler(t, `{"recorders":[{"recorder":"testrec"}]}`)
	// A second handler in the same config must not fail on the shared collector.
	if _, err := ctx.LoadModuleByID("http.handlers.llm_stats", json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	families, err := ctx.GetMetricsRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "llmoneapi_stats_records_total" {
			return
		}
	}
	t.Error("llmoneapi_stats_records_total is not in the config's registry")
}

// TestConcurrentServeAndCleanup is for the race detector: requests keep
// finishing while Cleanup runs, and every record is either written or
// counted as dropped.
func TestConcurrentServeAndCleanup(t *testing.T) {
	// The recorder's channel holds every record, so it never blocks.
	h, _ := newHandler(t, `{"recorders":[{"recorder":"testrec"}],"queue_size":16}`)
	ok, dropped := count("testrec", "ok"), count("testrec", "dropped")
	const workers, each = 4, 100

	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				_, _ = serve(h, next(200, ""))
			}
		})
	}
	time.Sleep(time.Millisecond)
	if err := h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if got := (count("testrec", "ok") - ok) + (count("testrec", "dropped") - dropped); got != workers*each {
		t.Errorf("ok+dropped = %v, want %d", got, workers*each)
	}
}
