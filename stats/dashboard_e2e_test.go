package stats_test

import (
	"html"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/llmoneapi/llmoneapi/internal/llmtest"
)

// get fetches url, with basic auth when user is set.
func get(t *testing.T, method, url, user string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, dashboardPassword)
	}
	// Redirects are the test's to see.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// tileValue returns the unformatted number of a headline tile.
func tileValue(t *testing.T, page, id string) string {
	t.Helper()
	m := regexp.MustCompile(`id="tile-` + id + `" data-value="([^"]*)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no tile %s in the page", id)
	}
	return m[1]
}

// TestDashboardServes checks the mounted handler and the admin page:
// protection, headers, the empty page, the page with data, bad parameters
// and the page without a querier.
func TestDashboardServes(t *testing.T) {
	eachQuerier(t, testDashboardServes)
}

func testDashboardServes(t *testing.T, config, module string) {
	g, broken := startSite(t, config)
	dashboard := g.URL + "/dashboard"

	if resp, _ := get(t, "GET", dashboard, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without credentials: status %d, want basic_auth's 401", resp.StatusCode)
	}

	// No calls yet: the page works and says so.
	resp, page := get(t, "GET", dashboard, "admin")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, page)
	}
	for h, want := range map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Errorf("Content-Security-Policy %q should allow nothing but the page's style", csp)
	}
	for _, want := range []string{"<title>Team gateway · usage</title>", "No calls in this range yet", "No calls in this range.", "stats from " + module} {
		if !strings.Contains(page, want) {
			t.Errorf("the empty page lacks %q", want)
		}
	}
	if v := tileValue(t, page, "requests"); v != "0" {
		t.Errorf("requests tile %s before any call", v)
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Error("the page has a script or loads something from elsewhere")
	}

	sent := sendTraffic(t, g, broken)
	waitForStats(t, g, sent.all.Requests)
	for _, rng := range []string{"", "?range=1h", "?range=24h&by=user", "?range=7d", "?range=30d&by=model"} {
		resp, page := get(t, "GET", dashboard+rng, "admin")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", rng, resp.StatusCode)
		}
		if v := tileValue(t, page, "requests"); v != "7" {
			t.Errorf("%s: requests tile %s, want the 7 calls sent", rng, v)
		}
		if strings.Contains(page, "No calls in this range yet") {
			t.Errorf("%s: a chart says it has no calls", rng)
		}
	}
	// Looking at the dashboard, outside llm_stats, is no call.
	waitForStats(t, g, sent.all.Requests)

	for _, tt := range []struct {
		method, query string
		status        int
	}{
		{"POST", "", http.StatusMethodNotAllowed},
		{"GET", "?range=6h", http.StatusBadRequest},
		{"GET", "?by=key", http.StatusBadRequest},
		{"GET", "?from=-1h", http.StatusBadRequest},
		{"HEAD", "", http.StatusOK},
	} {
		if resp, _ := get(t, tt.method, dashboard+tt.query, "admin"); resp.StatusCode != tt.status {
			t.Errorf("%s %s: status %d, want %d", tt.method, tt.query, resp.StatusCode, tt.status)
		}
	}

	// The admin endpoint's page is the same, with links to the stats API.
	resp, page = get(t, "GET", g.AdminURL+"/llm/?range=1h", "")
	if resp.StatusCode != http.StatusOK || tileValue(t, page, "requests") != "7" {
		t.Fatalf("admin page: status %d\n%s", resp.StatusCode, page)
	}
	if !strings.Contains(page, "<title>LLM gateway · usage</title>") {
		t.Error("the admin page lacks its default title")
	}
	// Its links to the stats API answer with the same calls.
	links := regexp.MustCompile(`href="(/llm/stats\?[^"]*)"`).FindAllStringSubmatch(page, -1)
	if len(links) != 2 {
		t.Errorf("the admin page has %d links to the stats API, want JSON and CSV", len(links))
	}
	for _, m := range links {
		link := html.UnescapeString(m[1])
		resp, body := get(t, "GET", g.AdminURL+link, "")
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "gpt-4o-mini") {
			t.Errorf("the page's link %s: status %d: %s", link, resp.StatusCode, body)
		}
	}
	if resp, _ := get(t, "GET", g.AdminURL+"/llm", ""); resp.StatusCode/100 != 3 || resp.Header.Get("Location") != "/llm/" {
		t.Errorf("/llm: status %d to %q, want a redirect to /llm/", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, body := get(t, "GET", g.AdminURL+"/llm/nothing-here", ""); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "the dashboard is at /llm/") {
		t.Errorf("/llm/nothing-here: status %d: %s", resp.StatusCode, body)
	}

	// Without a recorder that can answer, the page still draws, and says
	// what to configure.
	g.Load(siteWith("log", broken))
	resp, page = get(t, "GET", dashboard, "admin")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "no stats recorder that can answer queries is configured") {
		t.Errorf("without a querier: status %d\n%s", resp.StatusCode, page)
	}
}

// The dashboard's Caddyfile and JSON forms, and its place in the order of
// directives: before llm_route, which answers every other path.
func TestDashboardCaddyfile(t *testing.T) {
	g := llmtest.Start(t, nil, `:{PORT} {
	llm_route {
		model m {
			upstream openai {UPSTREAM} `+llmtest.UpstreamKey+`
		}
	}
	llm_dashboard /usage* {
		title "Ops usage"
	}
}
`)
	if _, page := get(t, "GET", g.URL+"/usage", ""); !strings.Contains(page, "<title>Ops usage · usage</title>") {
		t.Errorf("/usage is not the dashboard:\n%s", page)
	}
	if resp, body := get(t, "GET", g.URL+"/v1/models", ""); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"id":"m"`) {
		t.Errorf("/v1/models: status %d: %s", resp.StatusCode, body)
	}
	// The config as Caddy holds it: the JSON form of the directive.
	_, cfg := get(t, "GET", g.AdminURL+"/config/apps/http/servers/srv0/routes/0/handle/0", "")
	if strings.TrimSpace(cfg) != `{"handler":"llm_dashboard","title":"Ops usage"}` {
		t.Errorf("JSON form %s", cfg)
	}
}
