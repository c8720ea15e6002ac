package fakellm_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
)

// flushCounter counts the flushes a handler asks for.
type flushCounter struct {
	*httptest.ResponseRecorder
	flushes int
}

func (f *flushCounter) Flush() {
	f.flushes++
	f.ResponseRecorder.Flush()
}

// TestBuffered checks that a Buffered stream is the same stream, sent
// without a flush per event, and that a pause still sends what came before
// it.
func TestBuffered(t *testing.T) {
	for _, api := range []struct{ name, path, body, last string }{
		{"chat", "/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "data: [DONE]\n\n"},
		{"messages", "/v1/messages", `{"model":"m","stream":true,"max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`, "event: message_stop\n"},
		{"responses", "/v1/responses", `{"model":"m","stream":true,"input":"hi"}`, "event: response.completed\n"},
	} {
		for _, c := range []struct {
			name       string
			b          fakellm.Behavior
			minFlushes int
			maxFlushes int
		}{
			{"flushed", fakellm.Behavior{Chunks: 20}, 21, 1000},
			{"buffered", fakellm.Behavior{Chunks: 20, Buffered: true}, 0, 0},
			{"buffered-paced", fakellm.Behavior{Chunks: 20, Buffered: true, ChunkDelay: time.Millisecond}, 20, 21},
		} {
			t.Run(api.name+"/"+c.name, func(t *testing.T) {
				fake := &fakellm.Server{KeepRequests: -1, Behavior: c.b}
				w := &flushCounter{ResponseRecorder: httptest.NewRecorder()}
				r := httptest.NewRequest(http.MethodPost, api.path, strings.NewReader(api.body))
				r.Header.Set("anthropic-version", "2023-06-01")
				fake.ServeHTTP(w, r)
				body := w.Body.String()
				if w.Code != http.StatusOK || !strings.Contains(body, api.last) || strings.Count(body, "chunk") < 20 {
					t.Fatalf("status %d, body %.500q", w.Code, body)
				}
				if w.flushes < c.minFlushes || w.flushes > c.maxFlushes {
					t.Errorf("%d flushes, want %d to %d", w.flushes, c.minFlushes, c.maxFlushes)
				}
			})
		}
	}
}
