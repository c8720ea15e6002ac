package route

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

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
