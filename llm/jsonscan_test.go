package llm

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestScanArray(t *testing.T) {
	body := []byte(` [ 1, "a,]", {"b":[2,3]}, [], null ] `)
	var got []string
	if err := ScanArray(body, func(v Span) error {
		got = append(got, string(body[v.Start:v.End]))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{`1`, `"a,]"`, `{"b":[2,3]}`, `[]`, `null`}
	if len(got) != len(want) {
		t.Fatalf("got %q", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	for _, bad := range []string{``, `{}`, `[1,]`, `[1 2]`, `[1`, `[1] x`, `[,1]`} {
		if err := ScanArray([]byte(bad), func(Span) error { return nil }); err == nil {
			t.Errorf("ScanArray(%q) took it", bad)
		}
	}
}

// FuzzScanArray: every array encoding/json reads is scanned into the same
// elements.
func FuzzScanArray(f *testing.F) {
	for _, s := range []string{`[]`, `[1,"x",{"a":[1]}]`, ` [ null , true ] `, `[[[]]]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var want []json.RawMessage
		if json.Unmarshal(body, &want) != nil || want == nil {
			return
		}
		var got [][]byte
		if err := ScanArray(body, func(v Span) error {
			got = append(got, body[v.Start:v.End])
			return nil
		}); err != nil {
			t.Fatalf("ScanArray(%q): %v", body, err)
		}
		if len(got) != len(want) {
			t.Fatalf("ScanArray(%q): %d elements, encoding/json %d", body, len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(bytes.TrimSpace(want[i]), got[i]) {
				t.Fatalf("ScanArray(%q): element %d is %q, encoding/json %q", body, i, got[i], want[i])
			}
		}
	})
}

// FuzzHasValue checks HasValue against the plain way to say the same: find
// the whole key, then a colon and the value's first byte, past spaces.
func FuzzHasValue(f *testing.F) {
	f.Add([]byte(`{"choices":[],"usage":null}`), byte('{'))
	f.Add([]byte(`{"a":"usage\"","usage" : {"x":1}}`), byte('{'))
	f.Add([]byte(`{"finish_reason":null,"x":{"finish_reason":"stop"}}`), byte('"'))
	f.Add([]byte(`usage":{}`), byte('{'))
	f.Fuzz(func(t *testing.T, data []byte, first byte) {
		for _, key := range [][]byte{[]byte(`"usage"`), []byte(`"finish_reason"`), []byte(`"u"`)} {
			want := false
			for rest := data; !want; {
				i := bytes.Index(rest, key)
				if i < 0 {
					break
				}
				rest = bytes.TrimLeft(rest[i+len(key):], " \t\r\n")
				if len(rest) > 0 && rest[0] == ':' {
					v := bytes.TrimLeft(rest[1:], " \t\r\n")
					want = len(v) > 0 && v[0] == first
				}
			}
			if got := HasValue(data, key, first); got != want {
				t.Fatalf("HasValue(%q, %s, %q) = %v, want %v", data, key, first, got, want)
			}
		}
	})
}
