package anthropic

import (
	"reflect"
	"testing"

	"github.com/llmoneapi/llmoneapi/wire"
)

var deltaSeeds = []string{
	`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}`,
	`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a \"quote\" and \u00e9\n"}}`,
	`{"type":"content_block_delta","index":1,"delta":{"type":"thinking_delta","thinking":"hm"}}`,
	`{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"city\": "}}`,
	`{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"x"}}`,
	`{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2ln"}}`,
	`{"type":"content_block_delta","index":"0","delta":{"type":"text_delta","text":"x"}}`,
	`{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}`,
	`{"type":"ping"}`,
}

// FuzzFastDelta: whatever the scan reads, it reads as the full decode does.
func FuzzFastDelta(f *testing.F) {
	for _, s := range deltaSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast := &StreamDecoder{tools: map[int]int{2: 0}}
		ev, ok := fast.fastDelta(data)
		if !ok {
			return
		}
		full := &StreamDecoder{tools: map[int]int{2: 0}}
		evs, err := full.decodeFull(nil, data)
		if err != nil {
			// The scan checks the structure, not every scalar: a value
			// encoding/json refuses is the upstream's fault either way.
			return
		}
		if len(evs) != 1 || !reflect.DeepEqual(evs[0], ev) {
			t.Fatalf("%s: scan %+v, decode %+v", data, ev, evs)
		}
	})
}

// TestFastDeltaSeeds: the scan takes the deltas and leaves the rest.
func TestFastDeltaSeeds(t *testing.T) {
	d := &StreamDecoder{tools: map[int]int{2: 0}}
	want := []bool{true, true, true, true, false, false, false, false, false}
	for i, s := range deltaSeeds {
		if _, ok := d.fastDelta([]byte(s)); ok != want[i] {
			t.Errorf("%s: scanned %v", s, ok)
		}
	}
	ev, _ := d.fastDelta([]byte(deltaSeeds[1]))
	if ev != (wire.Event{Type: wire.EventTextDelta, Text: "a \"quote\" and é\n"}) {
		t.Errorf("escaped text: %+v", ev)
	}
}
