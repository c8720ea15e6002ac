package auth

import (
	"context"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(MemoryCounters{})
}

// MemoryCounters keeps the limit counters in this process's memory: nothing
// to install, exact under concurrency, but each instance counts on its own,
// so a fleet of N instances lets a key through up to N times its limits (use
// redis there). The counters live in a caddy.UsagePool shared by every
// llm_auth handler of the process, so config reloads keep them; they are
// lost when the process stops. It is the default store.
type MemoryCounters struct {
	state *memoryState
}

// CaddyModule returns the Caddy module information.
func (MemoryCounters) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.auth.limits.memory",
		New: func() caddy.Module { return new(MemoryCounters) },
	}
}

// memoryPool holds the one memoryState of the process.
var memoryPool = caddy.NewUsagePool()

const memoryPoolKey = "llm.auth.limits.memory"

// Provision attaches to the process's counters, creating them on first use.
func (m *MemoryCounters) Provision(caddy.Context) error {
	v, _, err := memoryPool.LoadOrNew(memoryPoolKey, func() (caddy.Destructor, error) {
		return newMemoryState(), nil
	})
	if err != nil {
		return err
	}
	m.state = v.(*memoryState)
	return nil
}

// Cleanup lets go of the counters; the last config using them drops them.
func (m *MemoryCounters) Cleanup() error {
	if m.state != nil {
		_, _ = memoryPool.Delete(memoryPoolKey)
	}
	return nil
}

// Take implements Counters.
func (m *MemoryCounters) Take(_ context.Context, now time.Time, ops []Op, values []int64) (bool, error) {
	return m.state.take(now, ops, values), nil
}

// Give implements Counters. Memory is fast enough to apply the ops at once.
func (m *MemoryCounters) Give(now time.Time, ops []Op) { m.state.give(now, ops) }

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	limits memory
func (m *MemoryCounters) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume module name
	if d.NextArg() || d.NextBlock(d.Nesting()) {
		return d.Err("'limits memory' takes no arguments and no block")
	}
	return nil
}

// memoryState is the process's counters, behind one mutex: a limit check is
// a few map lookups, far shorter than any contention it could cause.
type memoryState struct {
	mu       sync.Mutex
	counters map[string]*memoryCounter
	stop     chan struct{}
}

type memoryCounter struct {
	value   int64
	expires time.Time            // zero: never
	slots   map[string]time.Time // slot → end of its lease; nil for plain counters
}

// sweepEvery is how often forgotten counters are dropped, so that memory
// holds one window per key and limit, not every window since the start.
const sweepEvery = time.Minute

func newMemoryState() *memoryState {
	s := &memoryState{counters: make(map[string]*memoryCounter), stop: make(chan struct{})}
	go s.sweepLoop()
	return s
}

func (s *memoryState) Destruct() error {
	close(s.stop)
	return nil
}

func (s *memoryState) sweepLoop() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.sweep(now)
		}
	}
}

func (s *memoryState) sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, c := range s.counters {
		if c.slots != nil {
			c.pruneSlots(now)
			if len(c.slots) == 0 {
				delete(s.counters, name)
			}
		} else if c.expired(now) {
			delete(s.counters, name)
		}
	}
}

func (c *memoryCounter) expired(now time.Time) bool {
	return !c.expires.IsZero() && !now.Before(c.expires)
}

func (c *memoryCounter) pruneSlots(now time.Time) {
	for id, end := range c.slots {
		if !end.IsZero() && !now.Before(end) {
			delete(c.slots, id)
		}
	}
}

// current returns the live counter of op, or nil when there is none.
func (s *memoryState) current(now time.Time, op *Op) *memoryCounter {
	c := s.counters[op.Name]
	if c == nil {
		return nil
	}
	if op.Slot != "" {
		if c.slots == nil {
			return nil
		}
		c.pruneSlots(now)
		return c
	}
	if c.expired(now) {
		delete(s.counters, op.Name)
		return nil
	}
	return c
}

func (c *memoryCounter) count() int64 {
	if c == nil {
		return 0
	}
	if c.slots != nil {
		return int64(len(c.slots))
	}
	return c.value
}

func (s *memoryState) take(now time.Time, ops []Op, values []int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := true
	for i := range ops {
		op := &ops[i]
		values[i] = s.current(now, op).count()
		add := op.Add
		if op.Slot != "" {
			add = min(add, 1)
		}
		if op.Limit > 0 && values[i]+add > op.Limit {
			ok = false
		}
	}
	if !ok {
		return false
	}
	for i := range ops {
		values[i] = s.apply(now, &ops[i])
	}
	return true
}

func (s *memoryState) give(now time.Time, ops []Op) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range ops {
		if op := &ops[i]; op.Slot != "" || op.Expires.IsZero() || now.Before(op.Expires) {
			s.apply(now, op)
		}
	}
}

// apply changes op's counter and returns its new value.
func (s *memoryState) apply(now time.Time, op *Op) int64 {
	c := s.current(now, op)
	if c == nil {
		if op.Add <= 0 {
			return 0
		}
		c = &memoryCounter{expires: op.Expires}
		if op.Slot != "" {
			c.slots = make(map[string]time.Time)
		}
		s.counters[op.Name] = c
	}
	switch {
	case op.Slot != "" && op.Add > 0:
		c.slots[op.Slot] = op.Expires
	case op.Slot != "":
		delete(c.slots, op.Slot)
	default:
		c.value = max(c.value+op.Add, 0)
	}
	return c.count()
}

// Interface guards
var (
	_ Counters              = (*MemoryCounters)(nil)
	_ caddy.Provisioner     = (*MemoryCounters)(nil)
	_ caddy.CleanerUpper    = (*MemoryCounters)(nil)
	_ caddyfile.Unmarshaler = (*MemoryCounters)(nil)
)
