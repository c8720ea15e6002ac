package llm

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// A chat request of a few KB, the shape most calls have.
var benchBody = []byte(`{"model":"gpt-4o-mini","stream":true,"temperature":0.2,"messages":[` +
	strings.Repeat(`{"role":"user","content":"Tell me about the \"history\" of the Caddy web server, in detail please."},`, 30) +
	`{"role":"user","content":"thanks"}]}`)

func BenchmarkParseRequest(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchBody)))
	for b.Loop() {
		if _, e := ParseRequest(benchBody); e != nil {
			b.Fatal(e)
		}
	}
}

func BenchmarkScopeAllows(b *testing.B) {
	s := Scope{"gpt-4o", "claude-*", "text-embedding-*", "meta-llama/*"}
	b.ReportAllocs()
	for b.Loop() {
		if !s.Allows("meta-llama/Llama-3.1-8B-Instruct") {
			b.Fatal("not allowed")
		}
	}
}

// BenchmarkReadRequest is what every call pays first: the body read once
// from the client and its top-level fields found without a full decode.
func BenchmarkReadRequest(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchBody)))
	for b.Loop() {
		r, _ := http.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(benchBody))
		if _, e := ReadRequest(r, 0); e != nil {
			b.Fatal(e)
		}
	}
}

// BenchmarkPatch is the passthrough path's only change to a body: the
// upstream's model name in place of the client's, and usage asked for in
// stream_options, in one copy.
func BenchmarkPatch(b *testing.B) {
	req, e := ParseRequest(benchBody)
	if e != nil {
		b.Fatal(e)
	}
	model := []byte(`"gpt-4o-mini-2024-07-18"`)
	options := []byte(`,"stream_options":{"include_usage":true}`)
	end := len(benchBody) - 1
	b.ReportAllocs()
	b.SetBytes(int64(len(benchBody)))
	for b.Loop() {
		out := Patch(req.Body, Edit{Span: req.ModelSpan, Value: model}, Edit{Span: Span{end, end}, Value: options})
		if len(out) == 0 {
			b.Fatal("empty body")
		}
	}
}

// BenchmarkHasValue is the two searches a relayed OpenAI chunk gets: its
// finish_reason (null here, so not a hit) and its usage (null too).
func BenchmarkHasValue(b *testing.B) {
	chunk := []byte(`{"id":"chatcmpl-FYEQBQCHHTZXFFJAPNQZZDAJRB","object":"chat.completion.chunk","created":1796167716,` +
		`"model":"bench","choices":[{"index":0,"delta":{"content":" chunk7"},"logprobs":null,"finish_reason":null}],"usage":null}`)
	finish, usage := []byte(`"finish_reason"`), []byte(`"usage"`)
	b.SetBytes(int64(2 * len(chunk)))
	for b.Loop() {
		if HasValue(chunk, finish, '"') || HasValue(chunk, usage, '{') {
			b.Fatal("found a value that is null")
		}
	}
}
