package providers

import (
	"encoding/json"
	"testing"
)

// TestChunkText: the text counted of a chunk is its answer's text, escapes
// decoded, and a key's name inside a string is not taken for a key.
func TestChunkText(t *testing.T) {
	for data, want := range map[string]string{
		`{"choices":[{"delta":{"role":"assistant","content":""}}]}`:                                  "",
		`{"choices":[{"delta":{"content":"Hello"}}]}`:                                                "Hello",
		`{"choices":[{"delta":{"content" : "a\nb \"c\" \u00e9"}}]}`:                                  "a\nb \"c\" é",
		`{"choices":[{"delta":{"content":"say \"content\":\"x\""}}]}`:                                `say "content":"x"`,
		`{"choices":[{"delta":{"reasoning_content":"think"}}]}`:                                      "think",
		`{"choices":[{"delta":{"refusal":"no"}}]}`:                                                   "no",
		`{"choices":[{"delta":{"tool_calls":[{"function":{"name":"f","arguments":"{\"a\":1}"}}]}}]}`: `{"a":1}`,
		`{"choices":[{"text":"legacy","index":0}]}`:                                                  "legacy",
		`{"choices":[{"delta":{"content":null}}],"usage":{"prompt_tokens":1}}`:                       "",
		`{"choices":[{"delta":{"content":"unterminated`:                                              "",
	} {
		if got := string(chunkText(nil, []byte(data))); got != want {
			t.Errorf("chunkText(%s) = %q, want %q", data, got, want)
		}
	}
}

// FuzzChunkText: any content survives the round trip through an encoded
// chunk, and no input makes chunkText panic.
func FuzzChunkText(f *testing.F) {
	for _, s := range []string{"", "hello", `"content":"x"`, "a\\b\n\u2028", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_ = chunkText(nil, []byte(s))
		quoted, _ := json.Marshal(s)
		var want string // invalid UTF-8 comes back replaced
		_ = json.Unmarshal(quoted, &want)
		data := []byte(`{"choices":[{"delta":{"content":` + string(quoted) + `}}]}`)
		if got := string(chunkText(nil, data)); got != want {
			t.Fatalf("chunkText(%s) = %q, want %q", data, got, want)
		}
	})
}
