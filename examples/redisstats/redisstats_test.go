package redisstats_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/openai/openai-go/v3"
	"github.com/redis/go-redis/v9"

	_ "github.com/llmoneapi/llmoneapi/examples/redisstats"
	"github.com/llmoneapi/llmoneapi/internal/llmtest"
	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/stats"
)

func TestMain(m *testing.M) { llmtest.Main(m) }

const site = `:{PORT} {
	llm_stats {
		redisstats {REDIS} {PREFIX}
	}
	llm_auth {
		static {
			key sk-alice-0123456789 {
				user alice
			}
			key sk-bob-0123456789 {
				user bob
			}
		}
	}
	llm_route {
		model gpt-4o-mini {
			upstream openai {UPSTREAM} ` + llmtest.UpstreamKey + `
		}
		model gpt-4o {
			upstream openai {UPSTREAM} ` + llmtest.UpstreamKey + `
		}
	}
}`

// prefix returns a key prefix no other test uses, cleared after the test.
func prefix(t *testing.T) string {
	p := fmt.Sprintf("test:redisstats:%d:", time.Now().UnixNano())
	t.Cleanup(func() { llmtest.ClearRedis(t, llmtest.RedisURL, p) })
	return p
}

func start(t *testing.T, redisURL, prefix string) *llmtest.Gateway {
	return llmtest.Start(t, nil, strings.NewReplacer("{REDIS}", redisURL, "{PREFIX}", prefix).Replace(site))
}

func chat(t *testing.T, g *llmtest.Gateway, key, model string) int64 {
	t.Helper()
	client := llmtest.OpenAI(g.URL, key)
	resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello")},
	})
	if err != nil {
		t.Fatalf("%s with %s: %v", model, key, err)
	}
	return resp.Usage.TotalTokens
}

func TestCountersPerModelAndUser(t *testing.T) {
	p := prefix(t)
	g := start(t, llmtest.RedisURL, p)
	want := map[string]map[string]int64{}
	for _, c := range []struct{ key, user, model string }{
		{"sk-alice-0123456789", "alice", "gpt-4o-mini"},
		{"sk-alice-0123456789", "alice", "gpt-4o-mini"},
		{"sk-alice-0123456789", "alice", "gpt-4o"},
		{"sk-bob-0123456789", "bob", "gpt-4o-mini"},
	} {
		tokens := chat(t, g, c.key, c.model)
		k := p + c.model + ":" + c.user
		if want[k] == nil {
			want[k] = map[string]int64{}
		}
		want[k]["total_requests"]++
		want[k]["total_tokens"] += tokens
	}

	opts, _ := redis.ParseURL(llmtest.RedisURL)
	client := redis.NewClient(opts)
	defer client.Close()
	// Recorders run after the response: wait for the counters to settle.
	deadline := time.Now().Add(2 * time.Second)
	for {
		got := map[string]map[string]int64{}
		keys, err := client.Keys(context.Background(), p+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			fields, err := client.HGetAll(context.Background(), k).Result()
			if err != nil {
				t.Fatal(err)
			}
			got[k] = map[string]int64{}
			for f, v := range fields {
				got[k][f], _ = strconv.ParseInt(v, 10, 64)
			}
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis holds %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With Redis unreachable, requests are served as usual: the recorder's
// errors stay on its worker.
func TestRedisDownDoesNotReachClients(t *testing.T) {
	down := fmt.Sprintf("redis://127.0.0.1:%d/0", llmtest.FreePort(t))
	g := start(t, down, prefix(t))
	for range 3 {
		chat(t, g, "sk-alice-0123456789", "gpt-4o-mini")
	}
}

func TestRecordAfterCleanupFails(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	mod, err := ctx.LoadModuleByID("llm.stats.redisstats", json.RawMessage(`{"url":"`+llmtest.RedisURL+`","prefix":"`+prefix(t)+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	cancel() // runs Cleanup, as a config reload does
	err = mod.(stats.Recorder).Record(context.Background(), llm.Call{Model: "m"})
	if !errors.Is(err, redis.ErrClosed) {
		t.Errorf("Record after Cleanup: got %v, want redis.ErrClosed", err)
	}
}

func TestWrongConfigFailsAtLoad(t *testing.T) {
	for config, want := range map[string]string{
		`{"url":"http://example.com"}`: "redis URL 'http://example.com'",
		`{}`:                           "no Redis url given",
	} {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		_, err := ctx.LoadModuleByID("llm.stats.redisstats", json.RawMessage(config))
		cancel()
		if err == nil || !strings.Contains(err.Error(), "llm.stats.redisstats") || !strings.Contains(err.Error(), want) {
			t.Errorf("config %s: got %v, want an error naming the module and %q", config, err, want)
		}
	}
}

// The host reads the Caddyfile into the module's fields: arguments, or a
// block, and errors with the syntax.
func TestCaddyfile(t *testing.T) {
	adapt := func(in string) (string, error) {
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(":8080 {\n\tllm_stats {\n"+in+"\n\t}\n}"), nil)
		return string(out), err
	}
	for in, want := range map[string]string{
		"redisstats redis://r:6379/1 gw:":            `{"prefix":"gw:","recorder":"redisstats","url":"redis://r:6379/1"}`,
		"redisstats redis://r:6379/1 {\nprefix p\n}": `{"prefix":"p","recorder":"redisstats","url":"redis://r:6379/1"}`,
		"redisstats {\nurl {env.REDIS_URL}\n}":       `{"recorder":"redisstats","url":"{env.REDIS_URL}"}`,
	} {
		out, err := adapt(in)
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("Caddyfile %q: got %s, %v; want %s", in, out, err, want)
		}
	}
	for in, want := range map[string]string{
		"redisstats a b c":                   "redisstats takes the arguments [<url>] [<prefix>], not 'c'",
		"redisstats redis://x {\nprefx p\n}": "unknown redisstats subdirective 'prefx'; it takes prefix, url",
	} {
		if _, err := adapt(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Caddyfile %q: got %v, want %q", in, err, want)
		}
	}
}
