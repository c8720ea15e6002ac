package llm

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name, body   string
		model        string
		stream, incl bool
		code         string
	}{
		{name: "chat", body: `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`, model: "gpt-4o-mini"},
		{name: "stream", body: ` { "messages" : [] , "model" : "m", "stream" : true } `, model: "m", stream: true},
		{name: "usage", body: `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`, model: "m", stream: true, incl: true},
		{name: "usage off", body: `{"model":"m","stream":true,"stream_options":{"include_usage":false}}`, model: "m", stream: true},
		{name: "null options", body: `{"model":"m","stream":null,"stream_options":null}`, model: "m"},
		{name: "escaped model", body: `{"model":"a\/b\u0021"}`, model: "a/b!"},
		{name: "escaped key", body: `{"\u006dodel":"m"}`, model: "m"},
		{name: "nested model ignored", body: `{"x":{"model":"inner"},"y":["model"]}`},
		{name: "model in string", body: `{"messages":[{"content":"\"model\":\"x\"}"}]}`},
		{name: "not object", body: `["model"]`, code: "invalid_json"},
		{name: "empty", body: ``, code: "invalid_json"},
		{name: "truncated", body: `{"model":"m","messages":[`, code: "invalid_json"},
		{name: "trailing", body: `{"model":"m"} x`, code: "invalid_json"},
		{name: "model number", body: `{"model":4}`, code: "invalid_value"},
		{name: "stream string", body: `{"model":"m","stream":"yes"}`, code: "invalid_value"},
		{name: "options array", body: `{"model":"m","stream_options":[]}`, code: "invalid_value"},
		{name: "model twice", body: `{"model":"cheap","messages":[],"model":"dear"}`, code: "invalid_value"},
		{name: "model twice escaped", body: `{"model":"cheap","\u006dodel":"dear"}`, code: "invalid_value"},
		{name: "stream twice", body: `{"model":"m","stream":false,"stream":true}`, code: "invalid_value"},
		{name: "options twice", body: `{"model":"m","stream_options":null,"stream_options":{"include_usage":true}}`, code: "invalid_value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, e := ParseRequest([]byte(tt.body))
			if tt.code != "" {
				if e == nil || e.Code != tt.code || e.Status != http.StatusBadRequest {
					t.Fatalf("got %v, want a 400 %s", e, tt.code)
				}
				return
			}
			if e != nil {
				t.Fatal(e)
			}
			if req.Model != tt.model || req.Stream != tt.stream || req.IncludeUsage != tt.incl {
				t.Fatalf("got model=%q stream=%v include_usage=%v", req.Model, req.Stream, req.IncludeUsage)
			}
		})
	}
}

func TestPatch(t *testing.T) {
	body := []byte(`{"model":"a","stream":true}`)
	req, e := ParseRequest(body)
	if e != nil {
		t.Fatal(e)
	}
	out := Patch(body,
		Edit{Span: Span{1, 1}, Value: []byte(`"x":1,`)},
		Edit{Span: req.ModelSpan, Value: []byte(`"renamed"`)})
	if got, want := string(out), `{"x":1,"model":"renamed","stream":true}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if string(body) != `{"model":"a","stream":true}` {
		t.Fatal("Patch changed its input")
	}
}

func newRequest(body string) (*http.Request, *httptest.ResponseRecorder) {
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, &caddyhttp.Server{})
	return r, w
}

func TestReadRequestOnce(t *testing.T) {
	r, _ := newRequest(`{"model":"m","stream":true}`)
	first, e := ReadRequest(r, 100)
	if e != nil {
		t.Fatal(e)
	}
	second, e := ReadRequest(r, 100)
	if e != nil || second != first {
		t.Fatalf("second read: %v, same=%v", e, second == first)
	}
	// The body stays readable for handlers that are not ours.
	var rest bytes.Buffer
	_, _ = rest.ReadFrom(r.Body)
	if rest.String() != `{"model":"m","stream":true}` {
		t.Fatalf("body after read: %q", rest.String())
	}
	c := CallFrom(r)
	if c.Model != "m" || !c.Stream {
		t.Fatalf("call not filled: %+v", c)
	}
	// A later handler with a smaller limit still enforces it.
	if _, e := ReadRequest(r, 10); e == nil || e.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %v, want 413", e)
	}
}

func TestReadRequestLimit(t *testing.T) {
	r, _ := newRequest(`{"model":"` + strings.Repeat("x", 100) + `"}`)
	_, e := ReadRequest(r, 50)
	if e == nil || e.Status != http.StatusRequestEntityTooLarge || e.Code != "request_too_large" {
		t.Fatalf("got %v, want 413", e)
	}
	// Caddy's request_body directive wraps the body in a MaxBytesReader.
	r, w := newRequest(`{"model":"` + strings.Repeat("x", 100) + `"}`)
	r.Body = http.MaxBytesReader(w, r.Body, 20)
	_, e = ReadRequest(r, 1000)
	if e == nil || e.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %v, want 413", e)
	}
}

// TestReadRequestLength: a body read by its Content-Length is the body; one
// that ends before it is a client error, not a parse of half a body.
func TestReadRequestLength(t *testing.T) {
	body := `{"model":"m","messages":[]}`
	r, _ := newRequest(body)
	r.ContentLength = int64(len(body))
	if req, e := ReadRequest(r, 1000); e != nil || string(req.Body) != body || req.Model != "m" {
		t.Fatalf("got %v, %v", req, e)
	}
	r, _ = newRequest(body)
	r.ContentLength = int64(len(body)) + 10
	if _, e := ReadRequest(r, 1000); e == nil || e.Status != http.StatusBadRequest || e.Code != "body_unreadable" {
		t.Fatalf("a body shorter than its Content-Length: %v", e)
	}
}

func TestPlaceholders(t *testing.T) {
	r, _ := newRequest(`{}`)
	c := CallFrom(r)
	c.Identity = &Identity{User: "alice", KeyID: "key-1"}
	c.Model, c.Provider = "gpt", "openai"
	c.Usage = Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	got := repl.ReplaceAll("{llm.user} {llm.key_id} {llm.model} {llm.provider} {llm.usage.total_tokens} [{llm.ttft_ms}]", "-")
	if want := "alice key-1 gpt openai 7 [-]"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if c.ID == "" {
		t.Fatal("no request id")
	}
}

func TestErrorJSON(t *testing.T) {
	r, w := newRequest(`{}`)
	Errorf(http.StatusNotFound, TypeInvalidRequest, "model_not_found", "no model '%s'", "x").Write(w, r)
	if w.Code != 404 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, type %q", w.Code, w.Header().Get("Content-Type"))
	}
	var body struct {
		Error struct{ Message, Type, Code string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.Error.Message != "no model 'x'" || body.Error.Code != "model_not_found" || body.Error.Type != TypeInvalidRequest {
		t.Fatalf("body %s", w.Body)
	}
	if c := CallFrom(r); c.Status != 404 || c.Error != "no model 'x'" {
		t.Fatalf("call %+v", c)
	}
}

// FuzzParseRequest checks the scanner against encoding/json: on any body
// that encoding/json takes as an object, both must agree on the fields the
// gateway reads, and the scanner must never panic.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}`,
		`{"messages":[{"role":"user","content":"hi \"there\""}],"model":"x"}`,
		`{"model":"a\u00e9","stream":false,"n":[1,2,{"a":null}]}`,
		`{}`, `[]`, `{"model":`, `{"a":tru}`,
		`{"model":"a","model":"b"}`, `{"stream":true,"n":1,"stream":false}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, e := ParseRequest(body)
		var ref map[string]json.RawMessage
		if json.Unmarshal(body, &ref) != nil || ref == nil {
			return // invalid JSON: the scanner may accept scalars the upstream will reject
		}
		var model string
		modelOK := json.Unmarshal(ref["model"], &model) == nil || ref["model"] == nil
		var stream *bool
		streamOK := json.Unmarshal(ref["stream"], &stream) == nil || ref["stream"] == nil
		if e != nil {
			if e.Code == "invalid_value" && (!modelOK || !streamOK || ref["stream_options"] != nil) {
				return
			}
			if hasDuplicateKeys(body) {
				return
			}
			t.Fatalf("rejected a valid object %q: %v", body, e)
		}
		if dup := duplicateKeys(body); dup["model"] || dup["stream"] || dup["stream_options"] {
			t.Fatalf("accepted %q, which repeats a key the gateway acts on", body)
		}
		if hasDuplicateKeys(body) {
			return
		}
		if modelOK && req.Model != model {
			t.Fatalf("model %q, encoding/json says %q", req.Model, model)
		}
		if streamOK && req.Stream != (stream != nil && *stream) {
			t.Fatalf("stream %v, encoding/json says %v", req.Stream, stream)
		}
		if !req.ModelSpan.IsZero() && string(body[req.ModelSpan.Start:req.ModelSpan.End]) != strings.TrimSpace(string(ref["model"])) {
			t.Fatalf("model span %q, want %q", body[req.ModelSpan.Start:req.ModelSpan.End], ref["model"])
		}
	})
}

// hasDuplicateKeys reports whether an object repeats a top-level key, where
// encoding/json keeps the last and the scanner reports each.
func hasDuplicateKeys(body []byte) bool { return len(duplicateKeys(body)) > 0 }

// duplicateKeys returns the top-level keys an object repeats.
func duplicateKeys(body []byte) map[string]bool {
	seen, dup := map[string]bool{}, map[string]bool{}
	_ = ScanObject(body, func(key []byte, _ Span) error {
		if seen[string(key)] {
			dup[string(key)] = true
		}
		seen[string(key)] = true
		return nil
	})
	return dup
}

func TestEndpointOf(t *testing.T) {
	for path, want := range map[string]Endpoint{
		"/v1/chat/completions":          EndpointChat,
		"/openai/v1/completions":        EndpointCompletions,
		"/v1/embeddings/":               EndpointEmbeddings,
		"/v1/messages":                  EndpointMessages,
		"/anthropic/v1/messages":        EndpointMessages,
		"/v1/messages/count_tokens":     EndpointCountTokens,
		"/v1/responses":                 EndpointResponses,
		"/codex/v1/responses/":          EndpointResponses,
		"/v1/models":                    EndpointModels,
		"/v1/models/meta-llama/Llama-3": EndpointModels,
		"/v1/other":                     "",
		"/health":                       "",
	} {
		if got := EndpointOf(path); got != want {
			t.Errorf("EndpointOf(%q) = %q, want %q", path, got, want)
		}
	}
	if APIOf("/v1/messages/count_tokens") != APIAnthropicMessages || APIOf("/v1/chat/completions") != APIOpenAIChat || APIOf("/v1/responses") != APIOpenAIResponses || APIOf("/x") != "" {
		t.Error("APIOf")
	}
}
