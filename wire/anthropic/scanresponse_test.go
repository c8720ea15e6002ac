package anthropic

import (
	"reflect"
	"testing"

	"github.com/llmoneapi/llmoneapi/internal/wiretest"
)

var responseSeeds = []string{
	`{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"Hi \u00e9"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1}}`,
	`{"content":[],"id":"msg_2","model":"m","role":"assistant","stop_reason":null,"type":"message"}`,
	`{"id":"m","model":"m","content":[{"type":"tool_use","id":"t","name":"f","input":null},{"type":"tool_use","id":"u","name":"g"}]}`,
	`{"id":"m","model":"m","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}]}`,
	`{"id":"m","model":"m","type":"\u0065rror","content":[]}`,
	`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`,
	`{"id":"m","model":"m","content":[{"type":"redacted_thinking","data":"x"}]}`,
	`{"id":"m","model":"m","content":[{"TYPE":"text","Text":"folded"}],"Stop_Reason":"max_tokens"}`,
}

// FuzzScanResponse: whatever the scan reads, it reads as the decoder does.
func FuzzScanResponse(f *testing.F) {
	wiretest.AddSeeds(f, "testdata/response/*.json")
	for _, s := range responseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := scanResponse(body)
		if !ok {
			return
		}
		want, err := decodeResponse(body)
		if err != nil {
			// The scan checks the structure, not every scalar: a value
			// encoding/json refuses is the upstream's fault either way.
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\nscan   %+v\ndecode %+v", body, got, want)
		}
	})
}

// TestScanResponseSeeds: the scan reads the common answers and leaves the
// rest to the decoder.
func TestScanResponseSeeds(t *testing.T) {
	want := []bool{true, true, true, false, false, false, false, true}
	for i, s := range responseSeeds {
		if _, ok := scanResponse([]byte(s)); ok != want[i] {
			t.Errorf("%s: scanned %v", s, ok)
		}
	}
	for _, f := range wiretest.Files(t, "testdata/response/*.json") {
		if _, ok := scanResponse(wiretest.Read(t, f)); !ok {
			t.Errorf("%s: not scanned", f)
		}
	}
}
