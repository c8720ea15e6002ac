package stats

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmoneapi/llmoneapi/llm"
)

func init() {
	caddy.RegisterModule(new(batchRecorder))
}

// batchRecorder is the llm.stats.testbatch module: a BatchRecorder that
// passes every batch to the test, and a Spooler when Spooling is set.
type batchRecorder struct {
	Size     int            `json:"size,omitempty"`
	Interval caddy.Duration `json:"interval,omitempty"`
	Spooling bool           `json:"spooling,omitempty"`
	Block    bool           `json:"block,omitempty"`

	batches chan []llm.Call
	gate    chan struct{}
	mu      sync.Mutex
	spooled []llm.Call
}

func (*batchRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.stats.testbatch",
		New: func() caddy.Module { return new(batchRecorder) },
	}
}

func (b *batchRecorder) Provision(caddy.Context) error {
	b.batches = make(chan []llm.Call, 1000)
	b.gate = make(chan struct{})
	return nil
}

func (b *batchRecorder) Batch() (int, time.Duration) { return b.Size, time.Duration(b.Interval) }

func (b *batchRecorder) Record(ctx context.Context, c llm.Call) error {
	return b.RecordBatch(ctx, []llm.Call{c})
}

func (b *batchRecorder) RecordBatch(ctx context.Context, calls []llm.Call) error {
	if b.Block {
		select {
		case <-b.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b.batches <- append([]llm.Call(nil), calls...)
	return nil
}

func (b *batchRecorder) Spool(c llm.Call) error {
	if !b.Spooling {
		return errors.New("no spool")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.spooled = append(b.spooled, c)
	return nil
}

func batchOf(h *Handler, i int) *batchRecorder {
	return h.targets[i].rec.(*batchRecorder)
}

func receiveBatch(t *testing.T, b *batchRecorder) []llm.Call {
	t.Helper()
	select {
	case calls := <-b.batches:
		return calls
	case <-time.After(5 * time.Second):
		t.Fatal("no batch reached the recorder")
		return nil
	}
}

// TestSnapshotCopiesEveryField sets every exported field of a Call and
// checks the recorders' copy has them all, except the request body: it
// fails when llm.Call gains a field snapshot forgets.
func TestSnapshotCopiesEveryField(t *testing.T) {
	var c llm.Call
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if !f.CanSet() {
			continue
		}
		switch f.Kind() {
		case reflect.String:
			f.SetString("x" + v.Type().Field(i).Name)
		case reflect.Int, reflect.Int64:
			f.SetInt(int64(i + 1))
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Float64:
			f.SetFloat(float64(i) + 0.5)
		case reflect.Pointer:
			f.Set(reflect.New(f.Type().Elem()))
		case reflect.Slice:
			f.Set(reflect.MakeSlice(f.Type(), 2, 2))
		case reflect.Struct:
			switch f.Interface().(type) {
			case time.Time:
				f.Set(reflect.ValueOf(time.Unix(1700000000, 0)))
			case llm.Usage:
				f.Set(reflect.ValueOf(llm.Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3, CachedTokens: 4, CacheCreationTokens: 5, ReasoningTokens: 6}))
			default:
				t.Fatalf("field %s of type %s: teach this test to fill it", v.Type().Field(i).Name, f.Type())
			}
		default:
			t.Fatalf("field %s of kind %s: teach this test to fill it", v.Type().Field(i).Name, f.Kind())
		}
	}
	c.Identity.User = "alice"
	c.Attempts[0].Upstream = "a.example"

	s := snapshot(&c)
	if s.Request != nil {
		t.Error("the copy holds the request body")
	}
	want := c
	want.Request = nil
	if !reflect.DeepEqual(s, want) {
		t.Errorf("snapshot =\n%+v\nwant\n%+v", s, want)
	}
	if s.Identity == c.Identity || s.Price == c.Price || &s.Attempts[0] == &c.Attempts[0] {
		t.Error("the copy shares a pointer with the request's record")
	}
}

func TestRecordIsACopy(t *testing.T) {
	h, _ := newHandler(t, `{"recorders":[{"recorder":"testrec"}]}`)
	var live *llm.Call
	if _, err := serve(h, func(w http.ResponseWriter, r *http.Request) error {
		live = llm.CallFrom(r)
		live.Request = &llm.Request{Body: []byte(`{"model":"m"}`)}
		live.Identity = &llm.Identity{User: "alice"}
		live.Attempts = []llm.Attempt{{Upstream: "a.example"}}
		live.Model = "m"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A nested handler changing the record after the response must not
	// reach the recorders.
	live.Model = "changed"
	live.Identity.User = "mallory"
	live.Attempts[0].Upstream = "changed"

	c := receive(t, recorderOf(t, h, 0))
	if c.Request != nil {
		t.Error("the recorder got the request body")
	}
	if c.Model != "m" || c.Identity.User != "alice" || c.Attempts[0].Upstream != "a.example" {
		t.Errorf("the record changed after the response: %+v", c)
	}
}

func TestBatches(t *testing.T) {
	h, _ := newHandler(t, `{"recorders":[{"recorder":"testbatch","size":3,"interval":50000000}]}`)
	b := batchOf(h, 0)
	ok := count("testbatch", "ok")

	for range 4 {
		if _, err := serve(h, next(200, "")); err != nil {
			t.Fatal(err)
		}
	}
	// Three fill a batch at once; the fourth waits for the interval.
	start := time.Now()
	if got := len(receiveBatch(t, b)); got != 3 {
		t.Errorf("first batch has %d records, want 3", got)
	}
	if got := len(receiveBatch(t, b)); got != 1 {
		t.Errorf("second batch has %d records, want 1", got)
	}
	if waited := time.Since(start); waited < 40*time.Millisecond {
		t.Errorf("the lone record was written after %v, want it to wait for the 50ms interval", waited)
	}
	waitCount(t, "testbatch", "ok", ok+4)
}

// TestReloadKeepsQueue: a new config with the same recorder config takes
// over the worker and what is queued in it; cleaning up the old config
// loses nothing.
func TestReloadKeepsQueue(t *testing.T) {
	const config = `{"recorders":[{"recorder":"testbatch","size":1000,"interval":1000000,"block":true}]}`
	old, _ := newHandler(t, config)
	oldRec := batchOf(old, 0)
	for range 5 {
		if _, err := serve(old, next(200, "")); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	mod, err := ctx.LoadModuleByID("http.handlers.llm_stats", json.RawMessage(config))
	if err != nil {
		t.Fatal(err)
	}
	h := mod.(*Handler)
	if h.workers[0] != old.workers[0] {
		t.Fatal("the new config started a new worker for the same recorder config")
	}
	newRec := batchOf(h, 0)
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	// A request of the old config that ends after its Cleanup still counts.
	if _, err := serve(old, next(200, "")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := serve(h, next(200, "")); err != nil {
			t.Fatal(err)
		}
	}

	// The worker was blocked in the old recorder with the first batch.
	close(oldRec.gate)
	close(newRec.gate)
	total := 0
	for total < 8 {
		select {
		case calls := <-oldRec.batches:
			total += len(calls)
		case calls := <-newRec.batches:
			total += len(calls)
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d records across the reload, want 8", total)
		}
	}
}

func TestFullQueueSpools(t *testing.T) {
	h, _ := newHandler(t, `{"recorders":[{"recorder":"testbatch","size":1,"block":true,"spooling":true}],"queue_size":1}`)
	b := batchOf(h, 0)
	spooled, dropped := count("testbatch", "spooled"), count("testbatch", "dropped")
	for range 5 {
		if _, err := serve(h, next(200, "")); err != nil {
			t.Fatal(err)
		}
	}
	// One is in the blocked recorder or the queue, the queue holds one;
	// the rest overflowed into the spool.
	if got := count("testbatch", "spooled") - spooled; got < 3 {
		t.Errorf("spooled %v records, want at least 3", got)
	}
	if got := count("testbatch", "dropped") - dropped; got != 0 {
		t.Errorf("dropped %v records with a spool, want 0", got)
	}
	b.mu.Lock()
	n := len(b.spooled)
	b.mu.Unlock()
	if float64(n) != count("testbatch", "spooled")-spooled {
		t.Errorf("the spool holds %d records, the counter says %v", n, count("testbatch", "spooled")-spooled)
	}
	close(b.gate)
}

// BenchmarkHandOff is what llm_stats costs a request with two recorders:
// the copy of the record and two queue sends.
func BenchmarkHandOff(b *testing.B) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	mod, err := ctx.LoadModuleByID("http.handlers.llm_stats",
		json.RawMessage(`{"recorders":[{"recorder":"testbatch","size":512,"interval":1000000},{"recorder":"testbatch","size":512,"interval":1000000}],"queue_size":65536}`))
	if err != nil {
		b.Fatal(err)
	}
	h := mod.(*Handler)
	for i := range h.workers {
		go func(r *batchRecorder) {
			for range r.batches {
			}
		}(batchOf(h, i))
	}
	c := &llm.Call{
		ID: "0b7b2c1e-5a4f-4b7e-9f3a-1c2d3e4f5a6b", Start: time.Now(), Model: "gpt-4o-mini",
		Identity: &llm.Identity{User: "alice", KeyID: "k1"}, Provider: "openai", Upstream: "api.openai.com",
		Status: 200, Usage: llm.Usage{PromptTokens: 10, CompletionTokens: 20, TotalTokens: 30},
		Attempts: []llm.Attempt{{Model: "gpt-4o-mini", Upstream: "api.openai.com", Outcome: "ok"}},
	}
	b.ReportAllocs()
	for b.Loop() {
		rec := snapshot(c)
		for _, w := range h.workers {
			w.send(rec)
		}
	}
}

// TestFailedReloadGivesWorkerBack: a config that fails to load after its
// llm_stats was provisioned is cleaned up, and the worker goes back to
// the running config's recorder.
func TestFailedReloadGivesWorkerBack(t *testing.T) {
	running, _ := newHandler(t, `{"recorders":[{"recorder":"testrec"}]}`)
	failed, _ := newHandler(t, `{"recorders":[{"recorder":"testrec"}]}`)
	if recorderOf(t, running, 0) == recorderOf(t, failed, 0) || running.workers[0] != failed.workers[0] {
		t.Fatal("want one worker with two recorders")
	}
	if err := failed.Cleanup(); err != nil { // Caddy cleans up the config that failed
		t.Fatal(err)
	}
	if _, err := serve(running, next(200, "")); err != nil {
		t.Fatal(err)
	}
	if c := receive(t, recorderOf(t, running, 0)); c.Status != 200 {
		t.Errorf("record = %+v", c)
	}
	if got := recorderOf(t, running, 0); got != running.workers[0].current.Load().rec {
		t.Error("the worker still points at the failed config's recorder")
	}
}
