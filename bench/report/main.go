// Command report turns the JSON lines of bench/load (and the ledger counts
// bench/run.sh adds) into the benchmark's Markdown tables: for each
// deployment and scenario, the median over the rounds of each figure, and the
// median of its ratio to bare Caddy's figure of the same round, since the
// project reports the gateway's speed relative to bare Caddy measured in the
// same run (absolute figures depend on the machine and its load).
//
// Usage:
//
//	report [-baseline name] [-json out.json] [file ...]
//
// It reads standard input when no file is given. It exits with status 1,
// after printing the tables, when any request failed, a ledger lost a row, or
// the baseline is missing for a scenario, so a run with errors cannot pass
// for a good one.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// line is one JSON line: a measurement of bench/load, or (mode "ledger") the
// row count run.sh read from a deployment's usage ledger.
type line struct {
	Name            string  `json:"name"`
	Test            string  `json:"test"`
	Scenario        string  `json:"scenario"`
	Mode            string  `json:"mode"`
	Round           int     `json:"round"`
	Concurrency     int     `json:"concurrency"`
	Requests        int     `json:"requests"`
	Errors          int     `json:"errors"`
	WarmupRequests  int     `json:"warmup_requests"`
	RPS             float64 `json:"rps"`
	P50us           float64 `json:"p50_us"`
	P99us           float64 `json:"p99_us"`
	TTFBP50us       float64 `json:"ttfb_p50_us"`
	TTFBP99us       float64 `json:"ttfb_p99_us"`
	TTFTP50us       float64 `json:"ttft_p50_us"`
	BytesPerRequest float64 `json:"bytes_per_request"`
	CPUusPerRequest float64 `json:"cpu_us_per_request"`
	PeakRSSKiB      float64 `json:"peak_rss_kib"`
	IdleRSSKiB      float64 `json:"idle_rss_kib"`
	HoldRSSKiB      float64 `json:"hold_rss_kib"`
	KiBPerStream    float64 `json:"kib_per_stream"`
	Rows            int     `json:"rows"`
	FirstError      string  `json:"first_error"`
}

// The tables, also written as JSON with -json.
type (
	loadRow struct {
		Deployment      string  `json:"deployment"`
		Scenario        string  `json:"scenario"`
		Rounds          int     `json:"rounds"`
		RPS             float64 `json:"rps"`
		RPSRatio        float64 `json:"rps_ratio"`
		P50us           float64 `json:"p50_us"`
		P50Ratio        float64 `json:"p50_ratio"`
		P99us           float64 `json:"p99_us"`
		P99Ratio        float64 `json:"p99_ratio"`
		CPUusPerRequest float64 `json:"cpu_us_per_request"`
		CPURatio        float64 `json:"cpu_ratio"`
		PeakRSSMiB      float64 `json:"peak_rss_mib"`
		RSSRatio        float64 `json:"rss_ratio"`
		Requests        int     `json:"requests"`
		Errors          int     `json:"errors"`
	}
	ledgerRow struct {
		Deployment string `json:"deployment"`
		Requests   int    `json:"requests"`
		Rows       int    `json:"rows"`
		Missing    int    `json:"missing"`
	}
	ttfbRow struct {
		Deployment string  `json:"deployment"`
		TTFBP50us  float64 `json:"ttfb_p50_us"`
		AddedP50us float64 `json:"added_p50_us"`
		TTFBP99us  float64 `json:"ttfb_p99_us"`
		TTFTP50us  float64 `json:"ttft_p50_us"`
		AddedTTFT  float64 `json:"added_ttft_p50_us"`
		Requests   int     `json:"requests"`
		Errors     int     `json:"errors"`
	}
	memoryRow struct {
		Target       string  `json:"target"`
		Streams      int     `json:"streams"`
		IdleRSSMiB   float64 `json:"idle_rss_mib"`
		HoldRSSMiB   float64 `json:"hold_rss_mib"`
		KiBPerStream float64 `json:"kib_per_stream"`
		Errors       int     `json:"errors"`
	}
	bigRow struct {
		Target      string  `json:"target"`
		Scenario    string  `json:"scenario"`
		Concurrency int     `json:"concurrency"`
		MBPerAnswer float64 `json:"mb_per_answer"`
		IdleRSSMiB  float64 `json:"idle_rss_mib"`
		PeakRSSMiB  float64 `json:"peak_rss_mib"`
		Requests    int     `json:"requests"`
		Errors      int     `json:"errors"`
		FirstError  string  `json:"first_error,omitempty"`
	}
	costRow struct {
		Deployment string  `json:"deployment"`
		Over       string  `json:"over"`
		Scenario   string  `json:"scenario"`
		AddedCPUus float64 `json:"added_cpu_us_per_request"`
		RPSRatio   float64 `json:"rps_ratio"`
	}
	tables struct {
		Load   []loadRow   `json:"load"`
		Costs  []costRow   `json:"costs,omitempty"`
		Ledger []ledgerRow `json:"ledger,omitempty"`
		TTFB   []ttfbRow   `json:"ttfb,omitempty"`
		Memory []memoryRow `json:"memory,omitempty"`
		Big    []bigRow    `json:"big,omitempty"`
	}
)

func main() {
	baseline := flag.String("baseline", "bare", "name of the target the others are compared with")
	jsonOut := flag.String("json", "", "also write the tables as JSON to this file")
	flag.Parse()

	var ls []line
	if flag.NArg() == 0 {
		ls = readAll(os.Stdin, "stdin")
	}
	for _, path := range flag.Args() {
		f, err := os.Open(path)
		if err != nil {
			fail(err)
		}
		ls = append(ls, readAll(f, path)...)
		f.Close()
	}
	if len(ls) == 0 {
		fail(fmt.Errorf("no measurements"))
	}
	t, problems := build(ls, *baseline)
	write(os.Stdout, t)
	if *jsonOut != "" {
		b, err := json.MarshalIndent(t, "", "  ")
		if err != nil {
			fail(err)
		}
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			fail(err)
		}
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, "report:", p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
}

func readAll(r io.Reader, name string) []line {
	var ls []line
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var l line
		if err := json.Unmarshal([]byte(text), &l); err != nil {
			fail(fmt.Errorf("%s:%d: %v", name, n, err))
		}
		if l.Test == "" {
			l.Test = "load"
		}
		ls = append(ls, l)
	}
	if err := sc.Err(); err != nil {
		fail(fmt.Errorf("%s: %v", name, err))
	}
	return ls
}

// build computes the tables, deployments and scenarios in the order they
// first appear (the order the run measured them), and lists what makes the
// run unsound: failed requests, lost ledger rows, a missing baseline.
func build(ls []line, baseline string) (tables, []string) {
	var t tables
	var problems []string
	var names, scenarios []string
	for _, l := range ls {
		if l.Test == "load" && l.Mode != "ledger" {
			if !slices.Contains(names, l.Name) {
				names = append(names, l.Name)
			}
			if !slices.Contains(scenarios, l.Scenario) {
				scenarios = append(scenarios, l.Scenario)
			}
		}
		if l.Errors > 0 {
			problems = append(problems, fmt.Sprintf("%s %s %s round %d: %d failed requests, the first: %s",
				l.Test, l.Name, l.Scenario, l.Round, l.Errors, l.FirstError))
		}
	}

	// Main table: per round, each figure against the baseline's of the
	// same round and scenario; the medians of both over the rounds.
	for _, s := range scenarios {
		base := map[int]line{}
		for _, l := range ls {
			if l.Test == "load" && l.Scenario == s && l.Name == baseline {
				base[l.Round] = l
			}
		}
		if len(base) == 0 {
			problems = append(problems, fmt.Sprintf("scenario %s has no %s measurement to compare with", s, baseline))
		}
		for _, n := range names {
			var r loadRow
			var rps, p50, p99, cpu, rss, rpsR, p50R, p99R, cpuR, rssR []float64
			for _, l := range ls {
				if l.Test != "load" || l.Scenario != s || l.Name != n {
					continue
				}
				r.Rounds++
				r.Requests += l.Requests
				r.Errors += l.Errors
				rps, p50, p99 = append(rps, l.RPS), append(p50, l.P50us), append(p99, l.P99us)
				cpu, rss = append(cpu, l.CPUusPerRequest), append(rss, l.PeakRSSKiB/1024)
				if b, ok := base[l.Round]; ok {
					rpsR = appendRatio(rpsR, l.RPS, b.RPS)
					p50R = appendRatio(p50R, l.P50us, b.P50us)
					p99R = appendRatio(p99R, l.P99us, b.P99us)
					cpuR = appendRatio(cpuR, l.CPUusPerRequest, b.CPUusPerRequest)
					rssR = appendRatio(rssR, l.PeakRSSKiB, b.PeakRSSKiB)
				}
			}
			if r.Rounds == 0 {
				continue
			}
			r.Deployment, r.Scenario = n, s
			r.RPS, r.P50us, r.P99us, r.CPUusPerRequest, r.PeakRSSMiB = median(rps), median(p50), median(p99), median(cpu), median(rss)
			r.RPSRatio, r.P50Ratio, r.P99Ratio, r.CPURatio, r.RSSRatio = median(rpsR), median(p50R), median(p99R), median(cpuR), median(rssR)
			t.Load = append(t.Load, r)
		}
	}

	// Costs: each deployment against the one it adds features to, per
	// round (the two were driven side by side), then the median.
	type measured struct {
		name, scenario string
		round          int
	}
	loads := map[measured]line{}
	for _, l := range ls {
		if l.Test == "load" {
			loads[measured{l.Name, l.Scenario, l.Round}] = l
		}
	}
	for _, r := range t.Load {
		over, ok := builtOn[r.Deployment]
		if !ok {
			continue
		}
		var added, ratio []float64
		for k, l := range loads {
			if k.name != r.Deployment || k.scenario != r.Scenario {
				continue
			}
			if o, ok := loads[measured{over, k.scenario, k.round}]; ok && o.RPS > 0 {
				added = append(added, l.CPUusPerRequest-o.CPUusPerRequest)
				ratio = append(ratio, l.RPS/o.RPS)
			}
		}
		if len(added) > 0 {
			t.Costs = append(t.Costs, costRow{Deployment: r.Deployment, Over: over, Scenario: r.Scenario,
				AddedCPUus: median(added), RPSRatio: median(ratio)})
		}
	}

	// Ledgers: every request a deployment's process was sent, warm-ups and
	// every test included, must have its row.
	for _, l := range ls {
		if l.Mode != "ledger" {
			continue
		}
		lr := ledgerRow{Deployment: l.Name, Rows: l.Rows}
		for _, m := range ls {
			if m.Mode != "ledger" && m.Name == l.Name {
				lr.Requests += m.Requests + m.WarmupRequests
			}
		}
		lr.Missing = lr.Requests - lr.Rows
		if lr.Missing != 0 {
			problems = append(problems, fmt.Sprintf("the ledger of %s holds %d rows for %d requests", l.Name, lr.Rows, lr.Requests))
		}
		t.Ledger = append(t.Ledger, lr)
	}

	var bareTTFB, bareTTFT float64
	for _, l := range ls {
		if l.Test == "ttfb" && l.Name == baseline {
			bareTTFB, bareTTFT = l.TTFBP50us, l.TTFTP50us
		}
	}
	for _, l := range ls {
		switch l.Test {
		case "ttfb":
			t.TTFB = append(t.TTFB, ttfbRow{Deployment: l.Name, TTFBP50us: l.TTFBP50us, AddedP50us: l.TTFBP50us - bareTTFB,
				TTFBP99us: l.TTFBP99us, TTFTP50us: l.TTFTP50us, AddedTTFT: l.TTFTP50us - bareTTFT,
				Requests: l.Requests, Errors: l.Errors})
		case "memory":
			t.Memory = append(t.Memory, memoryRow{Target: l.Name, Streams: l.Requests, IdleRSSMiB: l.IdleRSSKiB / 1024,
				HoldRSSMiB: l.HoldRSSKiB / 1024, KiBPerStream: l.KiBPerStream, Errors: l.Errors})
		case "big":
			t.Big = append(t.Big, bigRow{Target: l.Name, Scenario: l.Scenario, Concurrency: l.Concurrency,
				MBPerAnswer: l.BytesPerRequest / 1e6, IdleRSSMiB: l.IdleRSSKiB / 1024, PeakRSSMiB: l.PeakRSSKiB / 1024,
				Requests: l.Requests, Errors: l.Errors, FirstError: l.FirstError})
		}
	}
	return t, problems
}

// builtOn names, for each deployment of bench/run.sh, the one it adds
// features to: the difference between their rows is what those cost.
var builtOn = map[string]string{"basic": "bare", "single": "basic", "fleet": "basic", "translated": "basic"}

func write(w io.Writer, t tables) {
	fmt.Fprintln(w, "| Deployment | Scenario | req/s | × | p50 µs | × | p99 µs | × | CPU µs/req | × | peak RSS MiB | × | requests | errors |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, r := range t.Load {
		fmt.Fprintf(w, "| %s | %s | %.0f | %s | %.0f | %s | %.0f | %s | %.0f | %s | %.1f | %s | %d | %d |\n",
			r.Deployment, r.Scenario, r.RPS, ratio(r.RPSRatio), r.P50us, ratio(r.P50Ratio), r.P99us, ratio(r.P99Ratio),
			r.CPUusPerRequest, ratio(r.CPURatio), r.PeakRSSMiB, ratio(r.RSSRatio), r.Requests, r.Errors)
	}
	if len(t.Costs) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| Deployment | over | scenario | CPU µs/req added | req/s × |")
		fmt.Fprintln(w, "|---|---|---|--:|--:|")
		for _, r := range t.Costs {
			fmt.Fprintf(w, "| %s | %s | %s | %+.0f | %s |\n", r.Deployment, r.Over, r.Scenario, r.AddedCPUus, ratio(r.RPSRatio))
		}
	}
	if len(t.Ledger) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| Ledger of | requests sent | rows | missing |")
		fmt.Fprintln(w, "|---|--:|--:|--:|")
		for _, r := range t.Ledger {
			fmt.Fprintf(w, "| %s | %d | %d | %d |\n", r.Deployment, r.Requests, r.Rows, r.Missing)
		}
	}
	if len(t.TTFB) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| 50 ms chunk delay | TTFB p50 µs | added | TTFB p99 µs | first content p50 µs | added | streams | errors |")
		fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|")
		for _, r := range t.TTFB {
			fmt.Fprintf(w, "| %s | %.0f | %+.0f | %.0f | %.0f | %+.0f | %d | %d |\n", r.Deployment, r.TTFBP50us, r.AddedP50us,
				r.TTFBP99us, r.TTFTP50us, r.AddedTTFT, r.Requests, r.Errors)
		}
	}
	if len(t.Memory) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| Slow streams held open | streams | idle RSS MiB | RSS with them MiB | KiB per stream | errors |")
		fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|")
		for _, r := range t.Memory {
			fmt.Fprintf(w, "| %s | %d | %.1f | %.1f | %.1f | %d |\n", r.Target, r.Streams, r.IdleRSSMiB, r.HoldRSSMiB, r.KiBPerStream, r.Errors)
		}
	}
	if len(t.Big) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| Large answers | scenario | at once | MB per answer | idle RSS MiB | peak RSS MiB | answers | errors |")
		fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|")
		for _, r := range t.Big {
			fmt.Fprintf(w, "| %s | %s | %d | %.1f | %.1f | %.1f | %d | %d |\n",
				r.Target, r.Scenario, r.Concurrency, r.MBPerAnswer, r.IdleRSSMiB, r.PeakRSSMiB, r.Requests, r.Errors)
		}
	}
}

func appendRatio(xs []float64, x, base float64) []float64 {
	if base == 0 {
		return xs
	}
	return append(xs, x/base)
}

// median of xs, 0 when empty; with an even count the mean of the middle two.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// ratio formats a ratio to the baseline, "–" when there is none.
func ratio(r float64) string {
	if r == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", r)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "report:", err)
	os.Exit(2)
}
