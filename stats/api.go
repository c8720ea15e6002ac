package stats

import (
	"cmp"
	"encoding/csv"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmoneapi/llmoneapi/internal/adminapi"
)

func init() {
	adminapi.Handle("/llm/stats", caddy.AdminHandlerFunc(serveStatsAPI))
}

// maxBuckets bounds the rows a bucketed query over a bounded range may ask
// for, so that a typo such as bucket=1s over a month cannot make a querier
// build millions of rows.
const maxBuckets = 10000

// errNoQuerier is the answer when no configured recorder can answer queries.
var errNoQuerier = errors.New("no stats recorder that can answer queries is configured: " +
	"add `memory` or `database` to an llm_stats block")

// apiResponse is the JSON answer of GET /llm/stats.
type apiResponse struct {
	// GroupBy is the grouping asked for; "" for one total.
	GroupBy string `json:"group_by"`
	// From and To are the bounds applied, absolute; omitted when unbounded.
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
	// BucketSeconds is the bucket length; omitted when not bucketed.
	BucketSeconds int64 `json:"bucket_seconds,omitempty"`
	Rows          []Row `json:"rows"`
}

// serveStatsAPI answers GET /llm/stats?group_by=&from=&to=&bucket=&format=
// from the current querier.
func serveStatsAPI(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return adminapi.Error(http.StatusMethodNotAllowed, "method %s not allowed: the stats API answers GET", r.Method)
	}
	q, format, err := parseStatsQuery(r.URL.Query(), time.Now())
	if err != nil {
		return adminapi.Error(http.StatusBadRequest, "%v", err)
	}
	querier := CurrentQuerier()
	if querier == nil {
		return adminapi.Error(http.StatusServiceUnavailable, "%v", errNoQuerier)
	}
	rows, err := querier.Query(r.Context(), q)
	if err != nil {
		return fmt.Errorf("querying the stats: %w", err)
	}
	sortRows(rows)
	if format == "csv" {
		return writeCSV(w, rows)
	}
	if rows == nil {
		rows = []Row{}
	}
	return adminapi.WriteJSON(w, http.StatusOK, apiResponse{
		GroupBy:       q.GroupBy,
		From:          q.From,
		To:            q.To,
		BucketSeconds: int64(q.Bucket / time.Second),
		Rows:          rows,
	})
}

// sortRows orders rows by bucket, then group, so that answers are stable
// whatever order the querier found them in.
func sortRows(rows []Row) {
	slices.SortFunc(rows, func(a, b Row) int {
		if c := a.Bucket.Compare(b.Bucket); c != 0 {
			return c
		}
		return cmp.Compare(a.Group, b.Group)
	})
}

// parseStatsQuery reads the stats API's parameters. Every parameter is
// optional; unknown or repeated ones are errors, so that a typo is not
// silently answered with the totals of everything.
func parseStatsQuery(v url.Values, now time.Time) (q Query, format string, err error) {
	for name, vals := range v {
		switch name {
		case "group_by", "from", "to", "bucket", "format":
		default:
			return q, "", fmt.Errorf("unknown parameter '%s': the stats API takes group_by, from, to, bucket and format", name)
		}
		if len(vals) > 1 {
			return q, "", fmt.Errorf("parameter '%s' given %d times", name, len(vals))
		}
	}
	switch q.GroupBy = v.Get("group_by"); q.GroupBy {
	case "", "model", "user", "key", "upstream":
	default:
		return q, "", fmt.Errorf("bad group_by '%s': must be model, user, key or upstream (or absent, for one total)", q.GroupBy)
	}
	if q.From, err = parseTime("from", v.Get("from"), now); err != nil {
		return q, "", err
	}
	if q.To, err = parseTime("to", v.Get("to"), now); err != nil {
		return q, "", err
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return q, "", fmt.Errorf("from (%s) must be before to (%s)", q.From.Format(time.RFC3339), q.To.Format(time.RFC3339))
	}
	if b := v.Get("bucket"); b != "" {
		if q.Bucket, err = parseDuration(b); err != nil || q.Bucket < time.Second {
			return q, "", fmt.Errorf("bad bucket '%s': must be a length of at least 1s, such as 5m, 1h or 1d", b)
		}
		if !q.From.IsZero() {
			to := cmp.Or(q.To, now)
			if n := to.Sub(q.From) / q.Bucket; n > maxBuckets {
				return q, "", fmt.Errorf("bucket '%s' splits the range into %d buckets; at most %d are allowed", b, n, maxBuckets)
			}
		}
	}
	switch format = v.Get("format"); format {
	case "", "json":
		format = "json"
	case "csv":
	default:
		return q, "", fmt.Errorf("bad format '%s': must be json or csv", format)
	}
	return q, format, nil
}

// parseTime reads a time bound: RFC 3339 ("2026-01-02T15:04:05Z"), "now",
// or a time relative to now such as "-24h", "-90m" or "-7d". "" is zero,
// meaning unbounded.
func parseTime(name, s string, now time.Time) (time.Time, error) {
	switch {
	case s == "":
		return time.Time{}, nil
	case s == "now":
		return now, nil
	case strings.HasPrefix(s, "-"):
		d, err := parseDuration(s[1:])
		if err != nil || d <= 0 {
			return time.Time{}, fmt.Errorf("bad %s '%s': a relative time is a minus sign and a length, such as -24h, -90m or -7d", name, s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad %s '%s': must be an RFC 3339 time (2026-01-02T15:04:05Z), now, or relative to now (-24h, -7d)", name, s)
	}
	return t, nil
}

// parseDuration reads a Go duration that may start with a number of days:
// "7d", "1d12h", "90m".
func parseDuration(s string) (time.Duration, error) {
	var days time.Duration
	if before, after, ok := strings.Cut(s, "d"); ok {
		n, err := strconv.ParseUint(before, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("bad number of days '%s'", before)
		}
		days = time.Duration(n) * 24 * time.Hour
		if after == "" {
			return days, nil
		}
		s = after
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if days > 0 && (d < 0 || d > math.MaxInt64-days) {
		return 0, fmt.Errorf("bad length after the days: '%s'", s)
	}
	return days + d, nil
}

// csvColumns are Row's fields, in order, with their JSON names as headers,
// so that the CSV always has the same columns as the JSON rows.
var csvColumns = func() (cols []csvColumn) {
	t := reflect.TypeFor[Row]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		cols = append(cols, csvColumn{name, i})
	}
	return cols
}()

// csvColumn is one column of the CSV: a header and the Row field it shows.
type csvColumn struct {
	name  string
	index int
}

// writeCSV answers with rows as CSV: a header line of the JSON field names,
// then one line per row. Times are RFC 3339, an absent bucket is empty.
func writeCSV(w http.ResponseWriter, rows []Row) error {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	record := make([]string, len(csvColumns))
	for i, c := range csvColumns {
		record[i] = c.name
	}
	if err := cw.Write(record); err != nil {
		return fmt.Errorf("writing the CSV header: %w", err)
	}
	for _, row := range rows {
		v := reflect.ValueOf(row)
		for i, c := range csvColumns {
			record[i] = csvCell(v.Field(c.index))
		}
		if err := cw.Write(record); err != nil {
			return fmt.Errorf("writing a CSV row: %w", err)
		}
	}
	cw.Flush()
	return cw.Error()
}

// csvCell formats one field of a Row.
func csvCell(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case string:
		return x
	case time.Time:
		if x.IsZero() {
			return ""
		}
		return x.UTC().Format(time.RFC3339)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	// A field type added to Row without a case here shows up in the
	// CSV test, which compares every column with the JSON.
	return fmt.Sprint(v.Interface())
}
