package llm

import (
	"bytes"
	"errors"
	"fmt"
)

// ScanObject walks the members of the JSON object in body without decoding
// their values, calling visit with each key and the span of its value. It
// checks the structure (quotes, brackets, commas, colons) but not the inside of
// scalars: the upstream gets the body and judges the rest.
//
// The key passed to visit is only valid during the call: it is a slice of
// body when the key has no escapes, so that scanning allocates nothing.
func ScanObject(body []byte, visit func(key []byte, value Span) error) error {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return errors.New("expected '{'")
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return trailing(body, i+1)
	}
	for {
		if i >= len(body) || body[i] != '"' {
			return fmt.Errorf("expected a key at offset %d", i)
		}
		end, err := skipString(body, i)
		if err != nil {
			return err
		}
		key := body[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			unescaped, err := Unquote(body[i:end])
			if err != nil {
				return fmt.Errorf("bad key at offset %d", i)
			}
			key = []byte(unescaped)
		}
		i = skipSpace(body, end)
		if i >= len(body) || body[i] != ':' {
			return fmt.Errorf("expected ':' at offset %d", i)
		}
		i = skipSpace(body, i+1)
		vend, err := skipValue(body, i)
		if err != nil {
			return err
		}
		if err := visit(key, Span{i, vend}); err != nil {
			return err
		}
		var done bool
		if i, done, err = nextItem(body, vend, '}'); done || err != nil {
			return err
		}
	}
}

// ScanArray walks the elements of the JSON array in body without decoding
// them, calling visit with the span of each. It checks what ScanObject
// checks.
func ScanArray(body []byte, visit func(value Span) error) error {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '[' {
		return errors.New("expected '['")
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == ']' {
		return trailing(body, i+1)
	}
	for {
		end, err := skipValue(body, i)
		if err != nil {
			return err
		}
		if err := visit(Span{i, end}); err != nil {
			return err
		}
		var done bool
		if i, done, err = nextItem(body, end, ']'); done || err != nil {
			return err
		}
	}
}

// nextItem reads what follows a member or an element at i: a comma, and it
// returns where the next one starts, or the closing bracket of the
// top-level value, and it is done.
func nextItem(body []byte, i int, closing byte) (next int, done bool, err error) {
	i = skipSpace(body, i)
	if i >= len(body) {
		return 0, false, errors.New("unexpected end of body")
	}
	switch body[i] {
	case ',':
		return skipSpace(body, i+1), false, nil
	case closing:
		return 0, true, trailing(body, i+1)
	}
	return 0, false, fmt.Errorf("expected ',' or '%c' at offset %d", closing, i)
}

func trailing(body []byte, i int) error {
	if skipSpace(body, i) != len(body) {
		return fmt.Errorf("unexpected data after the object at offset %d", i)
	}
	return nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the offset just past the string starting at b[i].
func skipString(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		default:
			if b[j] < 0x20 {
				return 0, fmt.Errorf("control character in string at offset %d", j)
			}
		}
	}
	return 0, errors.New("unterminated string")
}

// skipValue returns the offset just past the value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errors.New("unexpected end of body")
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		return skipNested(b, i)
	}
	j := i
	for j < len(b) {
		c := b[j]
		if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			break
		}
		if c == '"' || c == '{' || c == '[' || c == ':' {
			return 0, fmt.Errorf("unexpected '%c' at offset %d", c, j)
		}
		j++
	}
	if j == i {
		return 0, fmt.Errorf("expected a value at offset %d", i)
	}
	return j, nil
}

// skipNested skips an object or array, matching brackets and skipping
// strings, without checking what lies between them.
func skipNested(b []byte, i int) (int, error) {
	var buf [32]byte // most bodies nest less deep; avoids a heap allocation
	stack := buf[:0]
	for j := i; j < len(b); j++ {
		switch c := b[j]; c {
		case '"':
			end, err := skipString(b, j)
			if err != nil {
				return 0, err
			}
			j = end - 1
		case '{', '[':
			stack = append(stack, c)
		case '}', ']':
			open := byte('{')
			if c == ']' {
				open = '['
			}
			if len(stack) == 0 || stack[len(stack)-1] != open {
				return 0, fmt.Errorf("mismatched '%c' at offset %d", c, j)
			}
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return j + 1, nil
			}
		}
	}
	return 0, errors.New("unexpected end of body")
}

// Edit replaces the bytes of Span with Value; an empty span (Start == End)
// inserts Value at Start.
type Edit struct {
	Span  Span
	Value []byte
}

// Patch returns a copy of body with the edits applied, in one allocation.
// The edits must be sorted by position and must not overlap.
func Patch(body []byte, edits ...Edit) []byte {
	n := len(body)
	for _, e := range edits {
		n += len(e.Value) - (e.Span.End - e.Span.Start)
	}
	out := make([]byte, 0, n)
	at := 0
	for _, e := range edits {
		out = append(out, body[at:e.Span.Start]...)
		out = append(out, e.Value...)
		at = e.Span.End
	}
	return append(out, body[at:]...)
}

// HasValue tells cheaply, by bytes alone, whether some key in data is
// followed by a colon and a value starting with first: '{' for an object,
// '"' for a string (not null). key includes its quotes, e.g.
// []byte(`"usage"`). A key's quotes cannot occur unescaped inside a JSON
// string, so a hit is a real key, at whatever depth: callers use it to skip
// decoding the many events that cannot hold what they look for.
func HasValue(data, key []byte, first byte) bool {
	// The search leaves out the key's opening quote and checks it after: a
	// search led by a quote, the commonest byte of JSON, stops every few
	// bytes, and one led by the key's first letter skips ahead with SIMD.
	// BenchmarkHasValue: 2-3x faster than a search for the whole key.
	name := key[1:]
	for off := 0; ; {
		i := bytes.Index(data[off:], name)
		if i < 0 {
			return false
		}
		i += off
		off = i + len(name)
		if i == 0 || data[i-1] != key[0] {
			continue
		}
		if j := skipSpace(data, off); j < len(data) && data[j] == ':' {
			if j = skipSpace(data, j+1); j < len(data) && data[j] == first {
				return true
			}
		}
	}
}
