package openai

import (
	"reflect"
	"testing"

	"github.com/llmoneapi/llmoneapi/wire"
)

var deltaSeeds = []string{
	`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}`,
	`{"choices":[{"index":0,"delta":{"content":"a \"quote\" and \u00e9\n"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"x"}`,
	`{"choices":[{"delta":{"reasoning_content":"hm","content":null}}]}`,
	`{"choices":[{"index":0,"delta":{"reasoning":"hm","role":"assistant","content":""}}],"system_fingerprint":"fp"}`,
	`{"choices":[{"index":0,"delta":{"reasoning_content":"","reasoning":"no"}}]}`,
	`{"choices":[{"index":0,"delta":{"content":"x","tool_calls":[]}}]}`,
	`{"Choices":[{"Index":0,"Delta":{"Content":"case"}}]}`,
	`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}`,
	`{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
	`{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`,
	`{"choices":[{"index":1,"delta":{"content":"second"}}]}`,
	`{"choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{"content":"b"}}]}`,
	`{"error":{"message":"boom","type":"server_error"}}`,
	`{"choices":[{"index":0,"delta":{"content":5}}]}`,
}

// FuzzFastDeltaChunk: whatever the scan reads, it reads as the full decode
// of a started stream does.
func FuzzFastDeltaChunk(f *testing.F) {
	for _, s := range deltaSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := fastDelta(nil, data)
		if !ok {
			return
		}
		full, err := (&StreamDecoder{started: true}).decodeFull(nil, data)
		if err != nil {
			// The scan checks the structure, not every scalar: a value
			// encoding/json refuses is the upstream's fault either way.
			return
		}
		if len(fast) == 0 && len(full) == 0 {
			return
		}
		if !reflect.DeepEqual(fast, full) {
			t.Fatalf("%s: scan %+v, decode %+v", data, fast, full)
		}
	})
}

// TestFastDeltaChunkSeeds: the scan takes the text and reasoning deltas of
// the first choice and leaves every other chunk to the full decode.
func TestFastDeltaChunkSeeds(t *testing.T) {
	want := []bool{true, true, true, true, true, true, true, false, false, false, false, false, false, false}
	for i, s := range deltaSeeds {
		if _, ok := fastDelta(nil, []byte(s)); ok != want[i] {
			t.Errorf("%s: scanned %v", s, ok)
		}
	}
	evs, _ := fastDelta(nil, []byte(deltaSeeds[1]))
	if len(evs) != 1 || evs[0] != (wire.Event{Type: wire.EventTextDelta, Text: "a \"quote\" and é\n"}) {
		t.Errorf("escaped text: %+v", evs)
	}
	evs, _ = fastDelta(nil, []byte(deltaSeeds[4]))
	if len(evs) != 0 {
		t.Errorf("reasoning_content \"\" wins over reasoning, as in the full decode: %+v", evs)
	}
}

// BenchmarkChunk is one text chunk of a started stream, read by the scan
// and by the full decode.
func BenchmarkChunk(b *testing.B) {
	chunk := []byte(`{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"content":" the"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Kx"}`)
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		d := &StreamDecoder{started: true}
		var evs []wire.Event
		for b.Loop() {
			evs, _ = d.Decode(evs[:0], chunk)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		d := &StreamDecoder{started: true}
		var evs []wire.Event
		for b.Loop() {
			evs, _ = d.decodeFull(evs[:0], chunk)
		}
	})
}
