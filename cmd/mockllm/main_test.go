package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/llmoneapi/llmoneapi/internal/fakellm"
)

// The request log holds every request as the fake got it, and the fake
// still gets the whole body.
func TestRequestLog(t *testing.T) {
	var out bytes.Buffer
	fake := &fakellm.Server{Behavior: fakellm.Behavior{Chunks: 2}}
	ts := httptest.NewServer(&requestLog{next: fake, out: &out})
	defer ts.Close()

	var got []string
	for _, body := range []string{`{"model":"m","stream":true,"input":"hi there"}`, `not json`} {
		res, err := http.Post(ts.URL+"/v1/responses", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		got = append(got, string(b))
	}
	// The stream went through the log's writer whole.
	if !strings.Contains(got[0], "event: response.completed") {
		t.Errorf("the stream through the log: %s", got[0])
	}
	if reqs := fake.Requests(); len(reqs) != 2 || string(reqs[0].Body) != `{"model":"m","stream":true,"input":"hi there"}` {
		t.Fatalf("the fake got %+v", reqs)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %s", len(lines), out.String())
	}
	var first, second struct {
		Method, Path, Model string
		Stream              bool
		Status              int
		Body                json.RawMessage
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first.Method != "POST" || first.Path != "/v1/responses" || first.Model != "m" || !first.Stream || first.Status != 200 ||
		string(first.Body) != `{"model":"m","stream":true,"input":"hi there"}` {
		t.Errorf("first line %s", lines[0])
	}
	// A body that is not JSON is kept as a string, with the error it got.
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil || string(second.Body) != `"not json"` || second.Status != 400 {
		t.Errorf("second line %s (%v)", lines[1], err)
	}
}
