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
// allocations that must not grow with the stream.
func BenchmarkReader(b *testing.B) {
	var sb strings.Builder
	for i := range 20 {
		sb.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"m",` +
			`"choices":[{"index":0,"delta":{"content":" chunk` + strconv.Itoa(i) + `"},"finish_reason":null}]}` + "\n\n")
	}
	sb.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[],` +
		`"usage":{"prompt_tokens":25,"completion_tokens":20,"total_tokens":45}}` + "\n\ndata: [DONE]\n\n")
	stream := []byte(sb.String())
	events := bytes.Count(stream, []byte("\n\n"))
	body := bytes.NewReader(stream)
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		body.Reset(stream)
		r := NewReader(body, 0)
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
}
