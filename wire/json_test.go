package wire_test

import (
	"encoding/json"
	"testing"

	"github.com/llmoneapi/llmoneapi/wire"
)

var stringSeeds = []string{
	"", "plain text", `a "quote" and a \ backslash`, "tab\tnewline\nreturn\rbell\a\b\f\x00\x1f\x7f",
	"<script>&amp;</script>", "é, 日本語, 🙂", "line\u2028para\u2029", "bad \xff\xfe utf-8 \xe2\x80",
	"\xed\xa0\x80 surrogate", "trailing \xc3",
}

// FuzzAppendString: the appender writes every string as encoding/json does.
func FuzzAppendString(f *testing.F) {
	for _, s := range stringSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := wire.AppendString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Fatalf("%q: got %s, want %s", s, got[1:], want)
		}
	})
}

func TestAppendStringSeeds(t *testing.T) {
	for _, s := range stringSeeds {
		want, _ := json.Marshal(s)
		if got := wire.AppendString(nil, s); string(got) != string(want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	}
}

func BenchmarkAppendString(b *testing.B) {
	s := "Rye needs less kneading than wheat, and a \"wetter\" dough.\n"
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		buf = wire.AppendString(buf[:0], s)
	}
}
