package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/llmoneapi/llmoneapi/internal/sqldb"
	"github.com/llmoneapi/llmoneapi/llm"
)

func init() {
	caddy.RegisterModule(Database{})
}

// Database authenticates clients with keys kept in SQL: an SQLite file, the
// embedded default, or PostgreSQL, which a fleet of gateways shares. Keys
// are made and changed with `caddy llm key ...` or the admin API's
// /llm/keys, and look like sk-llm-<public id>-<secret>; the store keeps only
// the SHA-256 of each key, and a lookup goes by the public id and compares
// digests in constant time.
//
// Lookups are cached, so the store is not asked on every request: a key
// found is trusted for cache_ttl, an unknown id remembered for
// negative_cache_ttl. A key revoked, disabled or changed through this
// instance's admin API takes effect here at once, and on other instances
// within cache_ttl. When a key is used its last_used_at is stamped a few
// seconds later, in one batch for all keys, never on the request's path.
//
// If the store cannot be reached, at load or later, the config still loads
// and the authenticator answers "could not tell" for keys in its format:
// those get 503 while keys of other authenticators keep working, and it
// retries the store every few seconds until it answers.
type Database struct {
	// The kind of store: "sqlite" (the default) or "postgres".
	Dialect string `json:"dialect,omitempty"`

	// The store: for sqlite the database file's path (relative to Caddy's
	// working directory; created with its directory if missing), for
	// postgres a DSN such as "postgres://user:password@host/db". Placeholders
	// such as {env.KEYS_DSN} are resolved when the config loads. Required.
	DSN string `json:"dsn,omitempty"`

	// The table of keys, created and migrated on first use. Default:
	// "llm_keys".
	Table string `json:"table,omitempty"`

	// How long a key read from the store is trusted without reading it
	// again: the longest a key revoked elsewhere keeps working here.
	// Default: 30s.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`

	// How long a public id the store does not hold is remembered as
	// unknown. Default: 5s.
	NegativeCacheTTL caddy.Duration `json:"negative_cache_ttl,omitempty"`

	store    *keyStore
	storeKey string
}

// The defaults, and the timings of the shared store.
const (
	defaultCacheTTL    = 30 * time.Second
	defaultNegCacheTTL = 5 * time.Second
	// lookupTimeout bounds a store query on the request path: a store that
	// hangs must cost a client a 503, not its whole timeout.
	lookupTimeout = 3 * time.Second
	// retryInterval is how long a store that failed to connect is left
	// alone, so that an outage costs one dial per interval, not per request.
	retryInterval = 2 * time.Second
	// maxCacheEntries bounds the cache against floods of made-up ids.
	maxCacheEntries = 100_000
)

// CaddyModule returns the Caddy module information.
func (Database) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.auth.database",
		New: func() caddy.Module { return new(Database) },
	}
}

// Provision resolves the store's DSN and opens it, shared with every other
// user of the same store and kept across config reloads. An SQLite file
// that cannot be opened fails the config; a PostgreSQL server that does not
// answer is logged and retried.
func (d *Database) Provision(caddy.Context) error {
	if d.Dialect == "" {
		d.Dialect = sqldb.SQLite
	}
	if d.Dialect != sqldb.SQLite && d.Dialect != sqldb.Postgres {
		return fmt.Errorf("database: unknown kind '%s': use sqlite or postgres", d.Dialect)
	}
	dsn := caddy.NewReplacer().ReplaceAll(d.DSN, "")
	if dsn == "" {
		return errors.New("database: no file or DSN given (is its environment variable set?)")
	}
	if d.Table == "" {
		d.Table = defaultKeyTable
	}
	if !tableName.MatchString(d.Table) {
		return fmt.Errorf("database: table '%s' is not a plain SQL name (lower-case letters, digits and '_')", d.Table)
	}
	if d.CacheTTL == 0 {
		d.CacheTTL = caddy.Duration(defaultCacheTTL)
	}
	if d.NegativeCacheTTL == 0 {
		d.NegativeCacheTTL = caddy.Duration(defaultNegCacheTTL)
	}
	d.storeKey = d.Dialect + "|" + dsn + "|" + d.Table
	v, _, err := stores.LoadOrNew(d.storeKey, func() (caddy.Destructor, error) {
		return newKeyStore(d.Dialect, dsn, d.Table)
	})
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	d.store = v.(*keyStore)
	d.store.noteTTL(max(time.Duration(d.CacheTTL), time.Duration(d.NegativeCacheTTL)))
	return nil
}

// Validate checks the cache times.
func (d *Database) Validate() error {
	if d.CacheTTL < 0 || d.NegativeCacheTTL < 0 {
		return errors.New("database: cache_ttl and negative_cache_ttl must not be negative")
	}
	return nil
}

// Cleanup lets go of the store.
func (d *Database) Cleanup() error {
	if d.store != nil {
		_, err := stores.Delete(d.storeKey)
		d.store = nil
		return err
	}
	return nil
}

// Authenticate looks the key up by its public id, from the cache when it
// can. Keys not in the database format are left to other authenticators
// without asking the store. A key whose digest does not match is unknown,
// whatever its id, so that a guesser learns nothing of a real id's state.
func (d *Database) Authenticate(ctx context.Context, key string) (*llm.Identity, error) {
	id, ok := parseKey(key)
	if !ok {
		return nil, nil
	}
	e, err := d.store.lookup(ctx, id, time.Duration(d.CacheTTL), time.Duration(d.NegativeCacheTTL))
	if err != nil {
		return nil, err
	}
	if e.key == nil {
		return nil, nil
	}
	digest := storedHash(key)
	if subtle.ConstantTimeCompare(digest[:], e.key.hash[:]) != 1 {
		return nil, nil
	}
	now := time.Now()
	if err := e.key.refusal(now); err != nil {
		return nil, err
	}
	d.store.touch(e, now)
	return e.identity, nil
}

// stores holds the keyStores in use, one per store and table, across
// config reloads.
var stores = caddy.NewUsagePool()

// keyStore is one key table as the running gateway uses it: the connection
// (made lazily, retried while the store is down), the lookup cache, and the
// last-used stamps waiting to be written.
type keyStore struct {
	dialect, dsn, tableName string
	// name is the store for logs and the admin API, without a password.
	name   string
	logger *zap.Logger

	connecting sync.Mutex // held while dialing, so that one request dials
	mu         sync.Mutex // guards the fields below
	table      *keyTable  // nil until connected
	retryAt    time.Time
	connErr    error
	closed     bool
	used       map[string]time.Time

	cacheMu sync.RWMutex
	cache   map[string]*cacheEntry
	// gen counts invalidations: a lookup that started before one must not
	// cache what it read.
	gen     atomic.Uint64
	maxTTL  atomic.Int64
	lookups singleflight.Group

	touchEvery time.Duration
	stop, done chan struct{}
}

// cacheEntry is what a lookup found: a key, or nil for an unknown id.
type cacheEntry struct {
	key      *StoredKey
	identity *llm.Identity
	fetched  time.Time
	// touched is when touch last queued a stamp for the key (Unix ns).
	touched atomic.Int64
}

// touchInterval is how often last-used stamps are written; a variable so
// that tests need not wait for it.
var touchInterval = 5 * time.Second

var errConnecting = errors.New("the key store is being connected to")

func newKeyStore(dialect, dsn, table string) (*keyStore, error) {
	s := &keyStore{
		dialect: dialect, dsn: dsn, tableName: table,
		name:   storeName(dialect, dsn, table),
		logger: caddy.Log().Named("llm.auth.database"),
		used:   map[string]time.Time{},
		cache:  map[string]*cacheEntry{},
		// Read here, on the provisioning goroutine, not in touchLoop:
		// tests change it between stores.
		touchEvery: touchInterval,
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	if dialect == sqldb.SQLite {
		// A local file that does not open is a config error, not an outage.
		t, err := openKeyTable(ctx, dialect, dsn, table)
		if err != nil {
			return nil, err
		}
		s.table = t
	} else {
		_, _ = s.keys(ctx) // logged; retried by the first request after retryInterval
	}
	go s.touchLoop()
	return s, nil
}

// storeName names a store for people: the dialect and DSN, password
// hidden, and the table when it is not the default.
func storeName(dialect, dsn, table string) string {
	name := (&sqldb.DB{Dialect: dialect, Name: dsn}).Display()
	if dialect == sqldb.SQLite {
		name = "sqlite:" + name
	}
	if table != defaultKeyTable {
		name += "#" + table
	}
	return name
}

// keys returns the key table, connecting to the store if it is not yet
// and the last try is long enough ago.
func (s *keyStore) keys(ctx context.Context) (*keyTable, error) {
	s.mu.Lock()
	t, err, retryAt := s.table, s.connErr, s.retryAt
	s.mu.Unlock()
	if t != nil {
		return t, nil
	}
	if time.Now().Before(retryAt) || !s.connecting.TryLock() {
		if err == nil {
			err = errConnecting
		}
		return nil, err
	}
	defer s.connecting.Unlock()
	s.mu.Lock()
	t, closed := s.table, s.closed // connected by another request since the check above?
	s.mu.Unlock()
	if t != nil {
		return t, nil
	}
	if closed {
		return nil, errors.New("the key store was closed with its config")
	}
	t, err = openKeyTable(ctx, s.dialect, s.dsn, s.tableName)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.connErr == nil || s.connErr.Error() != err.Error() {
			s.logger.Error("the key store is unreachable; retrying", zap.String("store", s.name), zap.Error(err))
		}
		s.connErr, s.retryAt = err, time.Now().Add(retryInterval)
		return nil, err
	}
	if s.connErr != nil {
		s.logger.Info("the key store is reachable again", zap.String("store", s.name))
	}
	s.table, s.connErr = t, nil
	return t, nil
}

// noteTTL widens the age past which cache entries are swept.
func (s *keyStore) noteTTL(ttl time.Duration) {
	for {
		old := s.maxTTL.Load()
		if int64(ttl) <= old || s.maxTTL.CompareAndSwap(old, int64(ttl)) {
			return
		}
	}
}

// lookup returns the key with the public id, from the cache if an entry is
// younger than ttl (negTTL for an unknown id), else from the store; one
// query serves all the requests that wait for the same id.
func (s *keyStore) lookup(ctx context.Context, id string, ttl, negTTL time.Duration) (*cacheEntry, error) {
	s.cacheMu.RLock()
	e := s.cache[id]
	s.cacheMu.RUnlock()
	if e != nil {
		age := time.Since(e.fetched)
		if (e.key != nil && age < ttl) || (e.key == nil && age < negTTL) {
			return e, nil
		}
	}
	return s.fetch(ctx, id)
}

// fetch reads a key from the store into the cache. Apart from lookup, so
// that a cache hit does not allocate the closure.
func (s *keyStore) fetch(ctx context.Context, id string) (*cacheEntry, error) {
	v, err, _ := s.lookups.Do(id, func() (any, error) {
		gen := s.gen.Load()
		// Not the request's context alone: the query serves every request
		// waiting for this id, not only the first.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
		defer cancel()
		t, err := s.keys(ctx)
		if err != nil {
			return nil, err
		}
		k, err := t.Get(ctx, id)
		if errors.Is(err, errNoKey) {
			k, err = nil, nil
		}
		if err != nil {
			return nil, err
		}
		e := &cacheEntry{key: k, fetched: time.Now()}
		if k != nil {
			e.identity = k.identity()
		}
		s.remember(id, e, gen)
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*cacheEntry), nil
}

func (s *keyStore) remember(id string, e *cacheEntry, gen uint64) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if s.gen.Load() != gen {
		return
	}
	if len(s.cache) >= maxCacheEntries {
		horizon := time.Duration(s.maxTTL.Load())
		for k, old := range s.cache {
			if time.Since(old.fetched) >= horizon {
				delete(s.cache, k)
			}
		}
		if len(s.cache) >= maxCacheEntries && e.key == nil {
			return
		}
	}
	s.cache[id] = e
}

// forget drops the cached entry of a key that was changed, so that this
// instance sees the change at once.
func (s *keyStore) forget(id string) {
	s.gen.Add(1)
	s.cacheMu.Lock()
	delete(s.cache, id)
	s.cacheMu.Unlock()
}

// update and revoke change a key through this instance, which sees the
// change at once.
func (s *keyStore) update(ctx context.Context, id string, c KeyChange) (*StoredKey, error) {
	t, err := s.keys(ctx)
	if err != nil {
		return nil, err
	}
	defer s.forget(id)
	return t.Update(ctx, id, c)
}

func (s *keyStore) revoke(ctx context.Context, id string) (*StoredKey, error) {
	t, err := s.keys(ctx)
	if err != nil {
		return nil, err
	}
	defer s.forget(id)
	return t.Revoke(ctx, id)
}

// touch notes that the key of e was used; touchLoop writes it later. At
// most once a second per key, so that busy keys do not all queue on s.mu:
// the stamps are written every few seconds anyway.
func (s *keyStore) touch(e *cacheEntry, at time.Time) {
	last := e.touched.Load()
	if at.UnixNano()-last < int64(time.Second) || !e.touched.CompareAndSwap(last, at.UnixNano()) {
		return
	}
	s.mu.Lock()
	s.used[e.key.ID] = at
	s.mu.Unlock()
}

func (s *keyStore) touchLoop() {
	defer close(s.done)
	tick := time.NewTicker(s.touchEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			s.flushTouches()
		case <-s.stop:
			s.flushTouches()
			return
		}
	}
}

// flushTouches writes the pending last-used stamps in one transaction.
// Stamps that fail to be written are kept for the next try, unless a newer
// one came meanwhile.
func (s *keyStore) flushTouches() {
	s.mu.Lock()
	used, t := s.used, s.table
	if len(used) == 0 || t == nil {
		s.mu.Unlock()
		return
	}
	s.used = map[string]time.Time{}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := t.touch(ctx, used); err != nil {
		s.logger.Warn("could not record when keys were last used; will retry", zap.String("store", s.name), zap.Error(err))
		s.mu.Lock()
		for id, at := range used {
			if _, newer := s.used[id]; !newer {
				s.used[id] = at
			}
		}
		s.mu.Unlock()
	}
}

// Destruct writes the last stamps and closes the store, when the last
// config using it is gone.
func (s *keyStore) Destruct() error {
	close(s.stop)
	<-s.done
	// Not while a straggling request connects, and none may after.
	s.connecting.Lock()
	defer s.connecting.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.table != nil {
		sqldb.Release(s.table.db)
		s.table = nil
	}
	return nil
}

// UnmarshalCaddyfile sets up the authenticator from Caddyfile tokens.
// Syntax:
//
//	database sqlite <path> | postgres <dsn> | sqlite:<path> | postgres://... [{
//	    table              <name>
//	    cache_ttl          <duration>
//	    negative_cache_ttl <duration>
//	}]
func (d *Database) UnmarshalCaddyfile(disp *caddyfile.Dispenser) error {
	disp.Next() // consume module name
	dialect, dsn, err := sqldb.ParseArgs(disp.RemainingArgs())
	if err != nil {
		return disp.Errf("database: %v", err)
	}
	d.Dialect, d.DSN = dialect, dsn
	for nesting := disp.Nesting(); disp.NextBlock(nesting); {
		switch name := disp.Val(); name {
		case "table":
			if !disp.AllArgs(&d.Table) {
				return disp.ArgErr()
			}
		case "cache_ttl", "negative_cache_ttl":
			var s string
			if !disp.AllArgs(&s) {
				return disp.ArgErr()
			}
			dur, err := caddy.ParseDuration(s)
			if err != nil {
				return disp.Errf("database: %s: '%s' is not a duration such as 30s", name, s)
			}
			if name == "cache_ttl" {
				d.CacheTTL = caddy.Duration(dur)
			} else {
				d.NegativeCacheTTL = caddy.Duration(dur)
			}
		default:
			return disp.Errf("unrecognized database subdirective '%s'", name)
		}
	}
	return nil
}

// Interface guards
var (
	_ Authenticator         = (*Database)(nil)
	_ caddy.Provisioner     = (*Database)(nil)
	_ caddy.Validator       = (*Database)(nil)
	_ caddy.CleanerUpper    = (*Database)(nil)
	_ caddyfile.Unmarshaler = (*Database)(nil)
	_ caddy.Destructor      = (*keyStore)(nil)
)
