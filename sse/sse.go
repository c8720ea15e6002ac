// Package sse reads server-sent event streams one event at a time, keeping
// each event's raw bytes so that a gateway can pass events on unchanged and
// still look inside them. Memory stays bounded by the largest event, however
// long the stream.
package sse

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// DefaultMaxEventSize bounds one event when a Reader is made with no limit.
const DefaultMaxEventSize = 4 << 20

// ErrEventTooLarge is returned for an event over the Reader's limit.
var ErrEventTooLarge = errors.New("sse: event too large")

// Event is one server-sent event. Its slices point into the Reader's buffer
// and are valid only until the next call to Next; the caller may change
// their bytes in place until then.
type Event struct {
	// Raw is the event as it arrived, blank line included.
	Raw []byte
	// Name is the value of the "event:" field, if any.
	Name []byte
	// Data is the values of the "data:" fields joined by newlines.
	Data []byte
}

// Reader reads events from a stream. Its buffers come from a pool and go
// back to it while the stream is quiet and once Next has returned the
// stream's end or an error: a gateway relaying many short streams does not
// allocate them for each, and one holding thousands of slow streams open
// holds buffers only for those with bytes on the way.
type Reader struct {
	*buffers // nil while waiting between events, and once the stream ended
	src      io.Reader
	max      int
	err      error // the end or error Next returned, returned again
	// quiet says the stream's last timed read waited quietAfter or
	// longer: the next wait between events is done with the buffers
	// parked. A stream whose bytes come in bursts keeps them and reads all
	// that is at hand at once, so that Ready sees the events behind the
	// current one. Reads with the buffers held are timed one in
	// timeEvery (a clock read costs about as much as an event's scan),
	// so a stream that turns quiet parks within a few events.
	quiet bool
	reads uint8 // reads with the buffers held, for timeEvery
	// What the read that waited for the stream got, until br takes it in,
	// and the error that read returned, for br after those bytes.
	head    []byte
	headErr error
	// wait is what a quiet stream's waits read into, allocated at its
	// first: a stream whose events come in bursts never needs it.
	wait *[waitSize]byte
}

// quietAfter is how long a read must wait for the stream to count as
// quiet: far more than a burst's reads take on a busy machine, less than
// the time between most models' tokens (20-100 a second). Parking at
// every wait made streams' CPU 5-25 % higher in bench/run.sh, whose fast
// upstream sends its events in bursts, most likely because Ready then
// sees only what the wait read, not the events behind it, and the relay
// flushes sooner.
const quietAfter = 10 * time.Millisecond

// timeEvery is how many reads with the buffers held there are to one
// timed read.
const timeEvery = 4

// waitSize is what a quiet stream's wait between events reads into: most
// events fit (an OpenAI chunk is 200-400 bytes), so that br takes them
// from it without a second read through the stream's readers; a longer
// one has its start in it, and br reads the rest.
const waitSize = 512

// buffers is what a Reader reads into: pooled, as a whole.
type buffers struct {
	br   *bufio.Reader
	raw  []byte
	data []byte
	name []byte
}

var bufferPool = sync.Pool{New: func() any { return &buffers{br: bufio.NewReaderSize(nil, readBufferSize)} }}

// maxPooled bounds the event buffers kept in the pool: one huge event
// does not pin its memory for later streams.
const maxPooled = 64 << 10

// readBufferSize is the read buffer of a Reader. Events longer than it are
// read in pieces, so it bounds nothing but the bytes one read takes in; a
// small one keeps a stream's memory low when thousands are open, and most
// events are far smaller.
const readBufferSize = 4 << 10

// NewReader returns a Reader over r. maxEventSize <= 0 means DefaultMaxEventSize.
func NewReader(r io.Reader, maxEventSize int) *Reader {
	if maxEventSize <= 0 {
		maxEventSize = DefaultMaxEventSize
	}
	return &Reader{src: r, max: maxEventSize}
}

// Release gives the Reader's buffers back before the stream's end, for a
// caller that has read all it wants (the events after "[DONE]" say
// nothing): the last event may no longer be used, and Next returns io.EOF.
func (r *Reader) Release() {
	if r.err == nil {
		r.end(io.EOF)
	}
}

// end gives the buffers back for good: the caller may no longer use the
// last event.
func (r *Reader) end(err error) error {
	r.err = err
	r.park()
	r.src, r.head, r.headErr = nil, nil, nil
	return err
}

// park gives the buffers back to the pool, keeping none of their bytes.
func (r *Reader) park() {
	if b := r.buffers; b != nil {
		r.buffers = nil
		b.br.Reset(nil)
		if cap(b.raw)+cap(b.data) <= maxPooled {
			b.raw, b.data, b.name = b.raw[:0], b.data[:0], b.name[:0]
			bufferPool.Put(b)
		}
	}
}

// await takes buffers to read the next event with; on a quiet stream it
// first waits for the event's first bytes with the buffers parked. Bytes
// or an error the last wait got that br has not taken yet are kept for
// the new buffers.
func (r *Reader) await() {
	r.park()
	if r.quiet && len(r.head) == 0 && r.headErr == nil {
		if r.wait == nil {
			r.wait = new([waitSize]byte)
		}
		start := time.Now()
		n, err := r.src.Read(r.wait[:])
		r.head, r.headErr = r.wait[:n], err
		r.quiet = time.Since(start) >= quietAfter
	}
	b := bufferPool.Get().(*buffers)
	b.br.Reset((*source)(r))
	r.buffers = b
}

// source is what br reads: the bytes the waiting read got, then the stream.
type source Reader

func (s *source) Read(p []byte) (int, error) {
	if len(s.head) > 0 {
		n := copy(p, s.head)
		s.head = s.head[n:]
		return n, nil
	}
	if err := s.headErr; err != nil {
		s.headErr = nil
		return 0, err
	}
	if s.reads++; s.reads%timeEvery != 1 {
		return s.src.Read(p)
	}
	start := time.Now()
	n, err := s.src.Read(p)
	s.quiet = time.Since(start) >= quietAfter
	return n, err
}

// Next returns the next event. It returns io.EOF when the stream ends
// between events and io.ErrUnexpectedEOF when it ends inside a line. An event
// whose last line is whole but which lacks the closing blank line at the end
// of the stream is still returned, as lenient clients do.
//
// Once it returned an error (io.EOF included) it returns the same again.
func (r *Reader) Next() (Event, error) {
	if r.err != nil {
		return Event{}, r.err
	}
	// Nothing buffered, and the stream was quiet: it may stay so for
	// long, so wait without the buffers. The first Next takes them.
	if r.buffers == nil || (r.quiet && r.br.Buffered() == 0) {
		r.await()
	}
	r.raw, r.data, r.name = r.raw[:0], r.data[:0], r.name[:0]
	hasData := false
	for {
		line, err := r.readLine()
		if err == io.EOF {
			if len(r.raw) == 0 {
				return Event{}, r.end(io.EOF)
			}
			break
		}
		if err != nil {
			return Event{}, r.end(err)
		}
		if line[len(line)-1] != '\n' {
			return Event{}, r.end(io.ErrUnexpectedEOF)
		}
		field := bytes.TrimRight(line, "\r\n")
		if len(field) == 0 {
			if len(r.raw) == len(line) {
				// blank lines between events are not an event
				r.raw = r.raw[:0]
				continue
			}
			break
		}
		if field[0] == ':' {
			continue
		}
		key, value, _ := bytes.Cut(field, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(key) {
		case "data":
			if hasData {
				r.data = append(r.data, '\n')
			}
			r.data = append(r.data, value...)
			hasData = true
		case "event":
			r.name = append(r.name[:0], value...)
		}
	}
	return Event{Raw: r.raw, Name: r.name, Data: r.data}, nil
}

// Ready reports whether a whole event is already buffered, so that the next
// call to Next will not wait on the stream. A relay can then write the
// current event without flushing it, and flush once per burst instead of
// once per event, without delaying any event. A run of blank lines is not
// an event: Next would skip it and wait, so it does not count.
func (r *Reader) Ready() bool {
	if r.buffers == nil {
		return false
	}
	n := r.br.Buffered()
	if n == 0 {
		return false
	}
	b, _ := r.br.Peek(n)
	field := false
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return false
		}
		blank := i == 0 || (i == 1 && b[0] == '\r')
		if blank && field {
			return true
		}
		field = field || !blank
		b = b[i+1:]
	}
}

// readLine appends the next line, newline included, to r.raw and returns
// it. At the end of the stream it returns what is left, without a newline,
// and then io.EOF.
func (r *Reader) readLine() ([]byte, error) {
	start := len(r.raw)
	for {
		chunk, err := r.br.ReadSlice('\n')
		r.raw = append(r.raw, chunk...)
		if len(r.raw) > r.max {
			return nil, fmt.Errorf("%w: over %d bytes", ErrEventTooLarge, r.max)
		}
		switch err {
		case nil:
			return r.raw[start:], nil
		case bufio.ErrBufferFull:
			continue
		case io.EOF:
			if len(r.raw) > start {
				return r.raw[start:], nil
			}
			return nil, io.EOF
		default:
			return nil, err
		}
	}
}
