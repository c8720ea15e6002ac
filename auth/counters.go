package auth

import (
	"context"
	"errors"
	"time"
)

// Counters is the limit-counter interface: where llm_auth keeps the counts
// behind its keys' rate limits, quotas and budgets. Implementations are
// modules in the llm.auth.limits namespace (the built-in ones are memory and
// redis); a third party adds a store by writing one more.
//
// A counter is an int64 under a name. It starts at 0, and the store may
// forget it once its Op's Expires has passed: llm_auth names a window's
// counter after the window (say "key:ci:rpm:1764581460"), so that a new
// window starts from 0 and the store needs no notion of windows. Budgets are
// counted in micro-USD, everything else in tokens or requests.
//
// A counter whose Op has a Slot is a set of concurrency slots instead: its
// value is the number of slots held whose lease (the Op's Expires) has not
// ended, so that slots of a crashed instance free themselves.
//
// Implementations must be safe for concurrent use and must keep their state
// across config reloads (in a caddy.UsagePool or an external store).
type Counters interface {
	// Take applies ops as one atomic step: if every op with a Limit fits
	// (its counter plus Add stays at or under Limit; for a Slot, the slots
	// held plus this one), every op is applied and Take returns true;
	// otherwise none is and it returns false. Either way values[i] (values
	// has len(ops)) is left holding op i's counter: after the step when it
	// was applied, as it stood when it was refused. It is the only store call
	// on a request's path before the response, so it should be one round
	// trip. An error means the store could not answer: nothing may be
	// assumed applied, and the error should wrap ErrStoreUnavailable.
	Take(ctx context.Context, now time.Time, ops []Op, values []int64) (bool, error)

	// Give applies ops unconditionally, ignoring their Limits: settlements,
	// refunds and slot releases after a response. An op with Add < 0 on a
	// Slot frees that slot; a counter never goes below 0, and an op whose
	// Expires has passed is dropped (its window has started over). Give must
	// not block on a slow store: it may queue and batch the ops, retrying
	// while the store is unreachable.
	Give(now time.Time, ops []Op)
}

// Op is one change to one counter in a Counters call.
type Op struct {
	// Name names the counter. Within one call each name appears once.
	Name string
	// Add is added to the counter; negative gives back. For a Slot, > 0
	// takes the slot and < 0 frees it.
	Add int64
	// Limit, when above 0, is the most the counter may hold after Add for
	// Take to apply its step. 0: no check.
	Limit int64
	// Expires is when the store may forget the counter (the end of its
	// window), or for a Slot when this slot's lease ends. Zero: never.
	Expires time.Time
	// Slot, when set, makes the counter a set of concurrency slots and names
	// the slot this op takes or frees (unique per request).
	Slot string
}

// ErrStoreUnavailable is what a Counters implementation's errors wrap when
// its store cannot be reached; llm_auth then applies on_store_error.
var ErrStoreUnavailable = errors.New("limit store unavailable")
