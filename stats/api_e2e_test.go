package stats_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmoneapi/llmoneapi/internal/llmtest"
	"github.com/llmoneapi/llmoneapi/stats"
)

// TestStatsAPI sends calls through a real gateway and checks that the
// stats API adds them up as sent, per group, per time bucket, in JSON and
// in CSV.
func TestStatsAPI(t *testing.T) {
	eachQuerier(t, func(t *testing.T, config, _ string) { testStatsAPI(t, config) })
}

func testStatsAPI(t *testing.T, config string) {
	g, broken := startSite(t, config)
	start := time.Now()
	sent := sendTraffic(t, g, broken)
	waitForStats(t, g, sent.all.Requests)

	if sent.all.Cost <= 0 || sent.all.Total <= 0 || sent.all.Errors != 1 {
		t.Fatalf("the traffic should have cost, tokens and one error: %+v", sent.all)
	}
	total, _ := getStats(t, g, "", http.StatusOK)
	checkRow(t, "total", total.Rows[0], sent.all)
	if total.GroupBy != "" || !total.From.IsZero() || !total.To.IsZero() || total.BucketSeconds != 0 {
		t.Errorf("an unbounded query echoed %+v", total)
	}

	for by, want := range sent.groups {
		got, _ := getStats(t, g, "group_by="+by, http.StatusOK)
		if got.GroupBy != by {
			t.Errorf("group_by=%s echoed %q", by, got.GroupBy)
		}
		if len(got.Rows) != len(want) {
			t.Errorf("group_by=%s: %d rows, want %d: %+v", by, len(got.Rows), len(want), got.Rows)
		}
		for i, row := range got.Rows {
			if i > 0 && got.Rows[i-1].Group >= row.Group {
				t.Errorf("group_by=%s: rows not sorted by group: %q before %q", by, got.Rows[i-1].Group, row.Group)
			}
			w, ok := want[row.Group]
			if !ok {
				t.Errorf("group_by=%s: row for %q, which no call had", by, row.Group)
				continue
			}
			checkRow(t, by+" "+row.Group, row, *w)
		}
	}
	// The broken upstream's call is its error, and only error.
	upstreams, _ := getStats(t, g, "group_by=upstream", http.StatusOK)
	for _, r := range upstreams.Rows {
		if r.Group == broken && (r.Requests != 1 || r.Errors != 1) {
			t.Errorf("broken upstream %s: %d requests, %d errors; want 1 and 1", broken, r.Requests, r.Errors)
		}
	}

	// Buckets split the same calls over time; their sum is the total. (A
	// querier may answer in coarser buckets than asked, at its own
	// resolution, but never puts a call in a bucket after it.)
	bucketed, _ := getStats(t, g, "group_by=model&from=-30m&bucket=1m", http.StatusOK)
	if bucketed.BucketSeconds != 60 || bucketed.From.After(start.Add(-30*time.Minute+time.Second)) || bucketed.From.Before(start.Add(-31*time.Minute)) {
		t.Errorf("bucketed query echoed bucket %ds from %v, want 60s from half an hour ago", bucketed.BucketSeconds, bucketed.From)
	}
	sums := map[string]int64{}
	for _, r := range bucketed.Rows {
		if r.Bucket.IsZero() || r.Bucket.Before(start.Add(-time.Hour)) || r.Bucket.After(time.Now()) {
			t.Errorf("bucket %v cannot hold the calls, sent from %v", r.Bucket, start)
		}
		sums[r.Group] += r.Requests
	}
	for model, w := range sent.groups["model"] {
		if sums[model] != w.Requests {
			t.Errorf("model %s: buckets add up to %d requests, want %d", model, sums[model], w.Requests)
		}
	}

	// Bounds apply: nothing was sent two days ago, or in an hour. (Far
	// enough for a querier that applies bounds to its hourly slots.)
	for _, q := range []string{"to=-2d", "from=" + url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339))} {
		got, body := getStats(t, g, q, http.StatusOK)
		if len(got.Rows) != 0 || !strings.Contains(body, `"rows": []`) {
			t.Errorf("%s: got %s, want no rows", q, body)
		}
	}

	for _, q := range []string{"group_by=user", "group_by=model&from=-30m&bucket=1m", ""} {
		checkCSV(t, g, q)
	}
}

// TestStatsAPIErrors checks the admin endpoint's answers to bad
// parameters, to methods other than GET, and when no recorder that can
// answer is configured.
func TestStatsAPIErrors(t *testing.T) {
	g, broken := startSite(t, "testquery")
	for _, tt := range []struct{ query, want string }{
		{"group_by=team", "bad group_by 'team': must be model, user, key or upstream"},
		{"from=yesterday", "bad from 'yesterday'"},
		{"from=-1h&to=-2h", "must be before to"},
		{"bucket=10ms", "bad bucket '10ms'"},
		{"format=xml", "bad format 'xml'"},
		{"groupby=model", "unknown parameter 'groupby'"},
	} {
		_, body := getStats(t, g, tt.query, http.StatusBadRequest)
		var e struct{ Error string }
		if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Error, tt.want) {
			t.Errorf("%s: got %s, want an error containing %q", tt.query, body, tt.want)
		}
	}

	resp, err := http.Post(g.AdminURL+"/llm/stats", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: status %d, Allow %q; want 405 and GET, HEAD", resp.StatusCode, resp.Header.Get("Allow"))
	}

	// With only the log recorder nothing can answer, and the API says what
	// to configure.
	g.Load(siteWith("log", broken))
	_, body := getStats(t, g, "group_by=model", http.StatusServiceUnavailable)
	if !strings.Contains(body, "no stats recorder that can answer queries is configured") || !strings.Contains(body, "memory") {
		t.Errorf("without a querier: %s", body)
	}
}

// checkCSV compares the CSV answer to a query with the JSON one: same
// columns as the JSON fields, same rows, same values.
func checkCSV(t *testing.T, g *llmtest.Gateway, query string) {
	t.Helper()
	jsonRows, _ := getStats(t, g, query, http.StatusOK)
	resp, err := http.Get(g.AdminURL + "/llm/stats?" + query + "&format=csv")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/csv; charset=utf-8" {
		t.Fatalf("%s: status %d, Content-Type %q", query, resp.StatusCode, ct)
	}
	records, err := csv.NewReader(resp.Body).ReadAll()
	if err != nil {
		t.Fatalf("%s: the CSV does not parse: %v", query, err)
	}
	if want := rowKeys(); !reflect.DeepEqual(records[0], want) {
		t.Fatalf("%s: CSV header %v, want the JSON fields %v", query, records[0], want)
	}
	if len(records)-1 != len(jsonRows.Rows) {
		t.Fatalf("%s: %d CSV rows, %d JSON rows", query, len(records)-1, len(jsonRows.Rows))
	}
	for i, rec := range records[1:] {
		row := map[string]string{}
		for j, name := range records[0] {
			row[name] = rec[j]
		}
		if back := csvRow(t, row); !reflect.DeepEqual(back, jsonRows.Rows[i]) {
			t.Errorf("%s: CSV row %d reads back as\n%+v\nwant the JSON row\n%+v", query, i, back, jsonRows.Rows[i])
		}
	}
}

// rowKeys returns the JSON field names of a stats row, in order.
func rowKeys() []string {
	typ := reflect.TypeFor[stats.Row]()
	var keys []string
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		keys = append(keys, name)
	}
	return keys
}

// csvRow reads a CSV record back into a Row through its JSON form.
func csvRow(t *testing.T, rec map[string]string) stats.Row {
	t.Helper()
	m := map[string]any{}
	for k, v := range rec {
		switch {
		case k == "group":
			m[k] = v
		case k == "bucket":
			if v != "" {
				m[k] = v
			}
		case v != "":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("column %s: %q is not a number", k, v)
			}
			m[k] = f
		}
	}
	b, _ := json.Marshal(m)
	var r stats.Row
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&r); err != nil {
		t.Fatalf("reading %s back: %v", b, err)
	}
	return r
}
