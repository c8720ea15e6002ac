// Command report turns the JSON lines of bench/load into the benchmark's
// Markdown table: for each scenario and target, the median over the rounds
// of each figure, and the ratio of each to the baseline's, since the project
// reports the gateway's speed only relative to bare Caddy measured in the same
// run (absolute figures depend on the machine).
//
// Usage:
//
//	report [-baseline name] [file ...]
//
// It reads standard input when no file is given. It exits with status 1,
// after printing the table, when any request failed or the baseline is
// missing for a scenario, so a run with errors cannot pass for a good one.
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

// measurement is the part of a load result line the report uses.
type measurement struct {
	Name      string  `json:"name"`
	Scenario  string  `json:"scenario"`
	Requests  int     `json:"requests"`
	Errors    int     `json:"errors"`
	RPS       float64 `json:"rps"`
	P50us     float64 `json:"p50_us"`
	P99us     float64 `json:"p99_us"`
	TTFBP50us float64 `json:"ttfb_p50_us"`
}

// row is one (scenario, target): the medians over its rounds.
type row struct {
	requests, errors    int
	rps, p50, p99, ttfb float64
}

func main() {
	baseline := flag.String("baseline", "baseline", "name of the target the others are compared with")
	flag.Parse()

	var ms []measurement
	if flag.NArg() == 0 {
		ms = readAll(os.Stdin, "stdin")
	}
	for _, path := range flag.Args() {
		f, err := os.Open(path)
		if err != nil {
			fail(err)
		}
		ms = append(ms, readAll(f, path)...)
		f.Close()
	}
	if len(ms) == 0 {
		fail(fmt.Errorf("no measurements"))
	}
	if !writeTable(os.Stdout, ms, *baseline) {
		os.Exit(1)
	}
}

func readAll(r io.Reader, name string) []measurement {
	var ms []measurement
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var m measurement
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			fail(fmt.Errorf("%s:%d: %v", name, n, err))
		}
		ms = append(ms, m)
	}
	if err := sc.Err(); err != nil {
		fail(fmt.Errorf("%s: %v", name, err))
	}
	return ms
}

// writeTable prints the table, scenarios and targets in the order they first
// appear (the order the run measured them), and reports whether the run is
// sound: no failed request, and a baseline for every scenario.
func writeTable(w io.Writer, ms []measurement, baseline string) bool {
	var scenarios, targets []string
	runs := map[[2]string][]measurement{}
	for _, m := range ms {
		if !slices.Contains(scenarios, m.Scenario) {
			scenarios = append(scenarios, m.Scenario)
		}
		if !slices.Contains(targets, m.Name) {
			targets = append(targets, m.Name)
		}
		k := [2]string{m.Scenario, m.Name}
		runs[k] = append(runs[k], m)
	}

	sound := true
	fmt.Fprintln(w, "| Scenario | Target | req/s | req/s ratio | p50 µs | p50 ratio | p99 µs | p99 ratio | added p50 µs | TTFB p50 µs | requests | errors |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, s := range scenarios {
		base, haveBase := summarize(runs[[2]string{s, baseline}])
		if !haveBase {
			fmt.Fprintf(os.Stderr, "report: scenario %s has no %s measurement to compare with\n", s, baseline)
			sound = false
		}
		for _, t := range targets {
			r, ok := summarize(runs[[2]string{s, t}])
			if !ok {
				continue
			}
			ttfb := "–"
			if r.ttfb > 0 {
				ttfb = fmt.Sprintf("%.0f", r.ttfb)
			}
			fmt.Fprintf(w, "| %s | %s | %.0f | %s | %.0f | %s | %.0f | %s | %s | %s | %d | %d |\n",
				s, t, r.rps, ratio(r.rps, base.rps), r.p50, ratio(r.p50, base.p50),
				r.p99, ratio(r.p99, base.p99), added(r.p50, base.p50, haveBase),
				ttfb, r.requests, r.errors)
			if r.errors > 0 {
				fmt.Fprintf(os.Stderr, "report: %s/%s: %d failed requests\n", s, t, r.errors)
				sound = false
			}
		}
	}
	return sound
}

// summarize takes the median of each figure over a target's rounds, and
// totals its requests and errors, so one noisy round does not move the
// table and no failure is hidden by the median. It reports false when there
// are no rounds.
func summarize(ms []measurement) (row, bool) {
	if len(ms) == 0 {
		return row{}, false
	}
	var r row
	var rps, p50, p99, ttfb []float64
	for _, m := range ms {
		r.requests += m.Requests
		r.errors += m.Errors
		rps = append(rps, m.RPS)
		p50 = append(p50, m.P50us)
		p99 = append(p99, m.P99us)
		ttfb = append(ttfb, m.TTFBP50us)
	}
	r.rps, r.p50, r.p99, r.ttfb = median(rps), median(p50), median(p99), median(ttfb)
	return r, true
}

func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// ratio formats x relative to the baseline's b, "–" without a baseline.
func ratio(x, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", x/b)
}

// added formats how many µs x adds to the baseline's b.
func added(x, b float64, haveBase bool) string {
	if !haveBase {
		return "–"
	}
	return fmt.Sprintf("%+.0f", x-b)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "report:", err)
	os.Exit(2)
}
