package route

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/llmoneapi/llmoneapi/llm"
)

// brokenStream yields its events, then breaks; it ends a broken stream the
// way its (made-up) client API does.
type brokenStream struct{ events []string }

func (s *brokenStream) Next() (StreamEvent, error) {
	if len(s.events) == 0 {
		return StreamEvent{}, errors.New("connection reset")
	}
	ev := s.events[0]
	s.events = s.events[1:]
	return StreamEvent{Data: []byte(ev), Content: true}, nil
}

func (s *brokenStream) ErrorEvent(e *llm.Error) []byte {
	return []byte("event: error\ndata: " + e.Code + "\n\n")
}

// TestRelayStreamErrorEvent: a stream cut after its first content ends with
// the error event of the stream's client API, and the call and its last
// attempt say it was truncated, and why.
func TestRelayStreamErrorEvent(t *testing.T) {
	h := &Handler{logger: zap.NewNop()}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/v1/messages", nil)
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, &caddyhttp.Server{})
	call := llm.CallFrom(r)
	call.Attempts = []llm.Attempt{{Outcome: string(OutcomeOK)}}
	ctx, cancel := context.WithCancelCause(context.Background())
	t.Cleanup(func() { cancel(nil) })
	tr := &try{
		model: &Model{Name: "m"}, up: &Upstream{id: "test", state: new(health)}, status: 200,
		ctx: ctx, cancel: cancel, held: [][]byte{[]byte("data: first\n\n")},
		stream: &brokenStream{events: []string{"data: second\n\n"}},
		x:      &Exchange{Endpoint: llm.EndpointChat, Request: &llm.Request{}, Model: "m"},
	}
	tr.up.state.inFlight.Add(1)
	h.relay(w, r, call, tr)
	want := "data: first\n\ndata: second\n\nevent: error\ndata: upstream_stream_broken\n\n"
	if w.Body.String() != want || w.Code != 200 {
		t.Fatalf("%d %q", w.Code, w.Body)
	}
	if !call.Truncated || call.ErrorCode != "upstream_stream_broken" || call.Attempts[0].Outcome != "truncated" ||
		tr.up.InFlight() != 0 || tr.up.state.failures != 1 {
		t.Fatalf("call %+v, in flight %d", call, tr.up.InFlight())
	}
}

// tailUsage is a Relayer that reads a usage made of the tail's length.
type tailUsage struct{}

func (tailUsage) Relays(*Exchange) bool { return true }
func (tailUsage) TailUsage(_ *Exchange, tail []byte) *llm.Usage {
	return &llm.Usage{CompletionTokens: int64(len(tail))}
}

// brokenBody yields n bytes, then fails.
type brokenBody struct{ n int }

func (b *brokenBody) Read(p []byte) (int, error) {
	if b.n == 0 {
		return 0, errors.New("connection reset")
	}
	k := min(len(p), b.n)
	b.n -= k
	return k, nil
}
func (*brokenBody) Close() error { return nil }

// TestRelayLarge: an answer too large to hold is sent whole as it comes,
// its usage read from the last tailMax bytes; one that breaks off is cut,
// and the call and its attempt say so.
func TestRelayLarge(t *testing.T) {
	for _, broken := range []bool{false, true} {
		h := &Handler{logger: zap.NewNop()}
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, &caddyhttp.Server{})
		call := llm.CallFrom(r)
		call.Attempts = []llm.Attempt{{Outcome: string(OutcomeOK)}}
		ctx, cancel := context.WithCancelCause(context.Background())
		t.Cleanup(func() { cancel(nil) })
		rest := io.NopCloser(strings.NewReader(strings.Repeat("y", 3*tailMax)))
		if broken {
			rest = &brokenBody{n: 1000}
		}
		tr := &try{
			model: &Model{Name: "m"}, up: &Upstream{id: "test", state: new(health)}, status: 200,
			ctx: ctx, cancel: cancel, body: bytes.Repeat([]byte("x"), holdMax+1),
			resp: &http.Response{Body: rest, ContentLength: -1}, large: tailUsage{},
			x: &Exchange{Endpoint: llm.EndpointChat, Request: &llm.Request{}, Model: "m"},
		}
		tr.up.state.inFlight.Add(1)
		h.relay(w, r, call, tr)
		want := holdMax + 1 + 3*tailMax
		if broken {
			want = holdMax + 1 + 1000
		}
		if w.Body.Len() != want || w.Code != 200 || call.Usage.CompletionTokens != tailMax || tr.up.InFlight() != 0 {
			t.Fatalf("broken %v: %d bytes, status %d, usage %+v", broken, w.Body.Len(), w.Code, call.Usage)
		}
		if broken != call.Truncated || broken != (call.Attempts[0].Outcome == string(OutcomeTruncated)) {
			t.Fatalf("broken %v: call %+v", broken, call)
		}
	}
}

// TestIdleReader: the stream is cancelled when one read waits stream_idle
// long, not when the time passes between reads (a slow client) or after the
// stream ended.
func TestIdleReader(t *testing.T) {
	const d = 50 * time.Millisecond
	pr, pw := io.Pipe()
	var cause atomic.Value
	idle := &idleReader{r: pr, d: d, cancel: func(err error) { cause.Store(err) }}
	idle.arm()
	buf := make([]byte, 8)
	for range 3 {
		go func() { time.Sleep(d / 5); _, _ = pw.Write([]byte("x")) }()
		if _, err := idle.Read(buf); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * d) // the relay writing to a slow client
	}
	if c := cause.Load(); c != nil {
		t.Fatalf("cancelled between reads: %v", c)
	}
	go func() { time.Sleep(3 * d); pw.Close() }()
	_, _ = idle.Read(buf)
	if c := cause.Load(); c != errStreamIdle {
		t.Fatalf("a read that waited %v: cause %v", 3*d, c)
	}

	stopped := &idleReader{r: pr, d: d, cancel: func(err error) { t.Errorf("cancelled after stop: %v", err) }}
	stopped.arm()
	stopped.since.Store(1) // a read that never returned
	stopped.stop()
	time.Sleep(3 * d)
}
