package auth

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/llmoneapi/llmoneapi/internal/directive"
	"github.com/llmoneapi/llmoneapi/internal/metrics"
	"github.com/llmoneapi/llmoneapi/llm"
)

// LimitSettings are llm_auth's settings for enforcing the keys' limits
// (llm.Limits: rpm, tpm, max_concurrent, quota, budget, which each
// authenticator gives its keys) and the budgets shared by a user's or a
// team's keys.
//
// Windows and periods: rpm and tpm count in fixed one-minute windows aligned
// to the minute (UTC); quotas and budgets in calendar periods in UTC (a
// day from midnight, a week from Monday, a month from its first day), or
// for the key's lifetime when no period is given. Within a window the count
// is exact, also across a fleet sharing Redis; across a window's end a
// client can use up to twice the limit in a short span (the end of one
// window and the start of the next).
//
// All of a call's checks are one store call (Counters.Take): for a key with
// token limits or a budget, when llm_route admits the call; otherwise when
// the key is known. Token limits, quotas and budgets reserve an estimate
// at admission (prompt: the body's length in bytes / 4; completion: the
// request's max_tokens, max_completion_tokens or max_output_tokens, else
// DefaultMaxTokens; the cost of both at the model's price) and settle the
// real usage after the response. A call whose usage stays unknown although
// the client got an answer (a stream cut before its usage) keeps its
// reservation; a call that failed before any answer gives it back.
//
// Over a limit the client gets 429 with Retry-After and OpenAI's error
// shape: code rate_limit_exceeded (type requests for rpm and
// max_concurrent, tokens for tpm) or insufficient_quota (quota and
// budgets). Every answer to a key with rpm carries x-ratelimit-limit-requests,
// x-ratelimit-remaining-requests and x-ratelimit-reset-requests, and to a
// key with tpm the same -tokens trio, in OpenAI's formats ("60", "59",
// "1s", "6m0s").
type LimitSettings struct {
	// Where the counters live: an llm.auth.limits module, memory (the
	// default) or redis. Caddyfile: `limits memory`, `limits redis <url>`.
	LimitsRaw json.RawMessage `json:"limits,omitempty" caddy:"namespace=llm.auth.limits inline_key=store"`

	// What to do when the counters' store cannot answer, per kind of limit.
	// Caddyfile: `on_store_error [rate|quota|budget...] fail_open|fail_closed`.
	OnStoreError StoreErrorPolicy `json:"on_store_error,omitzero"`

	// Budgets shared by all the keys of a user or a team, on top of each
	// key's own. Caddyfile: `budget user|team <name> <usd> [daily|weekly|monthly]`.
	Budgets []SharedBudget `json:"budgets,omitempty"`

	// The completion tokens reserved for a call that names no max_tokens,
	// max_completion_tokens or max_output_tokens. The upstream is not held
	// to it: the call is settled with what it used. Default: 4096.
	// Caddyfile: `default_max_tokens <n>`.
	DefaultMaxTokens int64 `json:"default_max_tokens,omitempty"`

	counters   Counters
	storeName  string
	userBudget map[string][]SharedBudget // "" holds the budgets for every user
	teamBudget map[string][]SharedBudget
	storeState *storeHealth
}

// StoreErrorPolicy says, per kind of limit, whether a call goes ahead
// unchecked (fail_open) or gets 503 limits_unavailable (fail_closed) while
// the counters' store cannot answer. A call checked by several kinds fails
// closed if one of them does.
type StoreErrorPolicy struct {
	// rpm, tpm and max_concurrent. Default: fail_open.
	Rate string `json:"rate,omitempty"`
	// Token quotas. Default: fail_closed.
	Quota string `json:"quota,omitempty"`
	// Spend budgets, the keys' own and shared ones. Default: fail_closed.
	Budget string `json:"budget,omitempty"`
}

// The on_store_error decisions.
const (
	FailOpen   = "fail_open"
	FailClosed = "fail_closed"
)

// SharedBudget is a spend budget shared by the keys of one user or one team.
// Exactly one of User and Team is set; "*" gives every user (or team) a
// budget of its own of that size.
type SharedBudget struct {
	// The user whose keys share the budget, or "*" for each user.
	User string `json:"user,omitempty"`
	// The team whose keys share the budget, or "*" for each team.
	Team string `json:"team,omitempty"`
	// The most spend in USD per period.
	Budget float64 `json:"budget"`
	// daily, weekly, monthly, or "" for all time.
	Period llm.Period `json:"period,omitempty"`
}

const defaultMaxTokens = 4096

// slotLease bounds how long a concurrency slot is held when its release is
// lost (an instance that died mid-call with a shared store).
const slotLease = 30 * time.Minute

// provisionLimits loads the counters' store and checks the limit settings.
func (h *Handler) provisionLimits(ctx caddy.Context) error {
	if h.LimitsRaw == nil {
		h.LimitsRaw = json.RawMessage(`{"store":"memory"}`)
	}
	mod, err := ctx.LoadModule(h, "LimitsRaw")
	if err != nil {
		return fmt.Errorf("loading the limits store: %w", err)
	}
	c, ok := mod.(Counters)
	if !ok {
		return fmt.Errorf("module %s is not a limits store; is %T", caddy.GetModuleID(mod), mod)
	}
	h.counters, h.storeName, h.storeState = c, caddy.GetModuleName(mod), new(storeHealth)
	if h.DefaultMaxTokens == 0 {
		h.DefaultMaxTokens = defaultMaxTokens
	}
	p := &h.OnStoreError
	for _, f := range []struct {
		v   *string
		def string
	}{{&p.Rate, FailOpen}, {&p.Quota, FailClosed}, {&p.Budget, FailClosed}} {
		if *f.v == "" {
			*f.v = f.def
		}
	}
	h.userBudget, h.teamBudget = map[string][]SharedBudget{}, map[string][]SharedBudget{}
	for _, b := range h.Budgets {
		if b.User != "" {
			h.userBudget[wildcard(b.User)] = append(h.userBudget[wildcard(b.User)], b)
		} else {
			h.teamBudget[wildcard(b.Team)] = append(h.teamBudget[wildcard(b.Team)], b)
		}
	}
	return registerLimitMetrics(ctx.GetMetricsRegistry())
}

func wildcard(name string) string {
	if name == "*" {
		return ""
	}
	return name
}

// validateLimits checks the limit settings.
func (h *Handler) validateLimits() error {
	if h.DefaultMaxTokens < 0 {
		return fmt.Errorf("default_max_tokens must not be negative, got %d", h.DefaultMaxTokens)
	}
	for name, v := range map[string]string{"rate": h.OnStoreError.Rate, "quota": h.OnStoreError.Quota, "budget": h.OnStoreError.Budget} {
		if v != FailOpen && v != FailClosed {
			return fmt.Errorf("on_store_error %s: '%s' is neither fail_open nor fail_closed", name, v)
		}
	}
	seen := make(map[SharedBudget]int, len(h.Budgets))
	for i, b := range h.Budgets {
		if (b.User == "") == (b.Team == "") {
			return fmt.Errorf("budget #%d: set exactly one of user and team", i+1)
		}
		// Two budgets of one owner and period would share one counter.
		owner := SharedBudget{User: b.User, Team: b.Team, Period: b.Period}
		if j, dup := seen[owner]; dup {
			return fmt.Errorf("budget #%d: budget #%d is already for the same %s and period", i+1, j+1, ownerName(b))
		}
		seen[owner] = i
		if err := b.Period.Check(); err != nil {
			return fmt.Errorf("budget #%d: %w", i+1, err)
		}
		if !(b.Budget > 0) || math.IsInf(b.Budget, 0) {
			return fmt.Errorf("budget #%d: the budget must be a positive amount of USD, got %v", i+1, b.Budget)
		}
	}
	return nil
}

// checkLimits checks one key's limits; the authenticators call it, and the
// key store before it saves a key.
func checkLimits(l llm.Limits) error {
	for _, f := range []struct {
		name string
		v    int64
	}{{"rpm", l.RPM}, {"tpm", l.TPM}, {"max_concurrent", l.MaxConcurrent}, {"quota", l.Quota}} {
		if f.v < 0 {
			return fmt.Errorf("%s must not be negative, got %d", f.name, f.v)
		}
	}
	if l.Budget < 0 || math.IsNaN(l.Budget) || math.IsInf(l.Budget, 0) {
		return fmt.Errorf("budget must be a non-negative amount of USD, got %v", l.Budget)
	}
	if err := l.QuotaPeriod.Check(); err != nil {
		return fmt.Errorf("quota: %w", err)
	}
	if err := l.BudgetPeriod.Check(); err != nil {
		return fmt.Errorf("budget: %w", err)
	}
	return nil
}

func ownerName(b SharedBudget) string {
	if b.User != "" {
		return "user '" + b.User + "'"
	}
	return "team '" + b.Team + "'"
}

// parseLimit parses the key subdirective d is on if it is a limit (rpm,
// tpm, max_concurrent, quota, budget) into l, and reports whether it was.
// Syntax:
//
//	rpm            <requests per minute>
//	tpm            <tokens per minute>
//	max_concurrent <requests>
//	quota          <tokens> [daily|weekly|monthly]
//	budget         <usd>    [daily|weekly|monthly]
func parseLimit(d *caddyfile.Dispenser, l *llm.Limits) (bool, error) {
	name := d.Val()
	switch name {
	case "rpm", "tpm", "max_concurrent", "quota":
		args := d.RemainingArgs()
		if len(args) < 1 || len(args) > 2 || (len(args) == 2 && name != "quota") {
			return true, d.ArgErr()
		}
		n, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil || n <= 0 {
			return true, d.Errf("%s: '%s' is not a positive whole number", name, args[0])
		}
		switch name {
		case "rpm":
			l.RPM = n
		case "tpm":
			l.TPM = n
		case "max_concurrent":
			l.MaxConcurrent = n
		case "quota":
			l.Quota = n
			if len(args) == 2 {
				l.QuotaPeriod = llm.Period(args[1])
			}
			if err := l.QuotaPeriod.Check(); err != nil {
				return true, d.Errf("quota: %v", err)
			}
		}
		return true, nil
	case "budget":
		usd, period, err := parseBudget(d, d.RemainingArgs())
		l.Budget, l.BudgetPeriod = usd, period
		return true, err
	}
	return false, nil
}

// parseBudget parses "<usd> [daily|weekly|monthly]".
func parseBudget(d *caddyfile.Dispenser, args []string) (float64, llm.Period, error) {
	if len(args) < 1 || len(args) > 2 {
		return 0, "", d.Err("budget takes an amount of USD and an optional period: 'budget <usd> [daily|weekly|monthly]'")
	}
	usd, err := strconv.ParseFloat(args[0], 64)
	if err != nil || !(usd > 0) || math.IsInf(usd, 0) {
		return 0, "", d.Errf("budget: '%s' is not a positive amount of USD", args[0])
	}
	var p llm.Period
	if len(args) == 2 {
		p = llm.Period(args[1])
	}
	if err := p.Check(); err != nil {
		return 0, "", d.Errf("budget: %v", err)
	}
	return usd, p, nil
}

// unmarshalLimitSetting parses the llm_auth subdirective d is on if it is a
// limit setting, and reports whether it was. Syntax:
//
//	limits <store> [<args...>]
//	on_store_error [rate|quota|budget...] fail_open|fail_closed
//	budget user|team <name>|* <usd> [daily|weekly|monthly]
//	default_max_tokens <tokens>
func (h *Handler) unmarshalLimitSetting(d *caddyfile.Dispenser) (bool, error) {
	switch d.Val() {
	case "limits":
		if h.LimitsRaw != nil {
			return true, d.Err("'limits' may be given once")
		}
		if !d.NextArg() {
			return true, d.Err("'limits' needs a store: 'limits memory' or 'limits redis <url>'")
		}
		mod, raw, err := directive.Guest(d, "llm_auth limits", "llm.auth.limits", "store", "limits store")
		if err != nil {
			return true, err
		}
		if _, ok := mod.(Counters); !ok {
			return true, d.Errf("module %T is not a limits store", mod)
		}
		h.LimitsRaw = raw
	case "on_store_error":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return true, d.Err("'on_store_error' needs fail_open or fail_closed, after the kinds of limit it is for (rate, quota, budget; default all)")
		}
		mode := args[len(args)-1]
		if mode != FailOpen && mode != FailClosed {
			return true, d.Errf("on_store_error: '%s' is neither fail_open nor fail_closed", mode)
		}
		kinds := args[:len(args)-1]
		if len(kinds) == 0 {
			kinds = []string{"rate", "quota", "budget"}
		}
		for _, k := range kinds {
			switch k {
			case "rate":
				h.OnStoreError.Rate = mode
			case "quota":
				h.OnStoreError.Quota = mode
			case "budget":
				h.OnStoreError.Budget = mode
			default:
				return true, d.Errf("on_store_error: '%s' is not a kind of limit: rate (rpm, tpm, max_concurrent), quota or budget", k)
			}
		}
	case "budget":
		args := d.RemainingArgs()
		if len(args) < 3 || (args[0] != "user" && args[0] != "team") {
			return true, d.Err("budget takes 'user' or 'team', a name (or *), an amount of USD and an optional period: 'budget team ml 500 monthly'")
		}
		usd, period, err := parseBudget(d, args[2:])
		if err != nil {
			return true, err
		}
		b := SharedBudget{Budget: usd, Period: period}
		if args[0] == "user" {
			b.User = args[1]
		} else {
			b.Team = args[1]
		}
		h.Budgets = append(h.Budgets, b)
	case "default_max_tokens":
		var s string
		if !d.AllArgs(&s) {
			return true, d.ArgErr()
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return true, d.Errf("default_max_tokens: '%s' is not a whole number of tokens", s)
		}
		h.DefaultMaxTokens = n
	default:
		return false, nil
	}
	return true, nil
}

// limit is one limit a call is held to, with its counter.
type limit struct {
	kind  limitKind
	op    Op
	reset time.Time // when the counter starts over; zero: never
}

type limitKind uint8

const (
	limitRPM limitKind = iota
	limitConcurrency
	limitTPM
	limitQuota
	limitBudget // a key's own budget
	limitSharedBudget
)

var limitNames = [...]string{"rpm", "max_concurrent", "tpm", "quota", "budget", "shared_budget"}

// policy returns the on_store_error decision for k.
func (p *StoreErrorPolicy) policy(k limitKind) string {
	switch k {
	case limitQuota:
		return p.Quota
	case limitBudget, limitSharedBudget:
		return p.Budget
	}
	return p.Rate
}

// limited is the limit state of one call, from the check up front to the
// settlement after the response.
type limited struct {
	h    *Handler
	id   *llm.Identity
	w    http.ResponseWriter
	slot *limit // the concurrency slot held, if any

	// The rpm and max_concurrent checks left for the admission's store
	// call, so that a call llm_route admits costs one round trip.
	pending []limit

	// What the admission reserved, to settle, or to charge in full when it
	// could not (the store failed open).
	admitted bool
	charges  []limit
	tokens   int64 // tokens reserved
	cost     int64 // micro-USD reserved
	price    *llm.Price
}

// serveLimited holds the call to its key's limits around next: rpm and
// concurrency up front, tokens and spend reserved at admission and settled
// after the response.
func (h *Handler) serveLimited(w http.ResponseWriter, r *http.Request, id *llm.Identity, next caddyhttp.Handler) error {
	lim := id.Limits
	shared := h.sharedBudgets(id)
	if lim.IsZero() && len(shared) == 0 {
		return next.ServeHTTP(w, r)
	}
	call := llm.CallFrom(r)
	now := time.Now()
	s := &limited{h: h, id: id, w: w}

	// A call that llm_route will admit has all its checks made in one store
	// call at admission; the others (no token limits, no body) are checked
	// here.
	deferred := (lim.TPM > 0 || lim.Quota > 0 || lim.Budget > 0 || len(shared) > 0) && hasBody(r.Method)
	var up [3]limit
	checks := up[:0]
	if lim.RPM > 0 {
		start := now.Truncate(time.Minute)
		checks = append(checks, h.windowed(limitRPM, id, "rpm", start, start.Add(time.Minute), 1, lim.RPM))
	}
	if lim.MaxConcurrent > 0 {
		slot := callSlot(call)
		checks = append(checks, limit{kind: limitConcurrency, op: Op{
			Name: "key:" + id.KeyID + ":concurrent", Add: 1, Limit: lim.MaxConcurrent,
			Expires: now.Add(slotLease), Slot: slot,
		}})
	}
	if lim.TPM > 0 && !deferred {
		// Read only, for the headers and to refuse a key already over.
		start := now.Truncate(time.Minute)
		checks = append(checks, h.windowed(limitTPM, id, "tpm", start, start.Add(time.Minute), 0, lim.TPM))
	}
	if deferred {
		s.pending = checks
	} else if len(checks) > 0 {
		applied, values, e := s.take(r, now, checks)
		if e != nil {
			e.Write(w, r)
			return nil
		}
		if values != nil {
			s.headers(now, checks, values)
		}
		if applied {
			for i := range checks {
				if checks[i].kind == limitConcurrency {
					s.slot = &checks[i]
				}
			}
		} else if values != nil {
			s.refusal(now, checks, values).Write(w, r)
			return nil
		}
	}

	defer s.settle(call)
	if lim.TPM > 0 || lim.Quota > 0 || lim.Budget > 0 || len(shared) > 0 {
		call.OnAdmit(s.admit)
	}
	return next.ServeHTTP(w, r)
}

// take runs one Take. It returns applied=false with nil values when the
// store failed open, and an error ready to send when it failed closed.
func (s *limited) take(r *http.Request, now time.Time, checks []limit) (bool, []int64, *llm.Error) {
	ops := make([]Op, len(checks))
	for i := range checks {
		ops[i] = checks[i].op
	}
	values := make([]int64, len(ops))
	applied, err := s.h.counters.Take(r.Context(), now, ops, values)
	if err == nil {
		s.h.storeState.ok(s.h)
		return applied, values, nil
	}
	if r.Context().Err() != nil {
		// The client went away during the check: not the store's fault,
		// and nobody to answer.
		return false, nil, llm.Errorf(http.StatusServiceUnavailable, llm.TypeServer, "client_gone", "the request was cancelled")
	}
	decision := FailOpen
	for i := range checks {
		if s.h.OnStoreError.policy(checks[i].kind) == FailClosed {
			decision = FailClosed
		}
	}
	limitMetrics.storeErrors.WithLabelValues(s.h.storeName, decision).Inc()
	s.h.storeState.failed(s.h, err, decision, llm.CallFrom(r).ID)
	if decision == FailOpen {
		return false, nil, nil
	}
	s.w.Header().Set("Retry-After", "1")
	return false, nil, llm.Errorf(http.StatusServiceUnavailable, llm.TypeServer, "limits_unavailable",
		"the gateway cannot check this key's limits right now; try again shortly")
}

// admit reserves the call's token and spend estimate; llm_route calls it
// through llm.Call.Admit once it knows the model and its price.
func (s *limited) admit(r *http.Request, c *llm.Call, _ string, price *llm.Price) *llm.Error {
	now := time.Now()
	lim := s.id.Limits
	prompt, completion := s.h.estimate(c, lim.TPM)
	tokens := prompt + completion
	cost := microUSD(price.Cost(llm.Usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: tokens}))
	s.tokens, s.cost, s.price = tokens, cost, price

	charges := s.pending
	s.pending = nil
	if lim.TPM > 0 {
		start := now.Truncate(time.Minute)
		charges = append(charges, s.h.windowed(limitTPM, s.id, "tpm", start, start.Add(time.Minute), tokens, lim.TPM))
	}
	if lim.Quota > 0 {
		start, end := periodOf(lim.QuotaPeriod, now)
		charges = append(charges, s.h.windowed(limitQuota, s.id, "quota:"+periodName(lim.QuotaPeriod), start, end, tokens, lim.Quota))
	}
	if lim.Budget > 0 {
		start, end := periodOf(lim.BudgetPeriod, now)
		charges = append(charges, s.h.windowed(limitBudget, s.id, "budget:"+periodName(lim.BudgetPeriod), start, end, cost, microUSD(lim.Budget)))
	}
	for _, b := range s.h.sharedBudgets(s.id) {
		start, end := periodOf(b.Period, now)
		owner := "user:" + s.id.User
		if b.Team != "" {
			owner = "team:" + s.id.Team
		}
		charges = append(charges, limit{kind: limitSharedBudget, reset: end, op: Op{
			Name: owner + ":budget:" + periodName(b.Period) + ":" + strconv.FormatInt(start.Unix(), 10),
			Add:  cost, Limit: microUSD(b.Budget), Expires: end,
		}})
	}
	s.charges = charges
	applied, values, e := s.take(r, now, charges)
	if e != nil {
		return e
	}
	if values == nil {
		return nil // failed open: settle charges the real usage in full
	}
	s.headers(now, charges, values)
	if !applied {
		return s.refusal(now, charges, values)
	}
	s.admitted = true
	for i := range charges {
		if charges[i].kind == limitConcurrency {
			s.slot = &charges[i]
		}
	}
	return nil
}

// settle charges the call's real usage (or keeps its reservation when the
// usage is unknown) and frees its concurrency slot. It runs after the
// response, panics included.
func (s *limited) settle(c *llm.Call) {
	ops := make([]Op, 0, len(s.charges)+1)
	if s.slot != nil {
		release := s.slot.op
		release.Add = -1
		ops = append(ops, release)
	}
	for _, p := range s.pending {
		// Never admitted (llm_route refused the call earlier, or is not
		// behind this handler): the request still counts against rpm.
		if p.kind == limitRPM {
			p.op.Limit = 0
			ops = append(ops, p.op)
		}
	}
	if s.charges != nil {
		tokens, cost := s.used(c)
		for _, ch := range s.charges {
			op := ch.op
			var used int64
			switch ch.kind {
			case limitRPM, limitConcurrency:
				continue
			case limitBudget, limitSharedBudget:
				used = cost
			default:
				used = tokens
			}
			if s.admitted {
				used -= op.Add // settle against the reservation
			}
			if used == 0 {
				continue
			}
			op.Add, op.Limit = used, 0
			ops = append(ops, op)
		}
	}
	if len(ops) > 0 {
		s.h.counters.Give(time.Now(), ops)
	}
}

// used returns the tokens and micro-USD the call is charged.
func (s *limited) used(c *llm.Call) (int64, int64) {
	u := c.Usage
	tokens := u.Total()
	if c.UsageSource == llm.UsageNone && tokens == 0 {
		// No usage came and llm_route counted none (a stream cut before
		// any text; cut streams with text are settled at their counted,
		// partial usage). If the client got an answer, the upstream did
		// the work: keep the estimate.
		if s.admitted && (c.Truncated || c.ClientAborted || (c.Status > 0 && c.Status < 400)) {
			return s.tokens, s.cost
		}
		return 0, 0
	}
	cost := c.Cost
	if cost == 0 {
		cost = s.price.Cost(u)
	}
	return tokens, microUSD(cost)
}

// estimate returns the call's prompt and completion token estimates. A
// call that names no max_tokens reserves DefaultMaxTokens, but never more
// than a key's tpm leaves after the prompt: otherwise a key with a small
// tpm could make no call at all without max_tokens. Settling charges the
// real usage either way.
func (h *Handler) estimate(c *llm.Call, tpm int64) (prompt, completion int64) {
	if c.Request == nil {
		return 0, h.DefaultMaxTokens
	}
	body := c.Request.Body
	prompt = int64(len(body)+3) / 4
	// Embeddings and token counts generate nothing.
	if c.Endpoint == llm.EndpointEmbeddings || c.Endpoint == llm.EndpointCountTokens {
		return prompt, 0
	}
	completion = -1
	_ = llm.ScanObject(body, func(key []byte, v llm.Span) error {
		switch string(key) {
		case "max_tokens", "max_completion_tokens", "max_output_tokens":
			if n, err := strconv.ParseInt(string(body[v.Start:v.End]), 10, 64); err == nil && n >= 0 {
				completion = max(completion, n)
			}
		}
		return nil
	})
	if completion < 0 {
		completion = h.DefaultMaxTokens
		if tpm > 0 {
			completion = max(0, min(completion, tpm-prompt))
		}
	}
	return prompt, completion
}

// sharedBudgets returns the user and team budgets that id's calls count
// against.
func (h *Handler) sharedBudgets(id *llm.Identity) []SharedBudget {
	if len(h.Budgets) == 0 {
		return nil
	}
	var out []SharedBudget
	if id.User != "" {
		if b, ok := h.userBudget[id.User]; ok {
			out = append(out, b...)
		} else {
			out = append(out, h.userBudget[""]...)
		}
	}
	if id.Team != "" {
		if b, ok := h.teamBudget[id.Team]; ok {
			out = append(out, b...)
		} else {
			out = append(out, h.teamBudget[""]...)
		}
	}
	return out
}

// windowed returns a key's limit counted in the window [start, end).
func (h *Handler) windowed(kind limitKind, id *llm.Identity, what string, start, end time.Time, add, most int64) limit {
	name := "key:" + id.KeyID + ":" + what
	if !start.IsZero() {
		name += ":" + strconv.FormatInt(start.Unix(), 10)
	}
	return limit{kind: kind, reset: end, op: Op{Name: name, Add: add, Limit: most, Expires: end}}
}

// periodOf returns the calendar period p that holds now, in UTC; zero times
// for the lifetime.
func periodOf(p llm.Period, now time.Time) (start, end time.Time) {
	now = now.UTC()
	y, m, d := now.Date()
	switch p {
	case llm.PeriodDaily:
		start = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 1)
	case llm.PeriodWeekly:
		back := (int(now.Weekday()) + 6) % 7 // days since Monday
		start = time.Date(y, m, d-back, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 7)
	case llm.PeriodMonthly:
		start = time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	}
	return time.Time{}, time.Time{}
}

func periodName(p llm.Period) string {
	if p == llm.PeriodLifetime {
		return "lifetime"
	}
	return string(p)
}

// microUSD converts USD to whole micro-USD, rounding up so that a reservation
// never comes out smaller than its cost.
func microUSD(usd float64) int64 { return int64(math.Ceil(usd*1e6 - 1e-6)) }

// callSlot returns the name of the call's concurrency slot: the request's
// unique id, unique across a fleet.
func callSlot(c *llm.Call) string {
	if c.ID != "" {
		return c.ID
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// headers sets OpenAI's x-ratelimit-* headers from the rpm and tpm counters
// among checks. They are set before the response starts, so every answer
// carries them; a later step overwrites them with fresher values. The keys
// are in canonical form and the values share one array, so that a call
// pays for its numbers only.
func (s *limited) headers(now time.Time, checks []limit, values []int64) {
	h := s.w.Header()
	var vals []string
	for i, l := range checks {
		var keys *[3]string
		switch l.kind {
		case limitRPM:
			keys = &rateHeaders[0]
		case limitTPM:
			keys = &rateHeaders[1]
		default:
			continue
		}
		if vals == nil {
			vals = make([]string, 0, 3*len(rateHeaders))
		}
		for j, v := range [3]string{strconv.FormatInt(l.op.Limit, 10),
			strconv.FormatInt(max(l.op.Limit-values[i], 0), 10), resetString(l.reset.Sub(now))} {
			vals = append(vals, v)
			h[keys[j]] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
	}
}

// rateHeaders are the limit, remaining and reset headers of requests and of
// tokens.
var rateHeaders = [2][3]string{
	{"X-Ratelimit-Limit-Requests", "X-Ratelimit-Remaining-Requests", "X-Ratelimit-Reset-Requests"},
	{"X-Ratelimit-Limit-Tokens", "X-Ratelimit-Remaining-Tokens", "X-Ratelimit-Reset-Tokens"},
}

// resetString formats a time to reset as OpenAI does ("1s", "6m0s",
// "20ms"), rounded up to the millisecond.
func resetString(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	return (d + time.Millisecond - 1).Truncate(time.Millisecond).String()
}

// refusal returns the 429 for the first limit among checks that did not fit,
// and sets Retry-After.
func (s *limited) refusal(now time.Time, checks []limit, values []int64) *llm.Error {
	i := 0
	for j, l := range checks {
		add := l.op.Add
		if l.kind == limitConcurrency {
			add = 1
		}
		if l.op.Limit > 0 && values[j]+add > l.op.Limit {
			i = j
			break
		}
	}
	l, used := checks[i], values[i]
	limitMetrics.limited.WithLabelValues(limitNames[l.kind]).Inc()
	if l.kind == limitConcurrency {
		s.w.Header().Set("Retry-After", "1")
	} else if !l.reset.IsZero() {
		secs := int64(math.Ceil(l.reset.Sub(now).Seconds()))
		s.w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	}
	key := s.id.KeyID
	var typ, code, msg string
	switch l.kind {
	case limitRPM:
		typ, code = "requests", "rate_limit_exceeded"
		msg = fmt.Sprintf("Rate limit reached for key %s on requests per min (RPM): Limit %d, Used %d, Requested 1. Please try again in %s.",
			key, l.op.Limit, used, resetString(l.reset.Sub(now)))
	case limitConcurrency:
		typ, code = "requests", "rate_limit_exceeded"
		msg = fmt.Sprintf("Too many concurrent requests for key %s: Limit %d, In flight %d. Please try again when one of them is done.",
			key, l.op.Limit, used)
	case limitTPM:
		typ, code = "tokens", "rate_limit_exceeded"
		msg = fmt.Sprintf("Rate limit reached for key %s on tokens per min (TPM): Limit %d, Used %d, Requested %d. Please try again in %s.",
			key, l.op.Limit, used, l.op.Add, resetString(l.reset.Sub(now)))
		if l.op.Add > l.op.Limit {
			msg = fmt.Sprintf("Request too large for key %s on tokens per min (TPM): Limit %d, Requested %d (prompt estimate plus max_tokens). Lower max_tokens or shorten the prompt.",
				key, l.op.Limit, l.op.Add)
		}
	case limitQuota:
		typ, code = "insufficient_quota", "insufficient_quota"
		msg = fmt.Sprintf("You exceeded the token quota of key %s: Limit %d, Used %d, Requested %d%s.",
			key, l.op.Limit, used, l.op.Add, renews(l.reset))
	default:
		owner := "key " + key
		if l.kind == limitSharedBudget {
			owner = "the budget shared with this key"
		}
		typ, code = "insufficient_quota", "insufficient_quota"
		msg = fmt.Sprintf("You exceeded the spend budget of %s: Limit $%s, Used $%s, Requested $%s%s.",
			owner, usd(l.op.Limit), usd(used), usd(l.op.Add), renews(l.reset))
	}
	return llm.Errorf(http.StatusTooManyRequests, typ, code, "%s", msg)
}

func renews(reset time.Time) string {
	if reset.IsZero() {
		return "; it does not renew"
	}
	return "; it renews at " + reset.UTC().Format(time.RFC3339)
}

func usd(micro int64) string { return strconv.FormatFloat(float64(micro)/1e6, 'f', -1, 64) }

// storeHealth logs a failing store once when it starts failing, at most
// every storeLogEvery while it fails, and once when it is back.
type storeHealth struct {
	failing atomic.Bool
	lastLog atomic.Int64
}

const storeLogEvery = 10 * time.Second

func (sh *storeHealth) failed(h *Handler, err error, decision, requestID string) {
	now := time.Now().UnixNano()
	last := sh.lastLog.Load()
	if sh.failing.Swap(true) && now-last < int64(storeLogEvery) {
		return
	}
	if !sh.lastLog.CompareAndSwap(last, now) {
		return
	}
	h.logger.Error("the limits store cannot answer; calls go on as on_store_error says",
		zap.String("store", h.storeName), zap.String("decision", decision),
		zap.String("request_id", requestID), zap.Error(err))
}

func (sh *storeHealth) ok(h *Handler) {
	if sh.failing.Load() && sh.failing.Swap(false) {
		h.logger.Info("the limits store answers again", zap.String("store", h.storeName))
	}
}

// limitMetrics are package-level so that their values survive config reloads;
// each config's registry gets the same collectors.
var limitMetrics struct {
	once        sync.Once
	storeErrors *prometheus.CounterVec
	limited     *prometheus.CounterVec
}

func registerLimitMetrics(reg *prometheus.Registry) error {
	limitMetrics.once.Do(func() {
		limitMetrics.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "llmoneapi", Subsystem: "auth", Name: "limit_store_errors_total",
			Help: "Limit checks the limits store could not answer, by store module and on_store_error decision (fail_open, fail_closed).",
		}, []string{"store", "decision"})
		limitMetrics.limited = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "llmoneapi", Subsystem: "auth", Name: "limited_total",
			Help: "Calls refused with 429 by a key's limits, by limit (rpm, tpm, max_concurrent, quota, budget, shared_budget).",
		}, []string{"limit"})
	})
	if err := metrics.Register(reg, limitMetrics.storeErrors, limitMetrics.limited); err != nil {
		return fmt.Errorf("registering limit metrics: %w", err)
	}
	return nil
}
