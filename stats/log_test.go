package stats

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/llmoneapi/llmoneapi/llm"
)

// newLog provisions a log recorder and points it at an observer that keeps
// lines at observed level and above.
func newLog(t *testing.T, config string, observed zapcore.Level) (*Log, *observer.ObservedLogs) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	mod, err := ctx.LoadModuleByID("llm.stats.log", json.RawMessage(config))
	if err != nil {
		t.Fatal(err)
	}
	l := mod.(*Log)
	core, logs := observer.New(observed)
	l.logger = zap.New(core)
	return l, logs
}

func TestLogWritesOneLine(t *testing.T) {
	l, logs := newLog(t, `{}`, zapcore.DebugLevel)
	c := llm.Call{
		ID:            "req-1",
		Duration:      1500 * time.Millisecond,
		Endpoint:      llm.EndpointChat,
		Identity:      &llm.Identity{User: "alice", KeyID: "k-alice-1", Team: "research"},
		Model:         "gpt-4o-mini",
		ServedModel:   "gpt-4o",
		API:           llm.APIOpenAIChat,
		UpstreamModel: "gpt-4o-mini-2024-07-18",
		Provider:      "openai",
		Upstream:      "api.openai.com",
		Stream:        true,
		Status:        200,
		Usage: llm.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15,
			CachedTokens: 4, CacheCreationTokens: 2, ReasoningTokens: 3},
		Cost: 0.0125,
		Attempts: []llm.Attempt{
			{Model: "gpt-4o-mini", Upstream: "a.example", Outcome: "timeout"},
			{Model: "gpt-4o-mini", Upstream: "b.example", Outcome: "rate_limited"},
			{Model: "gpt-4o", Upstream: "api.openai.com", Outcome: "ok"},
		},
		UsageSource:   llm.UsageUpstream,
		TTFT:          250 * time.Millisecond,
		Truncated:     true,
		ClientAborted: true,
		Error:         "upstream went away",
		ErrorCode:     "upstream_stream_cut",
	}
	if err := l.Record(context.Background(), c); err != nil {
		t.Fatal(err)
	}

	entries := logs.AllUntimed()
	if len(entries) != 1 {
		t.Fatalf("got %d lines, want 1", len(entries))
	}
	e := entries[0]
	if e.Message != "llm request" || e.Level != zapcore.InfoLevel {
		t.Errorf("line = %s %q, want info \"llm request\"", e.Level, e.Message)
	}
	want := map[string]any{
		"request_id":            "req-1",
		"key_id":                "k-alice-1",
		"user":                  "alice",
		"model":                 "gpt-4o-mini",
		"upstream_model":        "gpt-4o-mini-2024-07-18",
		"provider":              "openai",
		"upstream":              "api.openai.com",
		"endpoint":              "chat.completions",
		"stream":                true,
		"status":                int64(200),
		"prompt_tokens":         int64(10),
		"completion_tokens":     int64(5),
		"total_tokens":          int64(15),
		"usage_source":          "upstream",
		"duration":              1.5,
		"ttft":                  0.25,
		"truncated":             true,
		"client_aborted":        true,
		"error":                 "upstream went away",
		"error_code":            "upstream_stream_cut",
		"served_model":          "gpt-4o",
		"api":                   "openai.chat",
		"team":                  "research",
		"cached_tokens":         int64(4),
		"cache_creation_tokens": int64(2),
		"reasoning_tokens":      int64(3),
		"cost":                  0.0125,
		"attempts":              int64(3),
	}
	got := e.ContextMap()
	retried, _ := got["retried"].([]any)
	if fmt.Sprint(retried) != "[gpt-4o-mini@a.example timeout gpt-4o-mini@b.example rate_limited]" {
		t.Errorf("retried = %#v, want the two failed tries", got["retried"])
	}
	delete(got, "retried")
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got fields %v, want exactly %v", got, want)
	}
}

func TestLogOmitsUnsetOptionalFields(t *testing.T) {
	l, logs := newLog(t, `{}`, zapcore.DebugLevel)
	if err := l.Record(context.Background(), llm.Call{ID: "req-2", Status: 401, UsageSource: llm.UsageNone}); err != nil {
		t.Fatal(err)
	}
	got := logs.AllUntimed()[0].ContextMap()
	for _, k := range []string{"ttft", "truncated", "client_aborted", "error", "error_code", "retried", "team", "cached_tokens", "cache_creation_tokens", "reasoning_tokens"} {
		if _, ok := got[k]; ok {
			t.Errorf("field %s present in %v", k, got)
		}
	}
	if got["user"] != "" || got["key_id"] != "" {
		t.Errorf("user/key_id = %v/%v without an identity, want empty", got["user"], got["key_id"])
	}
}

func TestLogLevel(t *testing.T) {
	for _, tt := range []struct {
		config   string
		observed zapcore.Level
		want     int
	}{
		{`{"level":"debug"}`, zapcore.InfoLevel, 0},
		{`{"level":"debug"}`, zapcore.DebugLevel, 1},
		{`{"level":"WARN"}`, zapcore.WarnLevel, 1},
		{`{"level":"error"}`, zapcore.ErrorLevel, 1},
		{`{}`, zapcore.WarnLevel, 0},
	} {
		l, logs := newLog(t, tt.config, tt.observed)
		if err := l.Record(context.Background(), llm.Call{}); err != nil {
			t.Fatal(err)
		}
		if got := logs.Len(); got != tt.want {
			t.Errorf("%s observed at %s: %d lines, want %d", tt.config, tt.observed, got, tt.want)
		}
	}
}

func TestLogBadLevel(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	for _, level := range []string{"loud", "fatal", "panic"} {
		_, err := ctx.LoadModuleByID("llm.stats.log", json.RawMessage(`{"level":"`+level+`"}`))
		if err == nil || !strings.Contains(err.Error(), "unknown log level '"+level+"'") {
			t.Errorf("level %s: err = %v, want an unknown log level error", level, err)
		}
	}
}

// TestLogThroughHandler checks the recorder end to end, as the handler's guest.
func TestLogThroughHandler(t *testing.T) {
	h, _ := newHandler(t, `{"recorders":[{"recorder":"log"}]}`)
	l := h.workers[0].current.Load().rec.(*Log)
	core, logs := observer.New(zapcore.InfoLevel)
	// The worker reads the logger only after receiving a record, which is
	// sent after this write.
	l.logger = zap.New(core)
	ok := count("log", "ok")

	if _, err := serve(h, next(200, "")); err != nil {
		t.Fatal(err)
	}
	waitCount(t, "log", "ok", ok+1)
	if logs.Len() != 1 || logs.All()[0].ContextMap()["status"] != int64(200) {
		t.Errorf("lines = %v", logs.All())
	}
}

// BenchmarkLogRecord is the log recorder's cost per record, encoding JSON
// lines to nowhere.
func BenchmarkLogRecord(b *testing.B) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	mod, err := ctx.LoadModuleByID("llm.stats.log", json.RawMessage(`{}`))
	if err != nil {
		b.Fatal(err)
	}
	l := mod.(*Log)
	l.logger = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel))
	c := llm.Call{
		ID: "0b7b2c1e-5a4f-4b7e-9f3a-1c2d3e4f5a6b", Model: "gpt-4o-mini", ServedModel: "gpt-4o-mini",
		Identity: &llm.Identity{User: "alice", KeyID: "k1"}, Provider: "openai", Upstream: "api.openai.com",
		Status: 200, Usage: llm.Usage{PromptTokens: 10, CompletionTokens: 20, TotalTokens: 30}, Cost: 0.001,
		Attempts: []llm.Attempt{{Upstream: "a.example", Outcome: "timeout"}, {Upstream: "api.openai.com", Outcome: "ok"}},
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = l.Record(context.Background(), c)
	}
}
