package auth

import (
	"testing"
	"time"
)

// TestPacer: while checks come often a lone check waits; three lone waits
// in a row rest it for batchWaitRest pipelines, each lone wait after a
// rest doubles the rest, and a wait others join ends the doubling.
func TestPacer(t *testing.T) {
	const d = time.Millisecond
	now := time.Now()
	var p pacer
	if p.wait(d, now) {
		t.Fatal("a first check waits")
	}
	p.sent = now
	// waits counts the checks that wait among n, each waiting alone
	// unless joined.
	waits := func(n int, joined bool) int {
		w := 0
		for range n {
			if p.wait(d, now) {
				w++
				p.waited(joined)
			}
		}
		return w
	}
	if w := waits(10, true); w != 10 {
		t.Fatalf("%d of 10 checks that others join waited", w)
	}
	if w := waits(3+batchWaitRest, false); w != 3 {
		t.Fatalf("%d lone checks waited before a rest of %d, want 3", w, batchWaitRest)
	}
	if w := waits(1+2*batchWaitRest, false); w != 1 {
		t.Fatalf("after a rest, %d lone checks waited before a rest of %d, want 1", w, 2*batchWaitRest)
	}
	if w := waits(1+4*batchWaitRest, false); w != 1 {
		t.Fatalf("the rest did not double again (%d waits)", w)
	}
	p.waited(true)
	if p.rest = 0; waits(3+batchWaitRest, false) != 3 {
		t.Fatal("a wait others joined did not end the doubling")
	}
	if p.rest = 0; p.wait(d, now.Add(batchWaitBusy*d)) {
		t.Fatal("a check waited though the last pipeline went long ago")
	}
}
