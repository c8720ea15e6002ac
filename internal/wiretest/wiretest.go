// Package wiretest holds what the tests of the wire codecs share: golden
// files, canonical fixtures and reading SSE fixtures into events.
package wiretest

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/llmoneapi/llmoneapi/llm"
	"github.com/llmoneapi/llmoneapi/sse"
	"github.com/llmoneapi/llmoneapi/wire"
)

var update = flag.Bool("update", false, "rewrite the golden files from the current output")

// Golden compares got with the golden file at path, or rewrites the file
// when the tests run with -update. JSON is compared after indenting, so
// golden files stay readable.
func Golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if json.Valid(got) {
		var buf bytes.Buffer
		_ = json.Indent(&buf, got, "", "  ")
		buf.WriteByte('\n')
		got = buf.Bytes()
	}
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the tests with -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from its golden file:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// JSON marshals v for a golden file.
func JSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Files returns the fixture files matching pattern, failing when there are
// none, so that a renamed directory cannot make a test pass vacuously.
func Files(t testing.TB, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures match %s", pattern)
	}
	return files
}

// Name is a fixture's file name without its directory and extension.
func Name(path string) string {
	return strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
}

// Read returns a file's contents.
func Read(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Canonical is the directory of the canonical fixtures every codec encodes,
// relative to a codec package's directory.
const Canonical = "../testdata"

// CanonicalRequest reads a canonical request fixture.
func CanonicalRequest(t testing.TB, path string) *wire.Request {
	t.Helper()
	var r wire.Request
	if err := json.Unmarshal(Read(t, path), &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &r
}

// CanonicalResponse reads a canonical response fixture.
func CanonicalResponse(t testing.TB, path string) *wire.Response {
	t.Helper()
	var r wire.Response
	if err := json.Unmarshal(Read(t, path), &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &r
}

// Event is a stream event as the fixtures write it.
type Event struct {
	Type         string      `json:"type"`
	ID           string      `json:"id,omitempty"`
	Model        string      `json:"model,omitempty"`
	Created      int64       `json:"created,omitempty"`
	Text         string      `json:"text,omitempty"`
	Signature    string      `json:"signature,omitempty"`
	Redacted     bool        `json:"redacted,omitempty"`
	Index        int         `json:"index,omitempty"`
	CallID       string      `json:"call_id,omitempty"`
	Name         string      `json:"name,omitempty"`
	FinishReason string      `json:"finish_reason,omitempty"`
	StopSequence string      `json:"stop_sequence,omitempty"`
	Usage        *llm.Usage  `json:"usage,omitempty"`
	Err          *wire.Error `json:"error,omitempty"`
}

// Events returns events in the fixtures' form.
func Events(evs []wire.Event) []Event {
	out := make([]Event, len(evs))
	for i, e := range evs {
		out[i] = Event{Type: e.Type.String(), ID: e.ID, Model: e.Model, Created: e.Created, Text: e.Text,
			Signature: e.Signature, Redacted: e.Redacted, Index: e.Index, CallID: e.CallID, Name: e.Name,
			FinishReason: string(e.FinishReason), StopSequence: e.StopSequence, Usage: e.Usage, Err: e.Err}
	}
	return out
}

// CanonicalEvents reads a canonical stream fixture: a JSON array of events.
func CanonicalEvents(t testing.TB, path string) []wire.Event {
	t.Helper()
	var in []Event
	if err := json.Unmarshal(Read(t, path), &in); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	types := map[string]wire.EventType{}
	for ty := wire.EventStart; ty <= wire.EventError; ty++ {
		types[ty.String()] = ty
	}
	out := make([]wire.Event, len(in))
	for i, e := range in {
		ty, ok := types[e.Type]
		if !ok {
			t.Fatalf("%s: event %d: unknown type %q", path, i, e.Type)
		}
		out[i] = wire.Event{Type: ty, ID: e.ID, Model: e.Model, Created: e.Created, Text: e.Text,
			Signature: e.Signature, Redacted: e.Redacted, Index: e.Index, CallID: e.CallID, Name: e.Name,
			FinishReason: wire.FinishReason(e.FinishReason), StopSequence: e.StopSequence, Usage: e.Usage, Err: e.Err}
	}
	return out
}

// SSE splits an SSE fixture into its events' names and data.
func SSE(t testing.TB, body []byte) (names []string, data [][]byte) {
	t.Helper()
	r := sse.NewReader(bytes.NewReader(body), 0)
	for {
		ev, err := r.Next()
		if err == io.EOF {
			return names, data
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(ev.Data) == 0 {
			continue
		}
		names = append(names, string(ev.Name))
		data = append(data, bytes.Clone(ev.Data))
	}
}

// StreamDecoder is a codec's stream decoder.
type StreamDecoder interface {
	Decode(dst []wire.Event, data []byte) ([]wire.Event, error)
}

// StreamEncoder is a codec's stream encoder.
type StreamEncoder interface {
	Encode(dst []byte, ev *wire.Event) []byte
	End(dst []byte) []byte
}

// Codec is one format's functions, for the golden tests every codec runs.
type Codec struct {
	DecodeRequest    func([]byte) (*wire.Request, error)
	EncodeRequest    func(*wire.Request) ([]byte, []string, error)
	DecodeResponse   func([]byte) (*wire.Response, error)
	EncodeResponse   func(*wire.Response) ([]byte, error)
	NewStreamDecoder func() StreamDecoder
	NewStreamEncoder func() StreamEncoder
	DecodeError      func(status int, body []byte) *wire.Error
	EncodeError      func(*wire.Error) []byte
}

// DecodeStream runs a stream fixture (SSE) through a decoder.
func (c Codec) DecodeStream(t testing.TB, body []byte) []wire.Event {
	t.Helper()
	_, data := SSE(t, body)
	d := c.NewStreamDecoder()
	var evs []wire.Event
	for _, p := range data {
		var err error
		if evs, err = d.Decode(evs, p); err != nil {
			t.Fatalf("decode %s: %v", p, err)
		}
	}
	return evs
}

// EncodeStream writes events as a whole stream, its end included unless the
// stream broke off with an error.
func (c Codec) EncodeStream(evs []wire.Event) []byte {
	e := c.NewStreamEncoder()
	var out []byte
	for i := range evs {
		out = e.Encode(out, &evs[i])
	}
	if len(evs) == 0 || evs[len(evs)-1].Type != wire.EventError {
		out = e.End(out)
	}
	return out
}

type decodedRequest struct {
	Request *wire.Request `json:"request"`
	Dropped []string      `json:"dropped,omitempty"`
}

type encodedRequest struct {
	Body    json.RawMessage `json:"body"`
	Dropped []string        `json:"dropped,omitempty"`
}

// RunGolden checks the codec against its golden files, from the package's
// testdata: requests, responses, streams and errors in the format decoded
// (testdata/{request,response,stream,error}/*.{json,sse} to .golden), the
// canonical fixtures of wire/testdata encoded (to testdata/encoded/...), and
// that re-decoding and re-encoding an encoding changes nothing.
func RunGolden(t *testing.T, c Codec) {
	t.Run("DecodeRequest", func(t *testing.T) {
		for _, f := range Files(t, "testdata/request/*.json") {
			req, err := c.DecodeRequest(Read(t, f))
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			Golden(t, strings.TrimSuffix(f, ".json")+".golden", JSON(t, decodedRequest{req, req.Dropped}))
		}
	})
	t.Run("EncodeRequest", func(t *testing.T) {
		for _, f := range Files(t, Canonical+"/request/*.json") {
			body, dropped, err := c.EncodeRequest(CanonicalRequest(t, f))
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			Golden(t, "testdata/encoded/request/"+Name(f)+".json", JSON(t, encodedRequest{body, dropped}))
			again, err := c.DecodeRequest(body)
			if err != nil {
				t.Fatalf("%s: decode the encoding: %v", f, err)
			}
			if len(again.Dropped) > 0 {
				t.Errorf("%s: the encoding has fields its own decoder drops: %v", f, again.Dropped)
			}
			body2, _, err := c.EncodeRequest(again)
			if err != nil {
				t.Fatal(err)
			}
			jsonEqual(t, f+" re-encoded", body2, body)
		}
	})
	t.Run("DecodeResponse", func(t *testing.T) {
		for _, f := range Files(t, "testdata/response/*.json") {
			resp, err := c.DecodeResponse(Read(t, f))
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			Golden(t, strings.TrimSuffix(f, ".json")+".golden", JSON(t, resp))
		}
	})
	t.Run("EncodeResponse", func(t *testing.T) {
		for _, f := range Files(t, Canonical+"/response/*.json") {
			body, err := c.EncodeResponse(CanonicalResponse(t, f))
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			Golden(t, "testdata/encoded/response/"+Name(f)+".json", body)
			again, err := c.DecodeResponse(body)
			if err != nil {
				t.Fatalf("%s: decode the encoding: %v", f, err)
			}
			body2, err := c.EncodeResponse(again)
			if err != nil {
				t.Fatal(err)
			}
			jsonEqual(t, f+" re-encoded", body2, body)
		}
	})
	t.Run("DecodeStream", func(t *testing.T) {
		for _, f := range Files(t, "testdata/stream/*.sse") {
			Golden(t, strings.TrimSuffix(f, ".sse")+".golden", JSON(t, Events(c.DecodeStream(t, Read(t, f)))))
		}
	})
	t.Run("EncodeStream", func(t *testing.T) {
		for _, f := range Files(t, Canonical+"/stream/*.json") {
			body := c.EncodeStream(CanonicalEvents(t, f))
			Golden(t, "testdata/encoded/stream/"+Name(f)+".sse", body)
			again := c.EncodeStream(c.DecodeStream(t, body))
			if !bytes.Equal(again, body) {
				t.Errorf("%s re-encoded differs:\n%s\n--- first encoding\n%s", f, again, body)
			}
		}
	})
	t.Run("Errors", func(t *testing.T) {
		for _, f := range Files(t, "testdata/error/*.json") {
			var status int
			if _, err := fmt.Sscanf(Name(f), "%d", &status); err != nil {
				t.Fatalf("%s: error fixtures are named <status>-<what>.json", f)
			}
			e := c.DecodeError(status, Read(t, f))
			Golden(t, strings.TrimSuffix(f, ".json")+".golden", JSON(t, e))
			again := c.DecodeError(e.Status, c.EncodeError(e))
			if again.Kind != e.Kind || again.Message != e.Message {
				t.Errorf("%s: re-decoded as %+v, want %+v", f, again, e)
			}
		}
	})
}

func jsonEqual(t *testing.T, what string, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n%s\n--- want\n%s", what, got, want)
	}
}

// AddSeeds adds every file matching the patterns to a fuzz test's corpus.
func AddSeeds(f *testing.F, patterns ...string) {
	for _, p := range patterns {
		for _, file := range Files(f, p) {
			f.Add(Read(f, file))
		}
	}
}

// FuzzRequest fuzzes a codec's request decoder, seeded with the package's
// request fixtures: whatever it accepts must encode into valid JSON that
// decodes again.
func FuzzRequest(f *testing.F, c Codec) {
	AddSeeds(f, "testdata/request/*.json")
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := c.DecodeRequest(body)
		if err != nil {
			return
		}
		out, _, err := c.EncodeRequest(req)
		if err != nil {
			t.Fatalf("decoded %q but cannot encode it: %v", body, err)
		}
		if _, err := c.DecodeRequest(out); err != nil {
			t.Fatalf("encoding %s does not decode: %v", out, err)
		}
	})
}

// FuzzResponse fuzzes a codec's response decoder, seeded with the package's
// response fixtures.
func FuzzResponse(f *testing.F, c Codec) {
	AddSeeds(f, "testdata/response/*.json")
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := c.DecodeResponse(body)
		if err != nil {
			return
		}
		out, err := c.EncodeResponse(resp)
		if err != nil {
			t.Fatalf("decoded %q but cannot encode it: %v", body, err)
		}
		if _, err := c.DecodeResponse(out); err != nil {
			t.Fatalf("encoding %s does not decode: %v", out, err)
		}
	})
}

// FuzzStream fuzzes a codec's stream decoder with whole SSE streams, seeded
// with the package's stream fixtures: whatever it reads must encode into
// events that decode again.
func FuzzStream(f *testing.F, c Codec) {
	AddSeeds(f, "testdata/stream/*.sse")
	f.Fuzz(func(t *testing.T, body []byte) {
		r := sse.NewReader(bytes.NewReader(body), 1<<16)
		d := c.NewStreamDecoder()
		var evs []wire.Event
		for {
			ev, err := r.Next()
			if err != nil {
				break
			}
			if evs, err = d.Decode(evs, ev.Data); err != nil {
				return
			}
		}
		out := c.EncodeStream(evs)
		_, data := SSE(t, out)
		d = c.NewStreamDecoder()
		for _, p := range data {
			var err error
			if _, err = d.Decode(nil, p); err != nil {
				t.Fatalf("encoded event %s does not decode: %v", p, err)
			}
		}
	})
}

// FuzzError fuzzes a codec's error decoder: any body gives an error that
// encodes.
func FuzzError(f *testing.F, c Codec) {
	AddSeeds(f, "testdata/error/*.json")
	f.Fuzz(func(t *testing.T, body []byte) {
		e := c.DecodeError(500, body)
		if e == nil || e.Status == 0 || e.Kind == "" {
			t.Fatalf("DecodeError(%q) = %+v", body, e)
		}
		if !json.Valid(c.EncodeError(e)) {
			t.Fatalf("EncodeError(%+v) is not JSON", e)
		}
	})
}

// Benchmark measures each translation direction of a codec over the
// canonical fixtures and the package's own fixtures.
func Benchmark(b *testing.B, c Codec) {
	req := CanonicalRequest(b, Canonical+"/request/tools.json")
	resp := CanonicalResponse(b, Canonical+"/response/tool_calls.json")
	evs := CanonicalEvents(b, Canonical+"/stream/tools.json")
	reqBody, _, _ := c.EncodeRequest(req)
	respBody, _ := c.EncodeResponse(resp)
	streamBody := c.EncodeStream(evs)
	_, chunks := SSE(b, streamBody)
	b.Run("EncodeRequest", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := c.EncodeRequest(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DecodeRequest", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(reqBody)))
		for b.Loop() {
			if _, err := c.DecodeRequest(reqBody); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("EncodeResponse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.EncodeResponse(resp); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DecodeResponse", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(respBody)))
		for b.Loop() {
			if _, err := c.DecodeResponse(respBody); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Per event: what one streamed chunk costs in each direction.
	b.Run("EncodeStreamEvent", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			e := c.NewStreamEncoder()
			for i := range evs {
				buf = e.Encode(buf[:0], &evs[i])
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
	})
	b.Run("DecodeStreamEvent", func(b *testing.B) {
		b.ReportAllocs()
		var out []wire.Event
		for b.Loop() {
			d := c.NewStreamDecoder()
			for _, p := range chunks {
				out, _ = d.Decode(out[:0], p)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(chunks)), "ns/event")
	})
}
