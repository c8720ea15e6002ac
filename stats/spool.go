package stats

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/llmoneapi/llmoneapi/llm"
)

// spool is an append-only file of records, one JSON object a line, that a
// durable recorder writes to while its store is down or slow and reads back
// in order once the store answers again. The file survives restarts: what
// is in it at start is replayed. Its size is bounded; a record that does not
// fit is dropped.
type spool struct {
	path string
	max  int64

	mu sync.Mutex
	f  *os.File // nil once closed; appends then open the file each time
	// size is the file's length; read is how much of it was replayed.
	size, read int64
}

// openSpool opens (or creates) the spool at path, cutting off a last line
// that a crash left half written.
func openSpool(path string, max int64) (*spool, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the spool's directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the spool: %w", err)
	}
	size, err := completeLength(f)
	if err == nil {
		err = f.Truncate(size)
	}
	if err == nil {
		_, err = f.Seek(size, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening the spool %s: %w", path, err)
	}
	return &spool{path: path, max: max, f: f, size: size}, nil
}

// completeLength is the length of f up to the end of its last full line.
func completeLength(f *os.File) (int64, error) {
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	end := info.Size()
	buf := make([]byte, 4096)
	for end > 0 {
		n := int64(len(buf))
		if n > end {
			n = end
		}
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return end - n + int64(i) + 1, nil
		}
		end -= n
	}
	return 0, nil
}

// errSpoolFull is returned when records do not fit in the spool.
var errSpoolFull = errors.New("the spool is full")

// append writes calls at the end of the spool, all or none of them.
func (s *spool) append(calls []llm.Call) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range calls {
		if err := enc.Encode(&calls[i]); err != nil {
			return fmt.Errorf("encoding a record for the spool: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.size+int64(buf.Len()) > s.max {
		return fmt.Errorf("%w (%d of %d bytes used, %d records dropped): %w", errSpoolFull, s.size, s.max, len(calls), ErrDropped)
	}
	f := s.f
	if f == nil {
		var err error
		if f, err = os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err != nil {
			return fmt.Errorf("opening the spool: %w", err)
		}
		defer f.Close()
	}
	// One write per batch, so a crash tears at most the last line.
	n, err := f.Write(buf.Bytes())
	s.size += int64(n)
	if err != nil {
		return fmt.Errorf("writing to the spool %s: %w", s.path, err)
	}
	return nil
}

// setMax changes the spool's size limit.
func (s *spool) setMax(max int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.max = max
}

// pending reports whether the spool holds records not yet replayed.
func (s *spool) pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.read < s.size
}

// next reads up to n records after those already replayed, and the offset
// to commit once they are stored. Lines that do not decode (a disk error)
// are skipped and counted in bad.
func (s *spool) next(n int) (calls []llm.Call, end int64, bad int, err error) {
	s.mu.Lock()
	from, size := s.read, s.size
	s.mu.Unlock()
	if from >= size {
		return nil, from, 0, nil
	}
	f, err := os.Open(s.path)
	if err != nil {
		return nil, from, 0, fmt.Errorf("reading the spool: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(io.NewSectionReader(f, from, size-from))
	end = from
	for len(calls) < n {
		line, _ := r.ReadBytes('\n')
		if len(line) == 0 || line[len(line)-1] != '\n' {
			break // the end, or a line still being written
		}
		end += int64(len(line))
		var c llm.Call
		if json.Unmarshal(line, &c) != nil {
			bad++
			continue
		}
		calls = append(calls, c)
	}
	return calls, end, bad, nil
}

// commit marks the records up to end as stored, and empties the file once
// everything in it is.
func (s *spool) commit(end int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.read = end
	if s.read < s.size || s.f == nil {
		return nil
	}
	if err := s.f.Truncate(0); err != nil {
		return fmt.Errorf("emptying the spool: %w", err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("emptying the spool: %w", err)
	}
	s.read, s.size = 0, 0
	return nil
}

// close closes the file; records appended later still reach it.
func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}
