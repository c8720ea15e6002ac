package auth

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/llmoneapi/llmoneapi/internal/sqldb"
	"github.com/llmoneapi/llmoneapi/llm"
)

const postgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// testStore is a key table of its own for one test: an SQLite file in the
// test's directory, or a uniquely named table in the machine's PostgreSQL,
// dropped at the end.
type testStore struct {
	dialect, dsn, table string
	keys                *keyTable
}

func newTestStore(t testing.TB, dialect string) *testStore {
	t.Helper()
	s := &testStore{dialect: dialect, table: defaultKeyTable}
	switch dialect {
	case sqldb.SQLite:
		s.dsn = filepath.Join(t.TempDir(), "keys.db")
	case sqldb.Postgres:
		s.dsn = postgresDSN
		s.table = "llm_keys_" + strings.ToLower(rand.Text()[:10])
	}
	keys, err := openKeyTable(context.Background(), s.dialect, s.dsn, s.table)
	if err != nil {
		t.Fatal(err)
	}
	s.keys = keys
	t.Cleanup(func() {
		if dialect == sqldb.Postgres {
			ctx := context.Background()
			if _, err := keys.db.ExecContext(ctx, `DROP TABLE `+s.table); err != nil {
				t.Errorf("dropping %s: %v", s.table, err)
			}
			if _, err := keys.db.ExecContext(ctx, `DELETE FROM llm_schema_migrations WHERE component = $1`, "auth_keys:"+s.table); err != nil {
				t.Errorf("forgetting the migrations of %s: %v", s.table, err)
			}
		}
		sqldb.Release(keys.db)
	})
	return s
}

// config is the JSON of an llm_auth handler with this store's database
// authenticator, extra settings and then the other authenticators.
func (s *testStore) config(extra string, others ...string) string {
	db := fmt.Sprintf(`{"source": "database", "dialect": %q, "dsn": %q, "table": %q%s}`, s.dialect, s.dsn, s.table, extra)
	return `{"authenticators": [` + strings.Join(append([]string{db}, others...), ", ") + `]}`
}

func (s *testStore) create(t testing.TB, c KeyChange) (*StoredKey, string) {
	t.Helper()
	k, key, err := s.keys.Create(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return k, key
}

func ptr[T any](v T) *T { return &v }

func forEachStore(t *testing.T, test func(t *testing.T, s *testStore)) {
	for _, dialect := range []string{sqldb.SQLite, sqldb.Postgres} {
		t.Run(dialect, func(t *testing.T) { test(t, newTestStore(t, dialect)) })
	}
}

func TestDatabaseAuthenticate(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *testStore) {
		k, key := s.create(t, KeyChange{
			User: ptr("alice"), Team: ptr("research"), Name: ptr("notebook"),
			Models: &llm.Scope{"gpt-4o-mini", "claude-*"},
			RPM:    ptr[int64](60), TPM: ptr[int64](100000), MaxConcurrent: ptr[int64](4),
			Quota: ptr[int64](5000000), QuotaPeriod: ptr(llm.PeriodMonthly),
			Budget: ptr(20.5), BudgetPeriod: ptr(llm.PeriodWeekly),
			ExpiresAt: ptr("1h"),
		})
		if !strings.HasPrefix(key, "sk-llm-"+k.ID+"-") {
			t.Fatalf("key %q does not read sk-llm-<id>-<secret> with id %s", key, k.ID)
		}
		h := mustLoad(t, s.config(""))
		var got *llm.Identity
		w := serve(t, h, withKey(chat("claude-sonnet"), key), func(w http.ResponseWriter, r *http.Request) error {
			got = llm.CallFrom(r).Identity
			return nil
		})
		if w.Code != http.StatusOK {
			t.Fatalf("status %d, body %s", w.Code, w.Body)
		}
		want := llm.Identity{User: "alice", KeyID: k.ID, Team: "research", Models: llm.Scope{"gpt-4o-mini", "claude-*"},
			Limits: llm.Limits{RPM: 60, TPM: 100000, MaxConcurrent: 4, Quota: 5000000, QuotaPeriod: llm.PeriodMonthly, Budget: 20.5, BudgetPeriod: llm.PeriodWeekly}}
		if gotJSON, wantJSON := jsonOf(t, got), jsonOf(t, want); gotJSON != wantJSON {
			t.Errorf("identity = %s, want %s", gotJSON, wantJSON)
		}
		wantError(t, serve(t, h, withKey(chat("gpt-4o"), key), mustNotCall(t)), http.StatusForbidden, llm.TypePermission, "model_not_allowed")

		// The right id with another secret, an unknown id, a key in another
		// format: all unknown, and none of them echoed.
		other, _ := newKey()
		forged := "sk-llm-" + k.ID + other[len("sk-llm-")+idLen:]
		for _, bad := range []string{forged, other, key[:len(key)-1], key + "A", "sk-alice"} {
			w := serve(t, h, withKey(chat("gpt-4o-mini"), bad), mustNotCall(t))
			wantError(t, w, http.StatusUnauthorized, llm.TypeAuthentication, "invalid_api_key")
			if strings.Contains(w.Body.String(), bad) {
				t.Errorf("the response echoes the key: %s", w.Body)
			}
		}
	})
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDatabaseRefusals(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *testStore) {
		disabled, disabledKey := s.create(t, KeyChange{User: ptr("d"), Disabled: ptr(true)})
		expired, expiredKey := s.create(t, KeyChange{User: ptr("e"), ExpiresAt: ptr(time.Now().Add(-time.Minute).Format(time.RFC3339))})
		revoked, revokedKey := s.create(t, KeyChange{User: ptr("r")})
		if _, err := s.keys.Revoke(context.Background(), revoked.ID); err != nil {
			t.Fatal(err)
		}
		h := mustLoad(t, s.config(""))
		for _, tc := range []struct {
			key, code, id, says string
		}{
			{disabledKey, "api_key_disabled", disabled.ID, "disabled"},
			{expiredKey, "api_key_expired", expired.ID, "expired"},
			{revokedKey, "api_key_revoked", revoked.ID, "revoked"},
		} {
			w := serve(t, h, withKey(chat("m"), tc.key), mustNotCall(t))
			e := wantError(t, w, http.StatusUnauthorized, llm.TypeAuthentication, tc.code)
			if !strings.Contains(e.Message, "'"+tc.id+"'") || !strings.Contains(e.Message, tc.says) {
				t.Errorf("%s: message %q should name the key id and say it is %s", tc.code, e.Message, tc.says)
			}
			if strings.Contains(w.Body.String(), tc.key[len("sk-llm-")+idLen:]) {
				t.Errorf("%s: the response holds the secret: %s", tc.code, w.Body)
			}
		}
	})
}

// A refusal is final: a later authenticator that knows the same key is not
// asked, or revoking a database key would be undone by a stale static copy.
func TestRefusalStopsTheChain(t *testing.T) {
	s := newTestStore(t, sqldb.SQLite)
	_, key := s.create(t, KeyChange{Disabled: ptr(true)})
	h := mustLoad(t, s.config("", `{"source": "fake", "users": {"`+key+`": "again"}}`))
	wantError(t, serve(t, h, withKey(chat("m"), key), mustNotCall(t)), http.StatusUnauthorized, llm.TypeAuthentication, "api_key_disabled")
}

// Another instance (here: a direct write to the store) changes a key: this
// one sees it once the cache time has passed, not before.
func TestDatabaseCache(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *testStore) {
		const ttl = 300 * time.Millisecond
		k, key := s.create(t, KeyChange{User: ptr("alice")})
		h := mustLoad(t, s.config(`, "cache_ttl": "300ms", "negative_cache_ttl": "300ms"`))
		status := func(key string) int { return serve(t, h, withKey(chat("m"), key), nil).Code }
		if got := status(key); got != http.StatusOK {
			t.Fatalf("status %d", got)
		}
		start := time.Now()
		if _, err := s.keys.Update(context.Background(), k.ID, KeyChange{Disabled: ptr(true)}); err != nil {
			t.Fatal(err)
		}
		if got := status(key); got != http.StatusOK && time.Since(start) < ttl {
			t.Errorf("disabled elsewhere: status %d within the cache time, want the cached 200", got)
		}
		waitFor(t, 2*ttl, func() bool { return status(key) == http.StatusUnauthorized })

		// Unknown ids are remembered too: a key written after a miss works
		// only when the miss has expired.
		fresh, id := newKey()
		if got := status(fresh); got != http.StatusUnauthorized {
			t.Fatalf("unknown key: status %d", got)
		}
		start = time.Now()
		insertKey(t, s, id, fresh)
		if got := status(fresh); got != http.StatusUnauthorized && time.Since(start) < ttl {
			t.Errorf("new key: status %d within the negative cache time, want the cached 401", got)
		}
		waitFor(t, 2*ttl, func() bool { return status(fresh) == http.StatusOK })
	})
}

// insertKey writes a key with a chosen id, as another instance would.
func insertKey(t *testing.T, s *testStore, id, key string) {
	t.Helper()
	digest := storedHash(key)
	_, err := s.keys.db.ExecContext(context.Background(), s.keys.query(`INSERT INTO $T (id, key_hash, created_at) VALUES (?, ?, ?)`),
		id, fmt.Sprintf("%x", digest), time.Now().UTC())
	if err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not so after %v", within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A revoke through this instance's store takes effect at once, whatever
// the cache time.
func TestDatabaseForget(t *testing.T) {
	s := newTestStore(t, sqldb.SQLite)
	k, key := s.create(t, KeyChange{})
	h := mustLoad(t, s.config(`, "cache_ttl": "1h"`))
	if w := serve(t, h, withKey(chat("m"), key), nil); w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	store := h.authenticators[0].(*Database).store
	if _, err := store.revoke(context.Background(), k.ID); err != nil {
		t.Fatal(err)
	}
	wantError(t, serve(t, h, withKey(chat("m"), key), mustNotCall(t)), http.StatusUnauthorized, llm.TypeAuthentication, "api_key_revoked")
}

func TestDatabaseLastUsed(t *testing.T) {
	defer func(d time.Duration) { touchInterval = d }(touchInterval)
	touchInterval = 100 * time.Millisecond
	forEachStore(t, func(t *testing.T, s *testStore) {
		k, key := s.create(t, KeyChange{})
		h := mustLoad(t, s.config(""))
		before := time.Now().Add(-time.Second)
		for range 20 {
			if w := serve(t, h, withKey(chat("m"), key), nil); w.Code != http.StatusOK {
				t.Fatalf("status %d", w.Code)
			}
		}
		got, err := s.keys.Get(context.Background(), k.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.LastUsedAt != nil {
			t.Errorf("last_used_at written on the request path: %v", got.LastUsedAt)
		}
		waitFor(t, 2*touchInterval, func() bool {
			got, err = s.keys.Get(context.Background(), k.ID)
			return err == nil && got.LastUsedAt != nil
		})
		if got.LastUsedAt.Before(before) || got.LastUsedAt.After(time.Now()) {
			t.Errorf("last_used_at = %v, want about now", got.LastUsedAt)
		}
	})
}

// observe swaps the handler's logger for one the test reads.
func observe(h *Handler) *observer.ObservedLogs {
	core, logs := observer.New(zap.InfoLevel)
	h.logger = zap.New(core)
	return logs
}

// A database that is not there: its keys get 503, with a log line that
// names no key; static keys work throughout.
func TestDatabaseUnreachable(t *testing.T) {
	port := freePort(t)
	h := mustLoad(t, `{"authenticators": [
		{"source": "database", "dialect": "postgres", "dsn": "postgres://postgres@127.0.0.1:`+port+`/test?sslmode=disable&connect_timeout=2"},
		{"source": "static", "keys": [{"key": "sk-static-team", "user": "team"}]}
	]}`)
	logs := observe(h)
	if w := serve(t, h, withKey(chat("m"), "sk-static-team"), nil); w.Code != http.StatusOK {
		t.Errorf("static key with the database down: status %d, body %s", w.Code, w.Body)
	}
	key, _ := newKey()
	wantError(t, serve(t, h, withKey(chat("m"), key), mustNotCall(t)), http.StatusServiceUnavailable, llm.TypeServer, "auth_unavailable")
	entries := logs.FilterMessage("could not check an API key").All()
	if len(entries) != 1 {
		t.Fatalf("log lines %v, want one about the key check", logs.All())
	}
	if msg := fmt.Sprint(entries[0].ContextMap()); !strings.Contains(msg, "authenticator database") || strings.Contains(msg, key) {
		t.Errorf("log line %s should name the authenticator and not the key", msg)
	}
}

// The database goes away while the gateway runs (a proxy in front of
// PostgreSQL is stopped), then comes back: static keys never notice, a
// database key already cached keeps working for its cache time, one not
// cached gets 503, and all recover without a reload.
func TestDatabaseOutage(t *testing.T) {
	s := newTestStore(t, sqldb.Postgres)
	_, cachedKey := s.create(t, KeyChange{User: ptr("cached")})
	_, coldKey := s.create(t, KeyChange{User: ptr("cold")})
	proxy := startProxy(t, "127.0.0.1:5432")
	dsn := "postgres://postgres@" + proxy.addr + "/test?sslmode=disable&connect_timeout=2"
	h := mustLoad(t, `{"authenticators": [
		{"source": "database", "dialect": "postgres", "dsn": "`+dsn+`", "table": "`+s.table+`", "cache_ttl": "1h", "negative_cache_ttl": "1ms"},
		{"source": "static", "keys": [{"key": "sk-static-team", "user": "team"}]}
	]}`)
	observe(h)
	status := func(key string) int { return serve(t, h, withKey(chat("m"), key), nil).Code }
	if got := status(cachedKey); got != http.StatusOK {
		t.Fatalf("database key: status %d", got)
	}

	proxy.stop()
	for key, want := range map[string]int{"sk-static-team": 200, cachedKey: 200, coldKey: 503} {
		if got := status(key); got != want {
			t.Errorf("database down, key of %s: status %d, want %d", key[:10], got, want)
		}
	}

	proxy.start(t)
	waitFor(t, 10*time.Second, func() bool { return status(coldKey) == http.StatusOK })
	if got := status("sk-static-team"); got != http.StatusOK {
		t.Errorf("static key after the outage: status %d", got)
	}
}

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

// tcpProxy forwards a port to a target until stopped, cutting every
// connection then, and can start again on the same port.
type tcpProxy struct {
	addr, target string
	mu           sync.Mutex
	l            net.Listener
	conns        []net.Conn
}

func startProxy(t *testing.T, target string) *tcpProxy {
	p := &tcpProxy{addr: "127.0.0.1:" + freePort(t), target: target}
	p.start(t)
	t.Cleanup(p.stop)
	return p
}

func (p *tcpProxy) start(t *testing.T) {
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
}

func (p *tcpProxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		p.l.Close()
		p.l = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func TestDatabaseConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, config, want string }{
		{"no dsn", `{"source": "database"}`, "no file or DSN"},
		{"unknown kind", `{"source": "database", "dialect": "mysql", "dsn": "x"}`, "unknown kind 'mysql'"},
		{"bad table", `{"source": "database", "dsn": "x.db", "table": "keys; DROP TABLE x"}`, "not a plain SQL name"},
		{"negative ttl", `{"source": "database", "dsn": "` + filepath.Join(t.TempDir(), "k.db") + `", "cache_ttl": -1}`, "must not be negative"},
		{"unopenable sqlite", `{"source": "database", "dsn": "/proc/nope/keys.db"}`, "database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadHandler(t, `{"authenticators": [`+tc.config+`]}`)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseKey(t *testing.T) {
	for range 100 {
		key, id := newKey()
		if got, ok := parseKey(key); !ok || got != id {
			t.Fatalf("parseKey(%q) = %q, %v; want %q", key, got, ok, id)
		}
	}
	key, _ := newKey()
	for _, bad := range []string{"", "sk-llm-", key[:len(key)-1], key + "A", strings.ToLower(key), strings.Replace(key, "-", "_", 3),
		"sk-llm-" + strings.ToUpper(key[7:19]) + key[19:], "sk-alice"} {
		if id, ok := parseKey(bad); ok {
			t.Errorf("parseKey(%q) = %q, true; want false", bad, id)
		}
	}
}

func FuzzParseKey(f *testing.F) {
	key, _ := newKey()
	for _, seed := range []string{key, "sk-llm-", "sk-llm-aaaaaaaaaaaa-", "sk-team-alice", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := parseKey(s)
		if !ok {
			return
		}
		if len(s) != len(key) || !strings.HasPrefix(s, "sk-llm-"+id+"-") || strings.ContainsAny(id, "-ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			t.Fatalf("parseKey(%q) accepted id %q", s, id)
		}
	})
}

// BenchmarkDatabaseAuthenticate is the cost of a cached lookup, the one a
// request pays once its key has been seen.
func BenchmarkDatabaseAuthenticate(b *testing.B) {
	s := newTestStore(b, sqldb.SQLite)
	_, key := s.create(b, KeyChange{User: ptr("bench"), Models: &llm.Scope{"gpt-4o-mini"}})
	h := mustLoad(b, s.config(`, "cache_ttl": "1h"`))
	d := h.authenticators[0].(*Database)
	ctx := context.Background()
	if id, err := d.Authenticate(ctx, key); id == nil || err != nil {
		b.Fatal(id, err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if id, _ := d.Authenticate(ctx, key); id == nil {
				b.Fatal("key not found")
			}
		}
	})
}

func TestDatabaseCaddyfile(t *testing.T) {
	for src, want := range map[string]string{
		"llm_auth {\ndatabase sqlite ./llm-keys.db\n}":          `{"authenticators": [{"source": "database", "dialect": "sqlite", "dsn": "./llm-keys.db"}]}`,
		"llm_auth {\ndatabase sqlite:/var/lib/caddy/keys.db\n}": `{"authenticators": [{"source": "database", "dialect": "sqlite", "dsn": "/var/lib/caddy/keys.db"}]}`,
		"llm_auth {\ndatabase postgres postgres://llm@db/llm {\ntable team_keys\ncache_ttl 1m\nnegative_cache_ttl 2s\n}\n}": `{"authenticators": [{"source": "database",
			"dialect": "postgres", "dsn": "postgres://llm@db/llm", "table": "team_keys", "cache_ttl": 60000000000, "negative_cache_ttl": 2000000000}]}`,
		"llm_auth {\ndatabase {env.KEYS_DSN}\n}": ``,
	} {
		h, err := adapt(t, src)
		if want == "" {
			if err == nil || !strings.Contains(err.Error(), "is not a store") {
				t.Errorf("%q: error %v, want one about the store", src, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", src, err)
			continue
		}
		sameJSON(t, jsonBytes(t, h), []byte(want))
	}
	for _, tc := range []struct{ src, want string }{
		{"llm_auth {\ndatabase\n}", "write 'sqlite <path>' or 'postgres <dsn>', got 0"},
		{"llm_auth {\ndatabase mysql x\n}", "unknown kind 'mysql'"},
		{"llm_auth {\ndatabase sqlite a b\n}", "got 3 arguments"},
		{"llm_auth {\ndatabase sqlite a {\ncache_ttl soon\n}\n}", "cache_ttl: 'soon' is not a duration"},
		{"llm_auth {\ndatabase sqlite a {\ntable\n}\n}", "wrong argument count"},
		{"llm_auth {\ndatabase sqlite a {\ncolour red\n}\n}", "unrecognized database subdirective 'colour', at Testfile:3"},
	} {
		if _, err := adapt(t, tc.src); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.want)
		}
	}
}

func jsonBytes(t *testing.T, h *Handler) []byte {
	t.Helper()
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
