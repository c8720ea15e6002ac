package auth_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/llmoneapi/llmoneapi/auth"
	"github.com/llmoneapi/llmoneapi/llm"
)

// keyTable is an Authenticator over a map: key -> user, "" for a disabled key.
type keyTable map[string]string

func (t keyTable) Authenticate(_ context.Context, key string) (*llm.Identity, error) {
	user, ok := t[key]
	switch {
	case !ok:
		return nil, nil // not our key: the next authenticator is asked
	case user == "":
		return nil, &auth.Refusal{Code: "api_key_disabled", Reason: "this API key is disabled"}
	}
	return &llm.Identity{User: user, KeyID: "table-" + user}, nil
}

// An Authenticator answers with an identity, with (nil, nil) for a key it
// does not know, or with a *Refusal for a key it knows and refuses; any other
// error means its store could not tell.
func ExampleAuthenticator() {
	var a auth.Authenticator = keyTable{"sk-alice": "alice", "sk-old": ""}
	for _, key := range []string{"sk-alice", "sk-old", "sk-unknown"} {
		id, err := a.Authenticate(context.Background(), key)
		var refusal *auth.Refusal
		switch {
		case errors.As(err, &refusal):
			fmt.Printf("%s: 401 %s\n", key, refusal.Code)
		case id != nil:
			fmt.Printf("%s: user %s, key id %s\n", key, id.User, id.KeyID)
		default:
			fmt.Printf("%s: not mine\n", key)
		}
	}
	// Output:
	// sk-alice: user alice, key id table-alice
	// sk-old: 401 api_key_disabled
	// sk-unknown: not mine
}

// mapCounters is a Counters in maps, for one process; a real store module
// would keep them in a caddy.UsagePool so that they outlive reloads. A
// counter is forgotten when its Expires has passed; a slot counter holds the
// slots whose lease has not ended.
type mapCounters struct {
	mu      sync.Mutex
	counts  map[string]int64
	expires map[string]time.Time
	slots   map[string]map[string]time.Time // counter -> slot -> end of lease
}

func newMapCounters() *mapCounters {
	return &mapCounters{counts: map[string]int64{}, expires: map[string]time.Time{}, slots: map[string]map[string]time.Time{}}
}

// value is the counter's value at now. Called with mu held.
func (m *mapCounters) value(now time.Time, op auth.Op) int64 {
	if op.Slot != "" {
		held := int64(0)
		for _, end := range m.slots[op.Name] {
			if end.IsZero() || now.Before(end) {
				held++
			}
		}
		return held
	}
	if end, ok := m.expires[op.Name]; ok && !end.IsZero() && !now.Before(end) {
		delete(m.counts, op.Name) // its window is over: it starts again from 0
		delete(m.expires, op.Name)
	}
	return m.counts[op.Name]
}

// apply applies one op. Called with mu held.
func (m *mapCounters) apply(now time.Time, op auth.Op) int64 {
	if !op.Expires.IsZero() && !now.Before(op.Expires) {
		return m.value(now, op) // too late: the window has started over
	}
	if op.Slot != "" {
		if m.slots[op.Name] == nil {
			m.slots[op.Name] = map[string]time.Time{}
		}
		if op.Add > 0 {
			m.slots[op.Name][op.Slot] = op.Expires
		} else {
			delete(m.slots[op.Name], op.Slot)
		}
		return m.value(now, op)
	}
	m.counts[op.Name] = max(0, m.value(now, op)+op.Add)
	m.expires[op.Name] = op.Expires
	return m.counts[op.Name]
}

func (m *mapCounters) Take(_ context.Context, now time.Time, ops []auth.Op, values []int64) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fits := true
	for i, op := range ops {
		values[i] = m.value(now, op)
		add := op.Add
		if op.Slot != "" {
			add = 1
		}
		if op.Limit > 0 && values[i]+add > op.Limit {
			fits = false
		}
	}
	if !fits {
		return false, nil // none applied; values say where each counter stands
	}
	for i, op := range ops {
		values[i] = m.apply(now, op)
	}
	return true, nil
}

// Give has nothing slow to wait for here; a networked store would queue.
func (m *mapCounters) Give(now time.Time, ops []auth.Op) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, op := range ops {
		m.apply(now, op)
	}
}

// A Counters applies a request's counter changes in one atomic step, only
// when every limit fits, and reports where each counter stands; Give settles
// afterwards. Here: a key allowed 2 requests a minute, 1 at a time.
func ExampleCounters() {
	var c auth.Counters = newMapCounters()
	now := time.Date(2026, 12, 1, 12, 0, 10, 0, time.UTC)
	take := func(request string) {
		window := now.Truncate(time.Minute)
		ops := []auth.Op{
			{Name: "key:k1:rpm:" + window.Format("1504"), Add: 1, Limit: 2, Expires: window.Add(time.Minute)},
			{Name: "key:k1:concurrent", Add: 1, Limit: 1, Slot: request, Expires: now.Add(10 * time.Minute)},
		}
		values := make([]int64, len(ops))
		ok, err := c.Take(context.Background(), now, ops, values)
		fmt.Printf("%s %s: admitted %v, requests this minute %d, running %d, err %v\n",
			now.Format("15:04"), request, ok, values[0], values[1], err)
	}
	done := func(request string) {
		c.Give(now, []auth.Op{{Name: "key:k1:concurrent", Add: -1, Slot: request}})
	}
	take("r1")
	take("r2") // r1 still runs
	done("r1")
	take("r2")
	done("r2")
	take("r3") // two this minute already
	now = now.Add(time.Minute)
	take("r3")
	// Output:
	// 12:00 r1: admitted true, requests this minute 1, running 1, err <nil>
	// 12:00 r2: admitted false, requests this minute 1, running 1, err <nil>
	// 12:00 r2: admitted true, requests this minute 2, running 1, err <nil>
	// 12:00 r3: admitted false, requests this minute 2, running 0, err <nil>
	// 12:01 r3: admitted true, requests this minute 1, running 1, err <nil>
}
