package anthropic

import (
	"reflect"
	"testing"
)

var frameSeeds = []string{
	`{"type":"message_start","message":{"id":"msg_S1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":2000,"output_tokens":1}}}`,
	`{"message":{"content":[],"id":"msg_b","model":"m","role":"assistant","type":"message"},"type":"message_start"}`,
	`{"type":"message_start","message":{"id":"msg_\u0031","model":"m","usage":{"input_tokens":null,"output_tokens":-0}}}`,
	`{"type":"message_start","message":{"id":"m","model":"m","usage":{"input_tokens":1.5}}}`,
	`{"type":"message_start","message":null}`,
	`{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}`,
	`{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}`,
	`{"type":"content_block_start","index":1,"content_block":{"type":"text","text":"Hi"}}`,
	`{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_S1","name":"Read","input":{}}}`,
	`{"type": "ping"}`,
	`{"type":"content_block_stop","index":0}`,
	`{"type":"content_block_stop","index":01}`,
	`{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":61}}`,
	`{"type":"message_delta","delta":{"stop_reason":"stop_sequence","stop_sequence":"\n\nHuman:"},"usage":{"input_tokens":3,"cache_read_input_tokens":7,"output_tokens":9,"server_tool_use":{"web_search_requests":0}}}`,
	`{"type":"message_delta","delta":null,"usage":null}`,
	`{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":"3"}}`,
	`{"type":"message_stop"}`,
	`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`,
}

// FuzzFastFrame: whatever the scan reads, it reads as the full decode does,
// the decoder's state included.
func FuzzFastFrame(f *testing.F) {
	for _, s := range append(frameSeeds, deltaSeeds...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast := &StreamDecoder{usage: usage{InputTokens: 5}}
		evs, ok := fast.fastFrame(nil, data)
		if !ok {
			return
		}
		full := &StreamDecoder{usage: usage{InputTokens: 5}}
		want, err := full.decodeFull(nil, data)
		if err != nil {
			// The scan checks the structure, not every scalar: a value
			// encoding/json refuses is the upstream's fault either way.
			return
		}
		if !reflect.DeepEqual(evs, want) || !reflect.DeepEqual(fast, full) {
			t.Fatalf("%s: scan %+v %+v, decode %+v %+v", data, evs, fast, want, full)
		}
	})
}

// TestFastFrameSeeds: the scan takes the framing events it can read as
// the decode does and leaves the rest.
func TestFastFrameSeeds(t *testing.T) {
	want := []bool{true, true, true, false, false, true, true, false, false, true, true, false, true, true, true, false, true, false}
	for i, s := range frameSeeds {
		d := &StreamDecoder{}
		if _, ok := d.fastFrame(nil, []byte(s)); ok != want[i] {
			t.Errorf("%s: scanned %v", s, ok)
		}
	}
}
