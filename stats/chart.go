package stats

import (
	"math"
	"strconv"
	"time"
)

// The dashboard's charts are laid out here, in Go, and drawn as inline SVG
// by its template: no script, nothing fetched, the numbers in the page are
// the numbers the querier gave.

// Chart geometry, in SVG user units; the SVG scales to its box.
const (
	chartWidth   = 600
	chartHeight  = 230
	plotLeft     = 58
	plotRight    = 10
	plotTop      = 10
	plotBottom   = 26
	plotWidth    = chartWidth - plotLeft - plotRight
	plotHeight   = chartHeight - plotTop - plotBottom
	maxTickCount = 5
)

// palette colors the series, in order of their size; the last is for the
// "all others" series that gathers the rest.
var palette = []string{"#4f6bed", "#14a3b8", "#f2a20c", "#e0457b", "#2fa567", "#9a5cd6", "#ef7a35"}

const otherColor = "#94a3b8"

// px is an SVG coordinate, printed with one decimal to keep the page small.
type px float64

func (p px) String() string { return strconv.FormatFloat(float64(p), 'f', 1, 64) }

// chart is one SVG chart, ready for the template.
type chart struct {
	// ID names the chart in the page (id="chart-<ID>").
	ID    string
	Title string
	// Note says what the chart shows, under the title.
	Note string
	// Empty is set when there is nothing to draw; the chart then says so.
	Empty         bool
	Width, Height int
	// The plot area: left, top, right and bottom edges.
	PlotX, PlotY  px
	Right, Bottom px
	// Where the axis labels go: the x of the value labels (right-aligned)
	// and the baseline of the time labels; TickY is where time ticks end.
	YLabelX, XLabelY, TickY px
	// The middle of the plot, where an empty chart says so.
	MidX, MidY px
	YTicks     []tick
	XTicks     []tick
	Bars       []bar
	Lines      []line
	Legend     []legendItem
}

// tick is an axis label with its position (y for the value axis, x for
// time) and, for value labels, the baseline that centres the text on it.
type tick struct {
	Pos, Text px
	Label     string
}

// bar is one segment of a stacked bar.
type bar struct {
	X, Y, W, H px
	Color      string
	Series     string
	// Value is the segment's number, unformatted, for scripts and tests.
	Value float64
	// Title is the tooltip.
	Title string
}

// line is one series of a line chart.
type line struct {
	Series string
	Color  string
	// D is the SVG path; a gap in the data starts a new subpath.
	D      string
	Points []point
}

// point is one value of a line series, drawn as a dot with a tooltip.
type point struct {
	X, Y  px
	Value float64
	Title string
}

// legendItem names a series, with its total (or average) over the range.
type legendItem struct {
	Name  string
	Color string
	Value float64
	Label string
}

// series is one group's values over the time slots. For line charts a NaN
// value means no data in that slot.
type series struct {
	Name   string
	Color  string
	Values []float64
	// Total is shown in the legend: the sum over the range for bars, the
	// average over the range for lines.
	Total float64
}

// timeAxis is the x axis: equal slots, each Step long, the first at Start.
type timeAxis struct {
	Start time.Time
	Step  time.Duration
	N     int
	// TickEvery is how far apart the time labels are; labels sit on slot
	// starts that are whole multiples of it (in UTC).
	TickEvery time.Duration
}

func (a timeAxis) slot(i int) time.Time { return a.Start.Add(time.Duration(i) * a.Step) }

// index returns the slot t falls in, or -1.
func (a timeAxis) index(t time.Time) int {
	if t.Before(a.Start) {
		return -1
	}
	i := int(t.Sub(a.Start) / a.Step)
	if i >= a.N {
		return -1
	}
	return i
}

func (a timeAxis) band() float64 { return float64(plotWidth) / float64(a.N) }

// slotLabel names a slot in tooltips.
func (a timeAxis) slotLabel(i int) string {
	t := a.slot(i).UTC()
	if a.Step >= 24*time.Hour {
		return t.Format("Jan 2")
	}
	return t.Format("Jan 2 15:04") + "–" + t.Add(a.Step).Format("15:04") + " UTC"
}

func newChart(id, title, note string, axis timeAxis) *chart {
	c := &chart{
		ID: id, Title: title, Note: note,
		Width: chartWidth, Height: chartHeight,
		PlotX: plotLeft, PlotY: plotTop, Right: plotLeft + plotWidth, Bottom: plotTop + plotHeight,
		YLabelX: plotLeft - 8, XLabelY: plotTop + plotHeight + 17, TickY: plotTop + plotHeight + 5,
		MidX: plotLeft + plotWidth/2, MidY: plotTop + plotHeight/2,
	}
	for i := range axis.N {
		t := axis.slot(i).UTC()
		if t.Unix()%int64(axis.TickEvery/time.Second) != 0 {
			continue
		}
		label := t.Format("15:04")
		if axis.TickEvery >= 24*time.Hour || (t.Hour() == 0 && t.Minute() == 0) {
			label = t.Format("Jan 2")
		}
		c.XTicks = append(c.XTicks, tick{Pos: px(plotLeft + float64(i)*axis.band()), Label: label})
	}
	return c
}

// stackedBars draws one bar per slot, stacked by series.
func stackedBars(id, title, note string, axis timeAxis, ss []series, format func(float64) string) *chart {
	c := newChart(id, title, note, axis)
	var top float64
	for i := range axis.N {
		var sum float64
		for _, s := range ss {
			sum += s.Values[i]
		}
		top = max(top, sum)
	}
	if top <= 0 {
		c.Empty = true
	}
	scale := c.valueAxis(top, format)
	band := axis.band()
	width := max(1, band*0.72)
	for i := range axis.N {
		base := 0.0
		for _, s := range ss {
			v := s.Values[i]
			if v <= 0 {
				continue
			}
			y0, y1 := scale(base), scale(base+v)
			c.Bars = append(c.Bars, bar{
				X: px(plotLeft + float64(i)*band + (band-width)/2), Y: px(y1),
				W: px(width), H: px(max(y0-y1, 0.5)),
				Color: s.Color, Series: s.Name, Value: v,
				Title: s.Name + " · " + axis.slotLabel(i) + ": " + format(v),
			})
			base += v
		}
	}
	c.legend(ss, format)
	return c
}

// lines draws one line per series through the slots that have a value.
func lines(id, title, note string, axis timeAxis, ss []series, format func(float64) string) *chart {
	c := newChart(id, title, note, axis)
	top := 0.0
	hasData := false
	for _, s := range ss {
		for _, v := range s.Values {
			if !math.IsNaN(v) {
				top = max(top, v)
				hasData = true
			}
		}
	}
	c.Empty = !hasData
	scale := c.valueAxis(top, format)
	band := axis.band()
	for _, s := range ss {
		l := line{Series: s.Name, Color: s.Color}
		var d []byte
		gap := true
		for i, v := range s.Values {
			if math.IsNaN(v) {
				gap = true
				continue
			}
			x, y := px(plotLeft+(float64(i)+0.5)*band), px(scale(v))
			if gap {
				d = append(d, 'M')
			} else {
				d = append(d, 'L')
			}
			d = append(d, x.String()+" "+y.String()+" "...)
			gap = false
			l.Points = append(l.Points, point{X: x, Y: y, Value: v,
				Title: s.Name + " · " + axis.slotLabel(i) + ": " + format(v)})
		}
		if len(l.Points) > 0 {
			l.D = string(d[:len(d)-1])
			c.Lines = append(c.Lines, l)
		}
	}
	c.legend(ss, format)
	return c
}

func (c *chart) legend(ss []series, format func(float64) string) {
	for _, s := range ss {
		c.Legend = append(c.Legend, legendItem{Name: s.Name, Color: s.Color, Value: s.Total, Label: format(s.Total)})
	}
}

// valueAxis sets the y ticks for values up to top and returns the function
// from a value to its y coordinate.
func (c *chart) valueAxis(top float64, format func(float64) string) func(float64) float64 {
	limit, step := niceScale(top)
	for v := 0.0; v <= limit*(1+1e-9); v += step {
		y := plotTop + plotHeight*(1-v/limit)
		c.YTicks = append(c.YTicks, tick{Pos: px(y), Text: px(y + 4), Label: format(v)})
	}
	return func(v float64) float64 { return plotTop + plotHeight*(1-v/limit) }
}

// niceScale returns an axis top at or above v and a tick step that divides
// it into at most maxTickCount steps of 1, 2 or 5 times a power of ten.
func niceScale(v float64) (top, step float64) {
	if !(v > 0) || math.IsInf(v, 0) {
		return 1, 0.25
	}
	raw := v / maxTickCount
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		step = m * mag
		if step >= raw {
			break
		}
	}
	top = math.Ceil(v/step-1e-9) * step
	return top, step
}

// The formats of the dashboard's numbers.

// formatCount writes a count compactly: 950, 12.3k, 4.5M.
func formatCount(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e9:
		return trimFloat(v/1e9, 1) + "B"
	case a >= 1e6:
		return trimFloat(v/1e6, 1) + "M"
	case a >= 1e4:
		return trimFloat(v/1e3, 1) + "k"
	case a >= 1e3:
		return trimFloat(v/1e3, 2) + "k"
	}
	return trimFloat(v, 1)
}

// formatUSD writes an amount in dollars with the precision small LLM costs
// need: $0.00042, $0.0312, $0.50, $1.25, $12k.
func formatUSD(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "$0"
	case a >= 1e4:
		return "$" + formatCount(v)
	case a >= 0.1:
		return "$" + strconv.FormatFloat(v, 'f', 2, 64)
	}
	// Three significant digits below a dollar.
	digits := max(2, 2-int(math.Floor(math.Log10(a))))
	return "$" + trimFloat(v, digits)
}

// formatSeconds writes a latency: 420 µs, 2.5 ms, 85 ms, 1.24 s.
func formatSeconds(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 1e-3:
		return strconv.FormatFloat(v*1e6, 'f', 0, 64) + " µs"
	case v < 1e-2:
		return trimFloat(v*1e3, 1) + " ms"
	case v < 1:
		return strconv.FormatFloat(v*1e3, 'f', 0, 64) + " ms"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64) + " s"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " s"
}

// formatPercent writes a fraction as a percentage: 0%, 2.5%, 100%.
func formatPercent(v float64) string {
	return trimFloat(v*100, 1) + "%"
}

// trimFloat formats v with at most digits decimals, without trailing zeros.
func trimFloat(v float64, digits int) string {
	s := strconv.FormatFloat(v, 'f', digits, 64)
	if digits > 0 {
		for s[len(s)-1] == '0' {
			s = s[:len(s)-1]
		}
		if s[len(s)-1] == '.' {
			s = s[:len(s)-1]
		}
	}
	return s
}
