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
)

// DefaultMaxEventSize bounds one event when a Reader is made with no limit.
const DefaultMaxEventSize = 4 << 20

// ErrEventTooLarge is returned for an event over the Reader's limit.
var ErrEventTooLarge = errors.New("sse: event too large")

// Event is one server-sent event. Its slices point into the Reader's buffer
// and are valid only until the next call to Next.
type Event struct {
	// Raw is the event as it arrived, blank line included.
	Raw []byte
	// Name is the value of the "event:" field, if any.
	Name []byte
	// Data is the values of the "data:" fields joined by newlines.
	Data []byte
}

// Reader reads events from a stream.
type Reader struct {
	br   *bufio.Reader
	max  int
	raw  []byte
	data []byte
	name []byte
}

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
	return &Reader{br: bufio.NewReaderSize(r, readBufferSize), max: maxEventSize}
}

// Next returns the next event. It returns io.EOF when the stream ends
// between events and io.ErrUnexpectedEOF when it ends inside a line. An event
// whose last line is whole but which lacks the closing blank line at the end
// of the stream is still returned, as lenient clients do.
func (r *Reader) Next() (Event, error) {
	r.raw, r.data, r.name = r.raw[:0], r.data[:0], r.name[:0]
	hasData := false
	for {
		line, err := r.readLine()
		if err == io.EOF {
			if len(r.raw) == 0 {
				return Event{}, io.EOF
			}
			break
		}
		if err != nil {
			return Event{}, err
		}
		if line[len(line)-1] != '\n' {
			return Event{}, io.ErrUnexpectedEOF
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
