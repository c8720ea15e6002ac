package llm

import (
	"math"
	"net/http"
	"testing"
)

func TestPriceCost(t *testing.T) {
	u := Usage{PromptTokens: 1_000_000, CompletionTokens: 500_000, CachedTokens: 400_000}
	p := &Price{Input: 2, Output: 8, CachedInput: 0.5}
	// 600k uncached at $2, 400k cached at $0.5, 500k out at $8.
	if got, want := p.Cost(u), 1.2+0.2+4.0; math.Abs(got-want) > 1e-9 {
		t.Errorf("cost %v, want %v", got, want)
	}
	noCachePrice := &Price{Input: 2, Output: 8}
	if got, want := noCachePrice.Cost(u), 2.0+4.0; math.Abs(got-want) > 1e-9 {
		t.Errorf("without a cached price, cost %v, want %v", got, want)
	}
	var none *Price
	if none.Cost(u) != 0 {
		t.Error("a nil price must cost nothing")
	}
}

func TestAdmitRunsInOrderAndStops(t *testing.T) {
	c := &Call{}
	var ran []string
	c.OnAdmit(func(_ *http.Request, _ *Call, model string, _ *Price) *Error {
		ran = append(ran, "first:"+model)
		return Errorf(http.StatusTooManyRequests, TypeRateLimit, "rate_limit_exceeded", "slow down")
	})
	c.OnAdmit(func(*http.Request, *Call, string, *Price) *Error {
		ran = append(ran, "second")
		return nil
	})
	e := c.Admit(nil, "gpt-4o", nil)
	if e == nil || e.Status != http.StatusTooManyRequests || len(ran) != 1 || ran[0] != "first:gpt-4o" {
		t.Fatalf("Admit = %v after %v", e, ran)
	}
}
