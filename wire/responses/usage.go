package responses

import (
	"encoding/json"
	"fmt"

	"github.com/llmoneapi/llmoneapi/llm"
)

var usageKey = []byte(`"usage"`)

// Usage reads the usage out of a whole response body, or out of the data of
// a stream event that carries the response (response.completed,
// response.incomplete, response.failed), for the passthrough path: a byte
// scan first, so that the stream's other events (and a usage of null) cost
// no decoding, then only the usage object is decoded. It returns nil when
// there is none.
func Usage(data []byte) (*llm.Usage, error) {
	if !llm.HasValue(data, usageKey, '{') {
		return nil, nil
	}
	u, err := usageIn(data, true)
	if err != nil {
		return nil, fmt.Errorf("responses: read usage: %w", err)
	}
	return u, nil
}

// usageIn reads the usage member of the object obj, or, in an event, of
// its response member.
func usageIn(obj []byte, event bool) (*llm.Usage, error) {
	var found *llm.Usage
	err := llm.ScanObject(obj, func(key []byte, v llm.Span) error {
		val := obj[v.Start:v.End]
		if val[0] != '{' {
			return nil
		}
		switch string(key) {
		case "usage":
			var u usage
			if err := json.Unmarshal(val, &u); err != nil {
				return fmt.Errorf("bad usage: %w", err)
			}
			found = u.canonical()
		case "response":
			if event {
				u, err := usageIn(val, false)
				if err != nil {
					return err
				}
				found = u
			}
		}
		return nil
	})
	return found, err
}
