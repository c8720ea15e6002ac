package guest_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/llmoneapi/llmoneapi/guest"
)

// counter is a module that embeds guest.Redis and gets its Provision and
// Cleanup.
type counter struct {
	guest.Redis
}

var _ interface {
	caddy.Provisioner
	caddy.CleanerUpper
} = (*counter)(nil)

// Two modules naming one server share a client, which works until the last
// of them lets go; a call after that fails, never panics.
func TestRedis(t *testing.T) {
	t.Setenv("GUEST_TEST_REDIS", "redis://127.0.0.1:6379/0")
	ctx := context.Background()
	a := &counter{guest.Redis{URL: "{env.GUEST_TEST_REDIS}"}}
	b := &counter{guest.Redis{URL: "redis://127.0.0.1:6379/0"}}
	for _, m := range []*counter{a, b} {
		if err := m.Provision(caddy.Context{Context: ctx}); err != nil {
			t.Fatal(err)
		}
	}
	if a.Client != b.Client {
		t.Fatal("two clients for one server")
	}
	key := "guest-test:" + t.Name()
	t.Cleanup(func() { redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"}).Del(ctx, key) })
	if err := a.Client.Incr(ctx, key).Err(); err != nil {
		t.Fatalf("Redis on 127.0.0.1:6379: %v", err)
	}
	_ = a.Cleanup()
	_ = a.Cleanup() // a second Cleanup lets go of nothing more
	if n, err := b.Client.Incr(ctx, key).Result(); err != nil || n != 2 {
		t.Fatalf("the client closed while b holds it: %d, %v", n, err)
	}
	_ = b.Cleanup()
	if err := b.Client.Incr(ctx, key).Err(); !errors.Is(err, redis.ErrClosed) {
		t.Fatalf("after the last Cleanup: %v, want redis.ErrClosed", err)
	}
}

func TestRedisBadURL(t *testing.T) {
	for url, want := range map[string]string{
		"":                "no Redis url given",
		"{env.UNSET_X_Y}": "no Redis url given",
		"http://h:6379":   "invalid URL scheme",
	} {
		r := &guest.Redis{URL: url}
		err := r.Provision(caddy.Context{Context: context.Background()})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", url, err, want)
		}
		if err := r.Cleanup(); err != nil || r.Client != nil {
			t.Errorf("%q: Cleanup after a failed Provision: %v", url, err)
		}
	}
}
