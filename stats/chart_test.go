package stats

import (
	"math"
	"testing"
	"time"
)

func TestFormats(t *testing.T) {
	for _, tt := range []struct {
		f    func(float64) string
		v    float64
		want string
	}{
		{formatCount, 0, "0"},
		{formatCount, 7, "7"},
		{formatCount, 2.5, "2.5"},
		{formatCount, 999, "999"},
		{formatCount, 1250, "1.25k"},
		{formatCount, 12345, "12.3k"},
		{formatCount, 4_500_000, "4.5M"},
		{formatCount, 2e9, "2B"},
		{formatUSD, 0, "$0"},
		{formatUSD, 0.000198, "$0.000198"},
		{formatUSD, 0.0312, "$0.0312"},
		{formatUSD, 0.5, "$0.50"},
		{formatUSD, 1.255, "$1.25"},
		{formatUSD, 12000, "$12k"},
		{formatSeconds, 0, "0"},
		{formatSeconds, 0.00042, "420 µs"},
		{formatSeconds, 0.0025, "2.5 ms"},
		{formatSeconds, 0.085, "85 ms"},
		{formatSeconds, 1.2449, "1.24 s"},
		{formatSeconds, 42, "42.0 s"},
		{formatPercent, 0, "0%"},
		{formatPercent, 0.025, "2.5%"},
		{formatPercent, 1, "100%"},
	} {
		if got := tt.f(tt.v); got != tt.want {
			t.Errorf("format(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

// TestNiceScale checks the value axis for maxima across many magnitudes:
// the top covers the maximum, with few steps, each a round number.
func TestNiceScale(t *testing.T) {
	for _, v := range []float64{0, -3, math.NaN(), math.Inf(1), 1e-7, 0.0002, 0.03, 1, 7, 8, 9.99, 10, 57, 100, 1234, 4.2e6, 1e12} {
		top, step := niceScale(v)
		if !(top > 0 && step > 0) {
			t.Errorf("niceScale(%v) = %v, %v", v, top, step)
			continue
		}
		if v > 0 && !math.IsInf(v, 0) {
			if top < v || top > v*2.5 {
				t.Errorf("niceScale(%v): top %v", v, top)
			}
			if n := top / step; n > maxTickCount+1e-9 || n < 1 {
				t.Errorf("niceScale(%v): %v steps of %v", v, n, step)
			}
			mant := step / math.Pow(10, math.Floor(math.Log10(step)))
			if r := math.Round(mant*10) / 10; r != 1 && r != 2 && r != 2.5 && r != 5 {
				t.Errorf("niceScale(%v): step %v is not round", v, step)
			}
		}
	}
}

var axis = timeAxis{
	Start:     time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC),
	Step:      time.Minute,
	N:         60,
	TickEvery: 10 * time.Minute,
}

// TestStackedBars checks the geometry: bars inside the plot, stacked in
// series order, heights in proportion to their values, one tooltip each.
func TestStackedBars(t *testing.T) {
	a := make([]float64, axis.N)
	b := make([]float64, axis.N)
	a[0], b[0] = 3, 1
	a[59] = 2
	c := stackedBars("requests", "Requests", "per model", axis, []series{
		{Name: "gpt-4o", Color: palette[0], Values: a, Total: 5},
		{Name: "claude", Color: palette[1], Values: b, Total: 1},
	}, formatCount)
	if c.Empty || len(c.Bars) != 3 {
		t.Fatalf("bars %+v", c.Bars)
	}
	first, second, last := c.Bars[0], c.Bars[1], c.Bars[2]
	if first.Series != "gpt-4o" || second.Series != "claude" || last.Series != "gpt-4o" {
		t.Errorf("series order %s, %s, %s", first.Series, second.Series, last.Series)
	}
	// The stack: claude sits on gpt-4o, and 3 is three times 1.
	if math.Abs(float64(second.Y+second.H-first.Y)) > 0.05 || math.Abs(float64(first.H-3*second.H)) > 0.2 {
		t.Errorf("stack %+v on %+v", second, first)
	}
	for _, b := range c.Bars {
		if b.X < plotLeft || b.X+b.W > plotLeft+plotWidth+0.05 || b.Y < plotTop || b.Y+b.H > plotTop+plotHeight+0.05 {
			t.Errorf("bar outside the plot: %+v", b)
		}
	}
	if last.X <= first.X {
		t.Errorf("the last slot's bar is not right of the first's")
	}
	if want := "gpt-4o · Mar 4 10:59–11:00 UTC: 2"; last.Title != want {
		t.Errorf("tooltip %q, want %q", last.Title, want)
	}
	if len(c.XTicks) != 6 || c.XTicks[0].Label != "10:00" || c.XTicks[5].Label != "10:50" {
		t.Errorf("time labels %+v", c.XTicks)
	}
	if top := c.YTicks[len(c.YTicks)-1]; top.Label != "4" || float64(top.Pos) != plotTop {
		t.Errorf("value axis ends at %+v, want 4 at the top", top)
	}
	if len(c.Legend) != 2 || c.Legend[0].Label != "5" {
		t.Errorf("legend %+v", c.Legend)
	}
}

// TestLines checks that a gap in a series starts a new subpath and that
// slots without data get no point.
func TestLines(t *testing.T) {
	v := make([]float64, axis.N)
	for i := range v {
		v[i] = math.NaN()
	}
	v[1], v[2], v[10] = 0.5, 1, 0.25
	c := lines("latency", "Latency", "", axis, []series{{Name: "m", Color: palette[0], Values: v, Total: 0.6}}, formatSeconds)
	if c.Empty || len(c.Lines) != 1 || len(c.Lines[0].Points) != 3 {
		t.Fatalf("lines %+v", c.Lines)
	}
	d := c.Lines[0].D
	if d[0] != 'M' || countByte(d, 'M') != 2 || countByte(d, 'L') != 1 {
		t.Errorf("path %q: want a two-point subpath and a one-point one", d)
	}
	empty := lines("latency", "Latency", "", axis, []series{{Name: "m", Values: make([]float64, axis.N)}}, formatSeconds)
	for i := range empty.Lines {
		if len(empty.Lines[i].Points) == 0 {
			t.Error("a line without points")
		}
	}
}

func countByte(s string, b byte) int {
	n := 0
	for i := range len(s) {
		if s[i] == b {
			n++
		}
	}
	return n
}

// TestSeriesSet checks that the busiest groups get their own series, the
// rest one "all others", and that ratios are weighted by requests.
func TestSeriesSet(t *testing.T) {
	var rows []Row
	for i, g := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i"} {
		rows = append(rows, Row{Group: g, Bucket: axis.Start, Requests: int64(100 - i), Errors: 1, DurationAvg: 1})
	}
	rows = append(rows, Row{Group: "a", Bucket: axis.Start.Add(time.Minute), Requests: 300, DurationAvg: 2})
	s := newSeriesSet(rows, axis, displayName("model"))
	if len(s.names) != len(palette)+1 || s.names[0] != "a" || s.names[len(palette)] != "all others" {
		t.Fatalf("series %v", s.names)
	}
	sums := s.sums(func(r Row) float64 { return float64(r.Requests) })
	if other := sums[len(palette)]; other.Values[0] != 92+93 || other.Color != otherColor {
		t.Errorf("other: %+v", other)
	}
	lat := s.ratios(func(r Row) float64 { return r.DurationAvg * float64(r.Requests) }, func(r Row) float64 { return float64(r.Requests) })
	if a := lat[0]; a.Values[0] != 1 || a.Values[1] != 2 || math.Abs(a.Total-700.0/400) > 1e-12 || !math.IsNaN(a.Values[2]) {
		t.Errorf("a's latency %v, total %v", a.Values[:3], a.Total)
	}
}
