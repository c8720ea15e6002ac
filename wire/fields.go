package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"unicode/utf8"

	"github.com/llmoneapi/llmoneapi/llm"
)

// UnknownFields returns the top-level keys of the JSON object body that
// known does not hold, in the order they appear, prefixed with prefix (e.g.
// "generationConfig."). A body that is not an object has none.
func UnknownFields(body []byte, prefix string, known func(key string) bool) []string {
	var out []string
	_ = llm.ScanObject(body, func(key []byte, _ llm.Span) error {
		// The string conversion in a call that does not keep it is free.
		if !known(string(key)) {
			out = append(out, prefix+string(key))
		}
		return nil
	})
	return out
}

// Fields returns a membership test for the names given, for UnknownFields.
func Fields(names ...string) func(string) bool {
	set := make(map[string]struct{}, len(names))
	for _, n := range names {
		set[n] = struct{}{}
	}
	return func(k string) bool {
		_, ok := set[k]
		return ok
	}
}

// AppendEvent appends one server-sent event: an "event:" line when name is
// set, one "data:" line (data must hold no newline, as compact JSON does
// not) and the blank line that ends it.
func AppendEvent(dst []byte, name string, data []byte) []byte {
	if name != "" {
		dst = append(dst, "event: "...)
		dst = append(dst, name...)
		dst = append(dst, '\n')
	}
	dst = append(dst, "data: "...)
	dst = append(dst, data...)
	return append(dst, "\n\n"...)
}

// AppendJSONEvent appends v, marshalled, as one server-sent event.
func AppendJSONEvent(dst []byte, name string, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// The codecs marshal only their own types, which always marshal.
		panic("wire: marshal event: " + err.Error())
	}
	return AppendEvent(dst, name, b)
}

// Note adds what to a list of dropped fields once.
func Note(dropped []string, what string) []string {
	if slices.Contains(dropped, what) {
		return dropped
	}
	return append(dropped, what)
}

// JSONText returns raw as compact JSON text for a tool call's arguments:
// "{}" for nothing or null, the compacted value otherwise.
func JSONText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return "{}"
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return string(raw)
	}
	return buf.String()
}

// ArgumentsJSON returns a tool call's argument text as a JSON object for
// formats that carry arguments as a value, not as text: the text when it is
// an object, "{}" when it is empty, and {"arguments": text} otherwise, so
// that a model's malformed arguments never make the request malformed.
func ArgumentsJSON(args string) json.RawMessage {
	if args == "" {
		return json.RawMessage("{}")
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal([]byte(args), &obj) == nil && obj != nil {
		return json.RawMessage(args)
	}
	b, _ := json.Marshal(map[string]string{"arguments": args})
	return b
}

// DecodeContent reads a message's content field, which every chat format
// lets be a string or an array of parts: a non-empty string is returned as
// one text part, an array decoded into parts; null or absent is neither.
// what names the array's items in the error for anything else. raw is as
// encoding/json decodes a json.RawMessage: valid JSON.
func DecodeContent[T any](raw json.RawMessage, what string) (text []Part, parts []T, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil, nil
	}
	if raw[0] == '"' {
		// Most content is one string: Unquote takes one without escapes
		// as it is, which is what decoding gives for valid UTF-8.
		var s string
		if utf8.Valid(raw) {
			s, err = llm.Unquote(raw)
		} else {
			err = json.Unmarshal(raw, &s)
		}
		if err != nil {
			return nil, nil, err
		}
		if s == "" {
			return nil, nil, nil
		}
		return []Part{{Type: PartText, Text: s}}, nil, nil
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil, nil, errors.New("content must be a string or an array of " + what)
	}
	return nil, parts, nil
}
