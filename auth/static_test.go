package auth

import (
	"context"
	"fmt"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

func TestStaticAuthenticate(t *testing.T) {
	s := &Static{Keys: []Key{
		{Key: "sk-a", User: "a"},
		{Key: "sha256:" + hashKey("sk-b"), ID: "b", User: "b"},
	}}
	if err := s.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"sk-a": "a", "sk-b": "b", "sk-c": "", "": "", "sha256:" + hashKey("sk-b"): ""} {
		id, err := s.Authenticate(context.Background(), key)
		if err != nil {
			t.Fatalf("key %q: %v", key, err)
		}
		got := ""
		if id != nil {
			got = id.User
		}
		if got != want {
			t.Errorf("key %q: user %q, want %q", key, got, want)
		}
	}
}

func BenchmarkStaticAuthenticate(b *testing.B) {
	s := new(Static)
	for i := range 100 {
		s.Keys = append(s.Keys, Key{Key: fmt.Sprintf("sk-bench-%03d-0123456789abcdef", i), User: fmt.Sprint("user", i)})
	}
	if err := s.Provision(caddy.Context{}); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	key := s.Keys[57].Key
	b.ReportAllocs()
	for b.Loop() {
		if id, _ := s.Authenticate(ctx, key); id == nil {
			b.Fatal("key not found")
		}
	}
}
