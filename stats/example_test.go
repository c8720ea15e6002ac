package stats_test

import (
	"context"
	"fmt"
	"time"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/stats"
)

// tokensPerUser is a Recorder that adds up tokens per user.
type tokensPerUser map[string]int64

func (t tokensPerUser) Record(_ context.Context, c llm.Call) error {
	user := "(no key)"
	if c.Identity != nil {
		user = c.Identity.User
	}
	t[user] += c.Usage.TotalTokens
	return nil
}

// A Recorder gets a copy of every finished call, on a worker of its own:
// calls to one recorder never overlap, so it needs no locking.
func ExampleRecorder() {
	t := tokensPerUser{}
	var r stats.Recorder = t
	alice := &llm.Identity{User: "alice", KeyID: "key-1"}
	for _, c := range []llm.Call{
		{Identity: alice, Model: "gpt-4o", Status: 200, Usage: llm.Usage{TotalTokens: 30}},
		{Identity: alice, Model: "gpt-4o", Status: 200, Usage: llm.Usage{TotalTokens: 12}},
		{Model: "gpt-4o", Status: 401},
	} {
		if err := r.Record(context.Background(), c); err != nil {
			fmt.Println(err)
		}
	}
	fmt.Println(t["alice"], t["(no key)"])
	// Output: 42 0
}

// batchPrinter is a BatchRecorder that writes up to 100 calls, or what
// came within a second of the first, in one go.
type batchPrinter struct{}

func (batchPrinter) Batch() (int, time.Duration) { return 100, time.Second }

func (b batchPrinter) Record(ctx context.Context, c llm.Call) error {
	return b.RecordBatch(ctx, []llm.Call{c})
}

func (batchPrinter) RecordBatch(_ context.Context, calls []llm.Call) error {
	// One INSERT with len(calls) rows would go here; the slice is reused
	// after the call returns, so copy what must outlive it.
	fmt.Printf("%d calls, the first for %s\n", len(calls), calls[0].Model)
	return nil
}

func ExampleBatchRecorder() {
	var b stats.BatchRecorder = batchPrinter{}
	size, wait := b.Batch()
	fmt.Println(size, wait)
	_ = b.RecordBatch(context.Background(), []llm.Call{{Model: "gpt-4o"}, {Model: "gpt-4o-mini"}})
	// Output:
	// 100 1s
	// 2 calls, the first for gpt-4o
}
