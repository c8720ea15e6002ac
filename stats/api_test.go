package stats

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 3, 4, 12, 30, 0, 0, time.UTC)

func TestParseStatsQuery(t *testing.T) {
	for _, tt := range []struct {
		query  string
		want   Query
		format string
	}{
		{"", Query{}, "json"},
		{"group_by=model", Query{GroupBy: "model"}, "json"},
		{"group_by=user&format=csv", Query{GroupBy: "user"}, "csv"},
		{"group_by=key&format=json", Query{GroupBy: "key"}, "json"},
		{"group_by=upstream&from=-24h", Query{GroupBy: "upstream", From: now.Add(-24 * time.Hour)}, "json"},
		{"from=-7d&to=now", Query{From: now.Add(-7 * 24 * time.Hour), To: now}, "json"},
		{"from=-1d12h&to=-90m", Query{From: now.Add(-36 * time.Hour), To: now.Add(-90 * time.Minute)}, "json"},
		{"from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00%2B01:00", Query{
			From: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
			To:   time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC)}, "json"},
		{"bucket=1h&from=-24h", Query{From: now.Add(-24 * time.Hour), Bucket: time.Hour}, "json"},
		{"bucket=1d", Query{Bucket: 24 * time.Hour}, "json"},
		{"bucket=30m0s", Query{Bucket: 30 * time.Minute}, "json"},
	} {
		t.Run(tt.query, func(t *testing.T) {
			v, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			q, format, err := parseStatsQuery(v, now)
			if err != nil {
				t.Fatal(err)
			}
			if q.GroupBy != tt.want.GroupBy || !q.From.Equal(tt.want.From) || !q.To.Equal(tt.want.To) || q.Bucket != tt.want.Bucket {
				t.Errorf("query = %+v, want %+v", q, tt.want)
			}
			if format != tt.format {
				t.Errorf("format = %q, want %q", format, tt.format)
			}
		})
	}
}

func TestParseStatsQueryErrors(t *testing.T) {
	for _, tt := range []struct{ query, want string }{
		{"group_by=team", "bad group_by 'team': must be model, user, key or upstream"},
		{"grouby=model", "unknown parameter 'grouby'"},
		{"group_by=model&group_by=user", "parameter 'group_by' given 2 times"},
		{"from=yesterday", "bad from 'yesterday': must be an RFC 3339 time"},
		{"to=2026-03-01", "bad to '2026-03-01': must be an RFC 3339 time"},
		{"from=-", "bad from '-': a relative time is a minus sign and a length"},
		{"from=-0s", "bad from '-0s'"},
		{"from=--1h", "bad from '--1h'"},
		{"from=-1x", "bad from '-1x'"},
		{"from=-1d-5h", "bad from '-1d-5h'"},
		{"from=-99999999d", "bad from '-99999999d'"},
		{"from=-1h&to=-2h", "must be before to"},
		{"from=now&to=now", "must be before to"},
		{"bucket=0", "bad bucket '0': must be a length of at least 1s"},
		{"bucket=500ms", "bad bucket '500ms'"},
		{"bucket=-1h", "bad bucket '-1h'"},
		{"bucket=hour", "bad bucket 'hour'"},
		{"bucket=1s&from=-30d", "splits the range into 2592000 buckets; at most 10000 are allowed"},
		{"format=xml", "bad format 'xml': must be json or csv"},
	} {
		t.Run(tt.query, func(t *testing.T) {
			v, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = parseStatsQuery(v, now)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// FuzzParseStatsQuery checks that no query string makes the parser panic,
// and that what it accepts is a query a querier can answer: a known group,
// ordered bounds, and a bucket that is absent or at least a second.
func FuzzParseStatsQuery(f *testing.F) {
	for _, s := range []string{
		"", "group_by=model&from=-24h&bucket=1h", "from=2026-03-01T00:00:00Z&to=now&format=csv",
		"from=-1d12h", "bucket=1d&from=-9999d", "from=-9223372036854775807ns", "bucket=99999d",
		"to=-1h&from=-2h&group_by=upstream", "from=-1d-1h", "%zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, format, err := parseStatsQuery(v, now)
		if err != nil {
			return
		}
		switch q.GroupBy {
		case "", "model", "user", "key", "upstream":
		default:
			t.Fatalf("accepted group_by %q", q.GroupBy)
		}
		if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
			t.Fatalf("accepted from %v not before to %v", q.From, q.To)
		}
		if q.Bucket != 0 && q.Bucket < time.Second {
			t.Fatalf("accepted bucket %v", q.Bucket)
		}
		if format != "json" && format != "csv" {
			t.Fatalf("accepted format %q", format)
		}
	})
}
