package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func readAll(t *testing.T, r *Reader) (events []string, data []string, err error) {
	t.Helper()
	for {
		ev, err := r.Next()
		if err != nil {
			return events, data, err
		}
		events = append(events, string(ev.Raw))
		data = append(data, string(ev.Data))
	}
}

func TestReader(t *testing.T) {
	in := ": comment\n\ndata: {\"a\":1}\n\nevent: message_start\ndata: x\ndata: y\n\n\r\ndata:z\r\n\r\ndata: [DONE]\n\n"
	// One byte at a time: events must not depend on how reads are cut.
	r := NewReader(iotest.OneByteReader(strings.NewReader(in)), 0)
	raws, data, err := readAll(t, r)
	if err != io.EOF {
		t.Fatalf("err %v, want io.EOF", err)
	}
	wantRaw := []string{": comment\n\n", "data: {\"a\":1}\n\n", "event: message_start\ndata: x\ndata: y\n\n", "data:z\r\n\r\n", "data: [DONE]\n\n"}
	wantData := []string{"", `{"a":1}`, "x\ny", "z", "[DONE]"}
	if strings.Join(raws, "|") != strings.Join(wantRaw, "|") {
		t.Fatalf("raw %q", raws)
	}
	if strings.Join(data, "|") != strings.Join(wantData, "|") {
		t.Fatalf("data %q", data)
	}
}

func TestReaderEventName(t *testing.T) {
	r := NewReader(strings.NewReader("event: ping\ndata: {}\n\ndata: 1\n\n"), 0)
	ev, err := r.Next()
	if err != nil || string(ev.Name) != "ping" {
		t.Fatalf("name %q, err %v", ev.Name, err)
	}
	ev, err = r.Next()
	if err != nil || len(ev.Name) != 0 {
		t.Fatalf("name %q leaked into the next event, err %v", ev.Name, err)
	}
}

func TestReaderEnds(t *testing.T) {
	// a whole last line without the blank line still makes an event
	r := NewReader(strings.NewReader("data: a\n\ndata: [DONE]\n"), 0)
	_, data, err := readAll(t, r)
	if err != io.EOF || strings.Join(data, "|") != "a|[DONE]" {
		t.Fatalf("data %q err %v", data, err)
	}
	// a stream cut inside a line is an unexpected end
	r = NewReader(strings.NewReader("data: a\n\ndata: {\"cho"), 0)
	_, _, err = readAll(t, r)
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("err %v, want io.ErrUnexpectedEOF", err)
	}
	r = NewReader(strings.NewReader(""), 0)
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("empty stream: %v", err)
	}
}

func TestReaderLimit(t *testing.T) {
	long := "data: " + strings.Repeat("x", 100<<10) + "\n\n"
	r := NewReader(strings.NewReader(long), 64<<10)
	if _, err := r.Next(); !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("err %v", err)
	}
	// under the limit, a line longer than the read buffer is fine
	r = NewReader(strings.NewReader(long), 0)
	ev, err := r.Next()
	if err != nil || len(ev.Data) != 100<<10 {
		t.Fatalf("len %d err %v", len(ev.Data), err)
	}
}

// FuzzReader checks that the raw bytes of the events put together give back
// the stream, so that passing events through never changes what a client gets.
func FuzzReader(f *testing.F) {
	f.Add([]byte("data: a\n\ndata: b\r\n\r\n: c\n\n"))
	f.Add([]byte("event: x\ndata: {}\n\ndata: [DONE]\n"))
	f.Add([]byte("\n\n\ndata"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in), 1<<10)
		var out []byte
		for {
			ev, err := r.Next()
			if err != nil {
				if err == io.EOF && !bytes.Equal(bytes.TrimLeft(in, "\r\n"), out) && len(bytes.TrimSpace(in)) > 0 {
					// leading and between-event blank lines are dropped
					if !bytes.Equal(stripBlank(in), stripBlank(out)) {
						t.Fatalf("events %q do not add up to %q", out, in)
					}
				}
				return
			}
			out = append(out, ev.Raw...)
		}
	})
}

func stripBlank(b []byte) []byte {
	var out []byte
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if len(bytes.TrimRight(line, "\r\n")) > 0 {
			out = append(out, line...)
		}
	}
	return out
}

func TestReaderReady(t *testing.T) {
	pr, pw := io.Pipe()
	r := NewReader(pr, 0)
	go func() {
		_, _ = pw.Write([]byte("data: a\n\ndata: b\n\ndata: c"))
	}()
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if !r.Ready() {
		t.Fatal("the whole event b is buffered: Ready must say so")
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if r.Ready() {
		t.Fatal("only part of event c is buffered: Ready must say no")
	}
	go func() {
		_, _ = pw.Write([]byte("\n\n"))
		pw.Close()
	}()
	if ev, err := r.Next(); err != nil || string(ev.Data) != "c" {
		t.Fatalf("data %q err %v", ev.Data, err)
	}
}

func TestReaderReadyBlankLines(t *testing.T) {
	pr, pw := io.Pipe()
	r := NewReader(pr, 0)
	go func() {
		_, _ = pw.Write([]byte("data: a\n\n\n\r\n\n"))
	}()
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if r.Ready() {
		t.Fatal("only blank lines are buffered: Ready must say no, Next would wait")
	}
	go func() {
		_, _ = pw.Write([]byte(": keep-alive\n\n"))
		pw.Close()
	}()
	if ev, err := r.Next(); err != nil || string(ev.Raw) != ": keep-alive\n\n" {
		t.Fatalf("raw %q err %v", ev.Raw, err)
	}
}

// TestReaderEndsAgain: once a stream ended (or broke), Next says so again, and
// a Reader made after it, with the buffers given back, reads its own
// stream from the start.
func TestReaderEndsAgain(t *testing.T) {
	r := NewReader(strings.NewReader("data: one\n\ndata: two\n"), 0)
	for _, want := range []string{"one", "two"} {
		ev, err := r.Next()
		if err != nil || string(ev.Data) != want {
			t.Fatalf("Next = %q, %v; want %q", ev.Data, err, want)
		}
	}
	for range 2 {
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("after the end Next = %v", err)
		}
	}
	if r.Ready() {
		t.Fatal("Ready after the end")
	}
	cut := NewReader(strings.NewReader("data: cu"), 0)
	for range 2 {
		if _, err := cut.Next(); err != io.ErrUnexpectedEOF {
			t.Fatalf("cut stream: Next = %v", err)
		}
	}
	next := NewReader(strings.NewReader("event: x\ndata: three\n\n"), 0)
	if ev, err := next.Next(); err != nil || string(ev.Data) != "three" || string(ev.Name) != "x" || string(ev.Raw) != "event: x\ndata: three\n\n" {
		t.Fatalf("a later stream: %q %q %q, %v", ev.Name, ev.Data, ev.Raw, err)
	}
}

// quietSource is a stream that tells, at each read, whether the Reader
// reading it held its buffers, and takes delay for each: the read that
// waits for the next event of a quiet stream must not hold them, so that
// a stream waiting on a slow upstream holds no buffer.
type quietSource struct {
	r      *Reader
	delay  time.Duration
	chunks []string
	held   []bool // per read: the Reader had buffers
}

func (q *quietSource) Read(p []byte) (int, error) {
	q.held = append(q.held, q.r.buffers != nil)
	time.Sleep(q.delay)
	if len(q.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, q.chunks[0])
	if q.chunks[0] = q.chunks[0][n:]; q.chunks[0] == "" {
		q.chunks = q.chunks[1:]
	}
	return n, nil
}

func TestReaderParksWhileQuiet(t *testing.T) {
	long := "data: " + strings.Repeat("x", waitSize) + "\n\n"
	for _, tt := range []struct {
		name  string
		delay time.Duration
		held  []bool
	}{
		// Reads: the first chunk (with buffers: the stream is not known
		// to be quiet yet), the second's first waitSize bytes (parked),
		// its rest (within the event: with buffers), the third
		// (parked), the fourth (within the third event), the end
		// (parked).
		{"quiet", 2 * quietAfter, []bool{true, false, true, false, true, false}},
		// Bytes at hand: the buffers are kept, and each read takes all
		// there is.
		{"burst", 0, []bool{true, true, true, true, true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := &quietSource{delay: tt.delay, chunks: []string{"data: one\n\n", long, "data: three\n", "\n"}}
			q.r = NewReader(q, 0)
			_, data, err := readAll(t, q.r)
			if err != io.EOF || len(data) != 3 || data[0] != "one" || data[2] != "three" {
				t.Fatalf("data %q, err %v", data, err)
			}
			if fmt.Sprint(q.held) != fmt.Sprint(tt.held) {
				t.Fatalf("reads with buffers held: %v, want %v", q.held, tt.held)
			}
			if q.r.buffers != nil {
				t.Fatal("buffers kept after the end")
			}
		})
	}
}

// FuzzReaderChunks checks that how the stream arrives, in pieces of any
// size, with or without its end on the last piece, changes none of the
// events nor how the stream ends.
func FuzzReaderChunks(f *testing.F) {
	f.Add([]byte("data: a\n\ndata: b\r\n\r\n: c\n\n"), uint64(0x0102030405), false)
	f.Add([]byte("event: x\ndata: {}\n\ndata: [DONE]\n"), uint64(7), true)
	f.Add([]byte("data: "+strings.Repeat("y", 5000)+"\n\ndata: z"), uint64(0xffff), true)
	f.Fuzz(func(t *testing.T, in []byte, sizes uint64, endWithData bool) {
		want, wantErr := events(bytes.NewReader(in))
		var src io.Reader = &pieces{b: in, sizes: sizes}
		if endWithData {
			src = iotest.DataErrReader(src)
		}
		got, gotErr := events(src)
		if !errors.Is(gotErr, wantErr) && gotErr.Error() != wantErr.Error() {
			t.Fatalf("in pieces the stream ends with %v, whole with %v", gotErr, wantErr)
		}
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("in pieces %q, whole %q", got, want)
		}
	})
}

// events reads a stream to its end: each event's name, data and raw
// bytes, and the error it ended with.
func events(src io.Reader) ([]string, error) {
	r := NewReader(src, 1<<16)
	var out []string
	for {
		ev, err := r.Next()
		if err != nil {
			return out, err
		}
		out = append(out, string(ev.Name)+"|"+string(ev.Data)+"|"+string(ev.Raw))
	}
}

// pieces reads b in pieces whose sizes, 1 to 256, are the bytes of sizes
// in turn.
type pieces struct {
	b     []byte
	sizes uint64
	i     int
}

func (p *pieces) Read(dst []byte) (int, error) {
	if len(p.b) == 0 {
		return 0, io.EOF
	}
	size := int(p.sizes>>(8*(p.i%8))&0xff) + 1
	p.i++
	n := copy(dst[:min(len(dst), size)], p.b)
	p.b = p.b[n:]
	return n, nil
}
