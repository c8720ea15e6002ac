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
	"github.com/redis/go-redis/v9"

	"github.com/llmoneapi/llmoneapi/llm"
)

const testRedis = "redis://127.0.0.1:6379/0"

// newRedis provisions a Redis recorder under a prefix of its own and
// deletes the prefix's keys after the test.
func newRedis(t testing.TB, extra string) (*Redis, *redis.Client, string) {
	t.Helper()
	prefix := fmt.Sprintf("llm:stats:test:%d", time.Now().UnixNano())
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	mod, err := ctx.LoadModuleByID("llm.stats.redis", json.RawMessage(`{"url":"`+testRedis+`","prefix":"`+prefix+`"`+extra+`}`))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := mod.(*Redis)
	client := r.client
	t.Cleanup(func() {
		keys, _ := client.Keys(context.Background(), prefix+":*").Result()
		if len(keys) > 0 {
			client.Del(context.Background(), keys...)
		}
		cancel()
	})
	return r, client, prefix
}

func TestRedisCounters(t *testing.T) {
	r, client, prefix := newRedis(t, `,"ttl":3600000000000`)
	ctx := context.Background()
	day := time.Date(2026, 3, 1, 23, 59, 0, 0, time.UTC)
	call := func(user, model string, status int, start time.Time) llm.Call {
		c := memCall(user, model, start, time.Second, status)
		c.Cost = 0.25
		return c
	}
	if err := r.RecordBatch(ctx, []llm.Call{
		call("alice", "gpt-4o", 200, day),
		call("alice", "gpt-4o", 429, day),
		call("bob", "gpt-4o", 200, day),
		call("alice", "gpt-4o", 200, day.Add(2*time.Minute)), // the next day
	}); err != nil {
		t.Fatal(err)
	}
	// A second batch adds to the same hash.
	if err := r.Record(ctx, call("alice", "gpt-4o", 200, day)); err != nil {
		t.Fatal(err)
	}
	noUser := call("", "gpt-4o", 200, day)
	noUser.Identity = nil
	if err := r.Record(ctx, noUser); err != nil {
		t.Fatal(err)
	}

	key := prefix + ":2026-03-01:gpt-4o:alice"
	got, err := client.HGetAll(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"model": "gpt-4o", "user": "alice", "requests": "3", "errors": "1",
		"prompt_tokens": "30", "completion_tokens": "15", "cached_tokens": "6", "total_tokens": "45", "cost": "0.75"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s = %v, want %v", key, got, want)
	}
	if ttl := client.TTL(ctx, key).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("TTL = %v, want the 1h retention", ttl)
	}
	members, _ := client.SMembers(ctx, prefix+":2026-03-01:keys").Result()
	if len(members) != 3 || !strings.Contains(strings.Join(members, " "), prefix+":2026-03-01:gpt-4o:-") {
		t.Errorf("the day's keys = %v, want alice, bob and -", members)
	}
	if n := client.HGet(ctx, prefix+":2026-03-02:gpt-4o:alice", "requests").Val(); n != "1" {
		t.Errorf("next day's requests = %q, want 1", n)
	}
}

func TestRedisDownFails(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	// Nothing listens on port 1; the recorder still loads, and fails per batch.
	mod, err := ctx.LoadModuleByID("llm.stats.redis", json.RawMessage(`{"url":"redis://127.0.0.1:1/0?max_retries=-1"}`))
	if err != nil {
		t.Fatal(err)
	}
	err = mod.(*Redis).Record(context.Background(), memCall("a", "m", time.Now(), time.Second, 200))
	if err == nil || !strings.Contains(err.Error(), "adding 1 records to redis://127.0.0.1:1/0") {
		t.Errorf("err = %v, want a failed write naming the server", err)
	}
}

func TestRedisCaddyfile(t *testing.T) {
	r := new(Redis)
	input := "redis redis://127.0.0.1:6379/0 {\n prefix usage\n ttl 90d\n batch_size 50\n flush_interval 1s\n}"
	if err := r.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
		t.Fatal(err)
	}
	want := `{"url":"redis://127.0.0.1:6379/0","prefix":"usage","ttl":7776000000000000,"batch_size":50,"flush_interval":1000000000}`
	if got := string(caddyconfig.JSON(r, nil)); got != want {
		t.Errorf("JSON = %s\nwant %s", got, want)
	}
	for input, want := range map[string]string{
		"redis":                              "want one server URL",
		"redis a b":                          "want one server URL",
		"redis u {\n ttl never\n}":           "bad ttl 'never'",
		"redis u {\n batch_size -1\n}":       "bad batch_size '-1'",
		"redis u {\n prefix\n}":              "wrong argument count",
		"redis u {\n flush_interval 1s 2\n}": "wrong argument count",
		"redis u {\n nope\n}":                "unrecognized redis recorder subdirective 'nope'",
	} {
		err := new(Redis).UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", input, err, want)
		}
	}
}

// BenchmarkRedisRecord is the Redis recorder's cost per record, in batches
// of 200 calls over 8 users and 4 models.
func BenchmarkRedisRecord(b *testing.B) {
	r, _, _ := newRedis(b, "")
	batch := make([]llm.Call, 200)
	for i := range batch {
		batch[i] = memCall(fmt.Sprint("user", i%8), fmt.Sprint("model", i%4), time.Now(), time.Second, 200)
	}
	b.ReportAllocs()
	report := cpuPerOp(b)
	n := 0
	for b.Loop() {
		n++
		if n%len(batch) == 0 {
			if err := r.RecordBatch(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
		}
	}
	report()
}
