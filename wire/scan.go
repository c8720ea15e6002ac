package wire

import (
	"bytes"
	"strconv"
	"unicode/utf8"

	"github.com/llmoneapi/llmoneapi/llm"
)

// The codecs' fast paths read the commonest stream events by scanning
// (llm.ScanObject) instead of decoding them with encoding/json. These read
// the scanned members exactly as encoding/json would, or report false so
// that the caller decodes in full.

// Field returns which of names a key is, as encoding/json matches a key to
// a struct field: exactly, or else ignoring case (Unicode folding
// included), so that a scan reads the member a decode would; "" for none.
func Field(key []byte, names []string) string {
	if i := fieldIndex(key, names); i >= 0 {
		return names[i]
	}
	return ""
}

func fieldIndex(key []byte, names []string) int {
	for i, n := range names {
		if string(key) == n {
			return i
		}
	}
	for i, n := range names {
		if bytes.EqualFold(key, []byte(n)) {
			return i
		}
	}
	return -1
}

// ScanMembers scans the JSON object obj and sets *vals[i] to the bytes of
// the value of member names[i], matched as Field matches, the last one's
// when a key repeats; other members are skipped and an absent one leaves
// its value nil. False for what is not a well-formed object.
func ScanMembers(obj []byte, names []string, vals ...*[]byte) bool {
	return llm.ScanObject(obj, func(key []byte, v llm.Span) error {
		if i := fieldIndex(key, names); i >= 0 {
			*vals[i] = obj[v.Start:v.End]
		}
		return nil
	}) == nil
}

// ScanInt reads a JSON integer, refusing what encoding/json would refuse
// for an int: fractions, exponents, a plus sign, leading zeros, overflow.
func ScanInt(v []byte) (int64, bool) {
	digits := v
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || digits[0] == '0' && len(digits) > 1 {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil
}

// ScanString reads a JSON string; false for anything else, and for invalid
// UTF-8, which encoding/json would replace: those are left to it.
func ScanString(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' || !utf8.Valid(v) {
		return "", false
	}
	s, err := llm.Unquote(v)
	return s, err == nil
}

// ScanOptionalString reads a member that is a string, null or absent
// (nil): "" for the last two.
func ScanOptionalString(v []byte) (string, bool) {
	if IsNull(v) {
		return "", true
	}
	return ScanString(v)
}

// IsNull tells a member that is absent (nil) or null.
func IsNull(v []byte) bool { return v == nil || string(v) == "null" }
