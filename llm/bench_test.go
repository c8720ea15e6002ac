package llm

import (
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
