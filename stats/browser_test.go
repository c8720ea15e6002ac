package stats_test

import (
	"bytes"
	"context"
	"flag"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

var screenshotCopy = flag.String("dashboard.screenshot", "", "also write the browser test's screenshot of the dashboard to this file")

// chromium runs headless Chromium (Debian's chromium package) on url with
// the extra flags given and returns what it printed.
func chromium(t *testing.T, url string, extra ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("this test needs Chromium: install Debian's package (apt-get install -y chromium): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--window-size=1320,2000", "--hide-scrollbars"}, extra...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(extra, " "), err, stderr.Bytes())
	}
	return out
}

// TestDashboardInChromium sends calls through a real gateway, loads the
// dashboard in headless Chromium, and reads the page as the browser
// rendered it: the headline numbers, the charts' bars and legends, and the
// tables must be those of the calls sent. It also takes a screenshot and
// checks that the charts were painted.
func TestDashboardInChromium(t *testing.T) {
	g, broken := startSite(t, "memory")
	sent := sendTraffic(t, g, broken)
	waitForStats(t, g, sent.all.Requests)
	// Chromium sends the URL's credentials to basic_auth.
	url := strings.Replace(g.URL, "http://", "http://admin:"+dashboardPassword+"@", 1) + "/dashboard?range=1h"

	dom, err := html.Parse(bytes.NewReader(chromium(t, url, "--dump-dom")))
	if err != nil {
		t.Fatal(err)
	}
	if title := text(find(dom, func(n *html.Node) bool { return n.Data == "title" })); title != "Team gateway · usage" {
		t.Fatalf("the browser shows %q, not the dashboard", title)
	}

	// The headline numbers, as shown and as data.
	for id, want := range map[string]string{
		"requests": strconv.FormatInt(sent.all.Requests, 10),
		"tokens":   strconv.FormatInt(sent.all.Total, 10),
	} {
		tile := byID(t, dom, "tile-"+id)
		if got := attr(tile, "data-value"); got != want {
			t.Errorf("tile %s: data-value %s, want %s", id, got, want)
		}
		if got := text(find(tile, hasClass("value"))); got != want {
			t.Errorf("tile %s shows %q, want %s", id, got, want)
		}
	}
	if got, _ := strconv.ParseFloat(attr(byID(t, dom, "tile-cost"), "data-value"), 64); math.Abs(got-sent.all.Cost) > 1e-12 {
		t.Errorf("cost tile %v, want %v", got, sent.all.Cost)
	}

	// Each chart's bars add up, per model, to what was sent, and so do the
	// legends' totals.
	for chartID, value := range map[string]func(*totals) float64{
		"requests": func(x *totals) float64 { return float64(x.Requests) },
		"tokens":   func(x *totals) float64 { return float64(x.Total) },
		"cost":     func(x *totals) float64 { return x.Cost },
	} {
		c := byID(t, dom, "chart-"+chartID)
		bars := map[string]float64{}
		for _, b := range findAll(c, hasClass("bar")) {
			v, _ := strconv.ParseFloat(attr(b, "data-value"), 64)
			bars[attr(b, "data-series")] += v
		}
		legend := map[string]float64{}
		for _, li := range findAll(c, func(n *html.Node) bool { return n.Data == "li" }) {
			legend[attr(li, "data-series")], _ = strconv.ParseFloat(attr(li, "data-value"), 64)
		}
		for model, w := range sent.groups["model"] {
			want := value(w)
			if math.Abs(bars[model]-want) > 1e-9 || math.Abs(legend[model]-want) > 1e-9 {
				t.Errorf("%s chart, %s: bars add up to %v, legend says %v; sent %v", chartID, model, bars[model], legend[model], want)
			}
		}
	}
	latency := byID(t, dom, "chart-latency")
	if n := len(findAll(latency, hasClass("dot"))); n < len(sent.groups["model"]) {
		t.Errorf("latency chart has %d points for %d models", n, len(sent.groups["model"]))
	}

	// The tables, by their visible cells.
	for table, by := range map[string]string{"users": "user", "keys": "key", "models": "model", "upstreams": "upstream"} {
		section := byID(t, dom, table)
		for name, w := range sent.groups[by] {
			row := find(section, func(n *html.Node) bool { return n.Data == "tr" && attr(n, "data-name") == name })
			if row == nil {
				t.Errorf("%s table has no row for %s", table, name)
				continue
			}
			cell := func(col string) string {
				return text(find(row, func(n *html.Node) bool { return attr(n, "data-col") == col }))
			}
			if got := cell("requests"); got != strconv.FormatInt(w.Requests, 10) {
				t.Errorf("%s table, %s: %s requests, want %d", table, name, got, w.Requests)
			}
			if table != "upstreams" {
				if got := cell("tokens"); got != strconv.FormatInt(w.Total, 10) {
					t.Errorf("%s table, %s: %s tokens, want %d", table, name, got, w.Total)
				}
			}
		}
	}
	if badge := text(find(byID(t, dom, "upstreams"), func(n *html.Node) bool {
		return n.Data == "tr" && attr(n, "data-name") == broken
	})); !strings.Contains(badge, "failing") {
		t.Errorf("the broken upstream's row reads %q; it should say failing", badge)
	}

	// The screenshot: a real image of the page, with the charts painted in
	// the first series' color.
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	chromium(t, url, "--screenshot="+shot)
	raw, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 1000 || b.Dy() < 1000 {
		t.Errorf("screenshot is %dx%d", b.Dx(), b.Dy())
	}
	if n := countColor(img, color.RGBA{0x4f, 0x6b, 0xed, 0xff}); n < 200 {
		t.Errorf("only %d pixels of the first series' color: the charts were not painted", n)
	}
	if *screenshotCopy != "" {
		if err := os.WriteFile(*screenshotCopy, raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func countColor(img image.Image, c color.RGBA) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if uint8(r>>8) == c.R && uint8(g>>8) == c.G && uint8(bl>>8) == c.B {
				n++
			}
		}
	}
	return n
}

// The DOM helpers.

func find(n *html.Node, match func(*html.Node) bool) *html.Node {
	if n == nil {
		return nil
	}
	if match(n) {
		return n
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if f := find(c, match); f != nil {
			return f
		}
	}
	return nil
}

func findAll(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func byID(t *testing.T, n *html.Node, id string) *html.Node {
	t.Helper()
	el := find(n, func(n *html.Node) bool { return attr(n, "id") == id })
	if el == nil {
		t.Fatalf("the page has no #%s", id)
	}
	return el
}

func hasClass(class string) func(*html.Node) bool {
	return func(n *html.Node) bool {
		return n.Type == html.ElementNode && strings.Contains(" "+attr(n, "class")+" ", " "+class+" ")
	}
}

func attr(n *html.Node, name string) string {
	if n == nil {
		return ""
	}
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

// text is the node's text as shown, with runs of spaces collapsed.
func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n == nil {
			return
		}
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.Join(strings.Fields(b.String()), " ")
}
