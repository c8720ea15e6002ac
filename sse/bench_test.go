package sse

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkReader scans an OpenAI-style stream of 20 content events, a
// usage event and [DONE], as a gateway relays it: per event, and with
// allocations that must not grow with the stream. "burst" has the whole
// stream at hand; "live" gets one event a read, as from an upstream that
// writes each as it comes: a read for each event.
func BenchmarkReader(b *testing.B) {
	var sb strings.Builder
	for i := range 20 {
		sb.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"m",` +
			`"choices":[{"index":0,"delta":{"content":" chunk` + strconv.Itoa(i) + `"},"finish_reason":null}]}` + "\n\n")
	}
	sb.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[],` +
		`"usage":{"prompt_tokens":25,"completion_tokens":20,"total_tokens":45}}` + "\n\n" + "data: [DONE]\n\n")
	stream := []byte(sb.String())
	events := bytes.Count(stream, []byte("\n\n"))
	for _, bc := range []struct {
		name string
		src  func() io.Reader
	}{
		{"burst", func() io.Reader { return bytes.NewReader(stream) }},
		{"live", func() io.Reader { return &eventReader{rest: stream} }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(stream)))
			for b.Loop() {
				r := NewReader(bc.src(), 0)
				for {
					if _, err := r.Next(); err != nil {
						if err != io.EOF {
							b.Fatal(err)
						}
						break
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
		})
	}
}

// eventReader reads a stream one event at a time.
type eventReader struct{ rest []byte }

func (e *eventReader) Read(p []byte) (int, error) {
	if len(e.rest) == 0 {
		return 0, io.EOF
	}
	end := bytes.Index(e.rest, []byte("\n\n")) + 2
	n := copy(p, e.rest[:end])
	e.rest = e.rest[n:]
	return n, nil
}
