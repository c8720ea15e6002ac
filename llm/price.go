package llm

import "net/http"

// Price is what a model costs, in USD per million tokens.
type Price struct {
	// Input is the price of a prompt token that was not read from a cache.
	Input float64 `json:"input"`
	// Output is the price of a completion token.
	Output float64 `json:"output"`
	// CachedInput is the price of a prompt token read from the provider's
	// prompt cache; 0 means the same as Input.
	CachedInput float64 `json:"cached_input,omitempty"`
}

// Cost returns what usage u costs at price p, in USD; 0 for a nil price.
func (p *Price) Cost(u Usage) float64 {
	if p == nil {
		return 0
	}
	cachedPrice := p.CachedInput
	if cachedPrice == 0 {
		cachedPrice = p.Input
	}
	cached := min(u.CachedTokens, u.PromptTokens)
	return (float64(u.PromptTokens-cached)*p.Input +
		float64(cached)*cachedPrice +
		float64(u.CompletionTokens)*p.Output) / 1e6
}

// AdmitFunc decides, once the route handler knows which model will serve a
// call and what it costs, whether the call may go ahead; a non-nil Error is
// the client's answer. Handlers that run before llm_route register one (see
// Call.OnAdmit) to check what they could not know earlier: llm_auth reserves
// a token and spend estimate against the key's limits here.
type AdmitFunc func(r *http.Request, c *Call, model string, price *Price) *Error

// OnAdmit registers f to run when the route handler admits the call.
func (c *Call) OnAdmit(f AdmitFunc) { c.admit = append(c.admit, f) }

// Admit runs the registered AdmitFuncs in order and returns the first
// error. The route handler calls it once per call, before the first upstream
// attempt, with the model the client asked for and its price.
func (c *Call) Admit(r *http.Request, model string, price *Price) *Error {
	for _, f := range c.admit {
		if e := f(r, c, model, price); e != nil {
			return e
		}
	}
	return nil
}
