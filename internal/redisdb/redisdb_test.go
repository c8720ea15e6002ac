package redisdb

import (
	"context"
	"testing"
)

func TestAcquireShares(t *testing.T) {
	const url = "redis://127.0.0.1:6379/0"
	a, err := Acquire(url)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Acquire(url)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatal("two clients for one URL")
	}
	if err := a.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("Redis on 127.0.0.1:6379: %v", err)
	}
	Release(url)
	if err := b.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("client closed while still held: %v", err)
	}
	Release(url)
	if _, err := Acquire("http://nope"); err == nil {
		t.Fatal("bad URL accepted")
	}
	if got := Redact("redis://u:pw@h:6379/0"); got != "redis://xxxxx@h:6379/0" {
		t.Fatal(got)
	}
}
