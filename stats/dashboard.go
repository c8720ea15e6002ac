package stats

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/llmoneapi/llmoneapi/internal/adminapi"
)

func init() {
	caddy.RegisterModule(Dashboard{})
	adminapi.Handle("/llm/", caddy.AdminHandlerFunc(serveAdminDashboard))
}

// Dashboard is the llm_dashboard HTTP handler: the gateway's usage
// dashboard, one HTML page with requests, tokens, cost and latency over
// time per model or user, the top users and keys, the models, and the
// health of the upstreams. It answers every GET or HEAD that reaches it
// (mount it with a matcher or in a handle block), from the stats of the
// running config: the database recorder when one is configured, else the
// memory recorder. The same page is served on Caddy's admin endpoint at
// /llm/.
//
// The page is drawn on the server: its charts are inline SVG, its style
// is embedded, it loads nothing else and runs no script, so it works
// offline. It shows who uses the gateway, so protect it: put it behind
// basic_auth, or llm_auth, on a site of its own.
//
// Query parameters: range (1h, 24h, 7d or 30d; default 24h) and by
// (model or user: how the time charts are split; default model).
type Dashboard struct {
	// The title at the top of the page and in the browser's tab.
	// Default: "LLM gateway".
	Title string `json:"title,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Dashboard) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.llm_dashboard",
		New: func() caddy.Module { return new(Dashboard) },
	}
}

// ServeHTTP implements caddyhttp.MiddlewareHandler. It answers every
// request and never calls next.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed,
			fmt.Errorf("method %s not allowed: the dashboard answers GET", r.Method))
	}
	rng, by, err := parsePageParams(r.URL.Query())
	if err != nil {
		return caddyhttp.Error(http.StatusBadRequest, err)
	}
	status, body, err := renderDashboard(r.Context(), rng, by, d.Title, false, time.Now())
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	writePage(w, status, body)
	return nil
}

// serveAdminDashboard serves the page at /llm/ on the admin endpoint. The
// pattern is a subtree, so other paths under /llm/ that no route claims
// end here and get a 404.
func serveAdminDashboard(w http.ResponseWriter, r *http.Request) error {
	if r.URL.Path != "/llm/" {
		return adminapi.Error(http.StatusNotFound, "no admin route %s; the dashboard is at /llm/ and the stats at /llm/stats", r.URL.Path)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return adminapi.Error(http.StatusMethodNotAllowed, "method %s not allowed: the dashboard answers GET", r.Method)
	}
	rng, by, err := parsePageParams(r.URL.Query())
	if err != nil {
		return adminapi.Error(http.StatusBadRequest, "%v", err)
	}
	status, body, err := renderDashboard(r.Context(), rng, by, "", true, time.Now())
	if err != nil {
		return err // Caddy's admin server answers it with a 500
	}
	writePage(w, status, body)
	return nil
}

// writePage sends a rendered page with headers that keep it to itself: no
// script may run, only the page's own style applies, nothing is loaded
// from elsewhere, and the page is never cached (it shows live numbers).
func writePage(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	llm_dashboard [<matcher>] [{
//	    title <text>
//	}]
func (d *Dashboard) UnmarshalCaddyfile(disp *caddyfile.Dispenser) error {
	disp.Next() // consume directive name
	if disp.NextArg() {
		return disp.ArgErr()
	}
	for nesting := disp.Nesting(); disp.NextBlock(nesting); {
		switch disp.Val() {
		case "title":
			if !disp.NextArg() {
				return disp.ArgErr()
			}
			d.Title = disp.Val()
			if disp.NextArg() {
				return disp.ArgErr()
			}
		default:
			return disp.Errf("unknown llm_dashboard subdirective '%s': the only one is title", disp.Val())
		}
	}
	return nil
}

// ParseDashboardCaddyfile sets up an llm_dashboard handler from Caddyfile
// tokens, for httpcaddyfile.RegisterHandlerDirective.
func ParseDashboardCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	d := new(Dashboard)
	if err := d.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return d, nil
}

// The page's template and style, embedded in the binary.
var (
	//go:embed web/dashboard.html web/dashboard.css
	webFiles embed.FS

	pageTemplate = template.Must(template.New("dashboard.html").Funcs(template.FuncMap{
		"comma":   humanize.Comma,
		"usd":     formatUSD,
		"seconds": formatSeconds,
		"percent": formatPercent,
	}).ParseFS(webFiles, "web/dashboard.html"))

	pageCSS = func() string {
		b, err := webFiles.ReadFile("web/dashboard.css")
		if err != nil {
			panic(err)
		}
		return string(b)
	}()

	// pageCSP allows the page's own style sheet, by its hash, and nothing
	// else: no script, no request to anywhere.
	pageCSP = func() string {
		sum := sha256.Sum256([]byte(pageCSS))
		return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
			"'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	}()
)

// dashboardRange is one of the time ranges the page offers, with the
// length of its chart slots and how far apart the time labels are.
type dashboardRange struct {
	Name, Label string
	Length      time.Duration
	Step        time.Duration
	TickEvery   time.Duration
}

// The slots are those the memory recorder keeps (minutes for the last
// hour, hours for the last day) or whole multiples of them, so that its
// answers fill the slots evenly.
var dashboardRanges = []dashboardRange{
	{"1h", "hour", time.Hour, time.Minute, 10 * time.Minute},
	{"24h", "24 hours", 24 * time.Hour, time.Hour, 4 * time.Hour},
	{"7d", "7 days", 7 * 24 * time.Hour, 6 * time.Hour, 24 * time.Hour},
	{"30d", "30 days", 30 * 24 * time.Hour, 24 * time.Hour, 5 * 24 * time.Hour},
}

const defaultRange = "24h"

// topRows is how many users and keys the page lists.
const topRows = 10

// page is what the template draws.
type page struct {
	Title  string
	CSS    template.CSS
	Ranges []choice
	Splits []choice
	// RangeLabel is the chosen range in words; By is the chosen split.
	RangeLabel, By string
	// Notice explains an empty or failed page.
	Notice string
	// Source is the module that answered, e.g. llm.stats.memory.
	Source string
	// Generated is when the page was drawn, in UTC.
	Generated string
	Tiles     []tile
	Charts    []*chart
	Users     tableView
	Keys      tableView
	Models    tableView
	Upstreams []tableRow
	Health    *chart
	// APILinks are the stats API's addresses for the same range, on the
	// admin endpoint only (a mounted page has no API beside it).
	APILinks []choice
}

// choice is a link of the page's navigation.
type choice struct {
	Label  string
	Href   string
	Active bool
}

// tile is one headline number.
type tile struct {
	ID    string
	Label string
	Value string
	// Raw is the unformatted value, for scripts and tests.
	Raw float64
	Sub string
}

// tableView is the users, keys or models table.
type tableView struct {
	ID, Title string
	// Column heads the names' column.
	Column string
	// Wide tables also show latency and time to first token.
	Wide bool
	Rows []tableRow
}

// tableRow is one line of the users, keys, models or upstreams tables.
type tableRow struct {
	Name string
	Row
	ErrorRate float64
	// Share is the row's requests as a percentage of the busiest row's,
	// for its bar.
	Share px
	// Health is "ok" (under 5% of calls failed), "degraded" (under 20%)
	// or "failing"; upstreams only.
	Health string
}

// renderDashboard draws the page for the range and split given, with the
// status to send: a querier that is missing or fails gives a page that says
// so. The error is the template's, a bug.
func renderDashboard(ctx context.Context, rng dashboardRange, by, title string, onAdmin bool, now time.Time) (int, []byte, error) {
	p := &page{
		Title:      cmp.Or(title, "LLM gateway"),
		CSS:        template.CSS(pageCSS),
		RangeLabel: rng.Label,
		By:         by,
		Generated:  now.UTC().Format("2006-01-02 15:04:05 UTC"),
	}
	for _, r := range dashboardRanges {
		p.Ranges = append(p.Ranges, choice{r.Name, pageHref(r.Name, by), r.Name == rng.Name})
	}
	for _, s := range []string{"model", "user"} {
		p.Splits = append(p.Splits, choice{"by " + s, pageHref(rng.Name, s), s == by})
	}
	axis := timeAxis{Step: rng.Step, N: int(rng.Length / rng.Step), TickEvery: rng.TickEvery}
	axis.Start = now.Truncate(rng.Step).Add(-time.Duration(axis.N-1) * rng.Step)
	if onAdmin {
		api := "/llm/stats?group_by=" + by + "&from=" + url.QueryEscape(axis.Start.UTC().Format(time.RFC3339)) +
			"&bucket=" + shortDuration(rng.Step)
		p.APILinks = []choice{{Label: "JSON", Href: api}, {Label: "CSV", Href: api + "&format=csv"}}
	}

	status := http.StatusOK
	d := dashboardData{}
	if q := CurrentQuerier(); q == nil {
		p.Notice = "No data: " + errNoQuerier.Error() + "."
	} else {
		if m, ok := q.(caddy.Module); ok {
			p.Source = string(m.CaddyModule().ID)
		}
		var err error
		if d, err = queryDashboard(ctx, q, axis.Start, rng.Step, by); err != nil {
			status = http.StatusInternalServerError
			p.Notice = "The stats could not be read: " + err.Error()
		}
	}
	p.fill(d, axis, by)

	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, p); err != nil {
		// The template is fixed and its data built here, so the page
		// tests catch this.
		return 0, nil, fmt.Errorf("drawing the dashboard: %w", err)
	}
	return status, buf.Bytes(), nil
}

// parsePageParams reads the page's range and by parameters.
func parsePageParams(v url.Values) (dashboardRange, string, error) {
	for name := range v {
		if name != "range" && name != "by" {
			return dashboardRange{}, "", fmt.Errorf("unknown parameter '%s': the dashboard takes range and by", name)
		}
	}
	name := cmp.Or(v.Get("range"), defaultRange)
	i := slices.IndexFunc(dashboardRanges, func(r dashboardRange) bool { return r.Name == name })
	if i < 0 {
		return dashboardRange{}, "", fmt.Errorf("bad range '%s': must be 1h, 24h, 7d or 30d", name)
	}
	by := cmp.Or(v.Get("by"), "model")
	if by != "model" && by != "user" {
		return dashboardRange{}, "", fmt.Errorf("bad by '%s': must be model or user", by)
	}
	return dashboardRanges[i], by, nil
}

// shortDuration writes a whole number of days, hours or minutes as the
// stats API reads it: 1d, 6h, 1m.
func shortDuration(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	}
	return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
}

func pageHref(rng, by string) string { return "?range=" + rng + "&by=" + by }

// dashboardData is what the page reads from the querier.
type dashboardData struct {
	total                   []Row
	series                  []Row
	users, keys, models     []Row
	upstreams, upstreamTime []Row
}

// queryDashboard asks the querier for everything the page shows.
func queryDashboard(ctx context.Context, q Querier, from time.Time, step time.Duration, by string) (dashboardData, error) {
	var d dashboardData
	for _, x := range []struct {
		dst *[]Row
		q   Query
	}{
		{&d.total, Query{From: from}},
		{&d.series, Query{GroupBy: by, From: from, Bucket: step}},
		{&d.users, Query{GroupBy: "user", From: from}},
		{&d.keys, Query{GroupBy: "key", From: from}},
		{&d.models, Query{GroupBy: "model", From: from}},
		{&d.upstreams, Query{GroupBy: "upstream", From: from}},
		{&d.upstreamTime, Query{GroupBy: "upstream", From: from, Bucket: step}},
	} {
		rows, err := q.Query(ctx, x.q)
		if err != nil {
			return dashboardData{}, fmt.Errorf("querying by %s: %w", cmp.Or(x.q.GroupBy, "total"), err)
		}
		for i := range rows {
			rows[i] = saneRow(rows[i])
		}
		*x.dst = rows
	}
	return d, nil
}

// fill lays out the page's tiles, charts and tables from d.
func (p *page) fill(d dashboardData, axis timeAxis, by string) {
	var t Row
	for _, r := range d.total {
		t = addRows(t, r)
	}
	p.Tiles = []tile{
		{ID: "requests", Label: "Requests", Value: humanize.Comma(t.Requests), Raw: float64(t.Requests),
			Sub: plural(t.Errors, "error") + " · " + formatPercent(ratio(t.Errors, t.Requests))},
		{ID: "tokens", Label: "Tokens", Value: humanize.Comma(t.TotalTokens), Raw: float64(t.TotalTokens),
			Sub: humanize.Comma(t.PromptTokens) + " prompt · " + humanize.Comma(t.CompletionTokens) + " completion"},
		{ID: "cost", Label: "Cost", Value: formatUSD(t.Cost), Raw: t.Cost,
			Sub: formatUSD(safeDiv(t.Cost, float64(t.Requests))) + " per request"},
		{ID: "latency", Label: "Latency", Value: formatSeconds(t.DurationAvg), Raw: t.DurationAvg,
			Sub: percentiles(t.DurationP50, t.DurationP95, "average")},
		{ID: "ttft", Label: "Time to first token", Value: formatSeconds(t.TTFTAvg), Raw: t.TTFTAvg,
			Sub: percentiles(t.TTFTP50, t.TTFTP95, "average, streams")},
	}

	ss := newSeriesSet(d.series, axis, displayName(by))
	split := "per " + by
	p.Charts = []*chart{
		stackedBars("requests", "Requests", split, axis, ss.sums(func(r Row) float64 { return float64(r.Requests) }), formatCount),
		stackedBars("tokens", "Tokens", split+", prompt and completion", axis, ss.sums(func(r Row) float64 { return float64(r.TotalTokens) }), formatCount),
		stackedBars("cost", "Cost", split+", in USD", axis, ss.sums(func(r Row) float64 { return r.Cost }), formatUSD),
		lines("latency", "Latency", split+", average per call", axis, ss.ratios(
			func(r Row) float64 { return r.DurationAvg * float64(r.Requests) },
			func(r Row) float64 { return float64(r.Requests) }), formatSeconds),
	}
	hs := newSeriesSet(d.upstreamTime, axis, displayName("upstream"))
	p.Health = lines("health", "Upstream error rate", "share of calls that failed, per upstream", axis, hs.ratios(
		func(r Row) float64 { return float64(r.Errors) },
		func(r Row) float64 { return float64(r.Requests) }), formatPercent)

	p.Users = tableView{"users", "Top users", "User", false, table(d.users, displayName("user"), topRows)}
	p.Keys = tableView{"keys", "Top keys", "Key", false, table(d.keys, displayName("key"), topRows)}
	p.Models = tableView{"models", "Models", "Model", true, table(d.models, displayName("model"), 0)}
	p.Upstreams = table(d.upstreams, displayName("upstream"), 0)
	for i := range p.Upstreams {
		switch u := &p.Upstreams[i]; {
		case u.ErrorRate >= 0.2:
			u.Health = "failing"
		case u.ErrorRate >= 0.05:
			u.Health = "degraded"
		default:
			u.Health = "ok"
		}
	}
}

// percentiles describes a latency's spread, or falls back to what the
// headline number is when the querier gives no percentiles.
func percentiles(p50, p95 float64, fallback string) string {
	if p95 == 0 {
		return fallback
	}
	return "p50 " + formatSeconds(p50) + " · p95 " + formatSeconds(p95)
}

// displayName returns how a group of the given kind is named on the page;
// the empty group is calls that had none (no llm_auth, or no upstream
// reached).
func displayName(kind string) func(string) string {
	none := map[string]string{"user": "(no user)", "key": "(no key)", "upstream": "(none reached)"}[kind]
	if none == "" {
		none = "(none)"
	}
	return func(g string) string { return cmp.Or(g, none) }
}

// table sorts rows by requests, busiest first, keeping at most limit (0
// for all).
func table(rows []Row, name func(string) string, limit int) []tableRow {
	rows = slices.Clone(rows)
	slices.SortFunc(rows, func(a, b Row) int {
		return cmp.Or(cmp.Compare(b.Requests, a.Requests), cmp.Compare(a.Group, b.Group))
	})
	if limit > 0 && len(rows) > limit {
		rows = rows[:limit]
	}
	out := make([]tableRow, len(rows))
	for i, r := range rows {
		out[i] = tableRow{Name: name(r.Group), Row: r, ErrorRate: ratio(r.Errors, r.Requests),
			Share: px(100 * safeDiv(float64(r.Requests), float64(rows[0].Requests)))}
	}
	return out
}

// seriesSet maps bucketed rows to chart series: the busiest groups each get
// a series and a color, the rest share one "all others" series.
type seriesSet struct {
	rows  []Row
	axis  timeAxis
	names []string
	index map[string]int
}

func newSeriesSet(rows []Row, axis timeAxis, name func(string) string) *seriesSet {
	requests := map[string]int64{}
	for _, r := range rows {
		requests[r.Group] += r.Requests
	}
	groups := make([]string, 0, len(requests))
	for g := range requests {
		groups = append(groups, g)
	}
	slices.SortFunc(groups, func(a, b string) int {
		return cmp.Or(cmp.Compare(requests[b], requests[a]), cmp.Compare(a, b))
	})
	s := &seriesSet{rows: rows, axis: axis, index: map[string]int{}}
	for i, g := range groups {
		if i == len(palette) && len(groups) > len(palette) {
			s.names = append(s.names, "all others")
		}
		s.index[g] = min(i, len(palette))
		if i < len(palette) {
			s.names = append(s.names, name(g))
		}
	}
	return s
}

func (s *seriesSet) color(i int) string {
	if i < len(palette) {
		return palette[i]
	}
	return otherColor
}

// sums returns a series per group of value summed per slot.
func (s *seriesSet) sums(value func(Row) float64) []series {
	out := s.empty(0)
	for _, r := range s.rows {
		if i := s.axis.index(r.Bucket); i >= 0 {
			v := value(r)
			out[s.index[r.Group]].Values[i] += v
			out[s.index[r.Group]].Total += v
		}
	}
	return out
}

// ratios returns a series per group of num/den per slot (NaN where den is
// 0), e.g. an average weighted by requests, or an error rate.
func (s *seriesSet) ratios(num, den func(Row) float64) []series {
	out := s.empty(math.NaN())
	nums := make([][]float64, len(out))
	dens := make([][]float64, len(out))
	for i := range out {
		nums[i], dens[i] = make([]float64, s.axis.N), make([]float64, s.axis.N)
	}
	for _, r := range s.rows {
		if i := s.axis.index(r.Bucket); i >= 0 {
			g := s.index[r.Group]
			nums[g][i] += num(r)
			dens[g][i] += den(r)
		}
	}
	for g := range out {
		var n, d float64
		for i := range s.axis.N {
			if dens[g][i] > 0 {
				out[g].Values[i] = nums[g][i] / dens[g][i]
			}
			n += nums[g][i]
			d += dens[g][i]
		}
		out[g].Total = safeDiv(n, d)
	}
	return out
}

func (s *seriesSet) empty(fill float64) []series {
	out := make([]series, len(s.names))
	for i, n := range s.names {
		out[i] = series{Name: n, Color: s.color(i), Values: make([]float64, s.axis.N)}
		for j := range out[i].Values {
			out[i].Values[j] = fill
		}
	}
	return out
}

// maxSane bounds the numbers the page takes from a querier: no gateway
// records more than 10^15 calls, tokens, dollars or seconds, and below it
// sums and averages stay finite.
const maxSane = 1e15

// saneRow makes a querier's row safe to draw: numbers that are negative,
// not finite or beyond maxSane (a broken third-party querier) become 0 or
// maxSane, so that the page never shows NaN or draws outside its charts.
func saneRow(r Row) Row {
	for _, n := range []*int64{&r.Requests, &r.Errors, &r.PromptTokens, &r.CompletionTokens, &r.CachedTokens, &r.TotalTokens} {
		*n = min(max(*n, 0), maxSane)
	}
	for _, f := range []*float64{&r.Cost, &r.DurationAvg, &r.DurationP50, &r.DurationP95, &r.TTFTAvg, &r.TTFTP50, &r.TTFTP95} {
		if math.IsNaN(*f) {
			*f = 0
		}
		*f = min(max(*f, 0), maxSane)
	}
	return r
}

// addRows adds b's totals to a; averages are weighted by requests, and
// percentiles, which cannot be added, are kept only from a single row.
func addRows(a, b Row) Row {
	if a.Requests == 0 {
		return b
	}
	n := float64(a.Requests + b.Requests)
	a.DurationAvg = (a.DurationAvg*float64(a.Requests) + b.DurationAvg*float64(b.Requests)) / n
	a.TTFTAvg = (a.TTFTAvg*float64(a.Requests) + b.TTFTAvg*float64(b.Requests)) / n
	a.DurationP50, a.DurationP95, a.TTFTP50, a.TTFTP95 = 0, 0, 0, 0
	a.Requests += b.Requests
	a.Errors += b.Errors
	a.PromptTokens += b.PromptTokens
	a.CompletionTokens += b.CompletionTokens
	a.CachedTokens += b.CachedTokens
	a.TotalTokens += b.TotalTokens
	a.Cost += b.Cost
	return a
}

// plural writes a count of things: "1 error", "3 errors".
func plural(n int64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return humanize.Comma(n) + " " + thing + "s"
}

func ratio(a, b int64) float64 { return safeDiv(float64(a), float64(b)) }

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*Dashboard)(nil)
	_ caddyfile.Unmarshaler       = (*Dashboard)(nil)
)
