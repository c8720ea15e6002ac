package stats

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/llmoneapi/llmoneapi/internal/directive"
	"github.com/llmoneapi/llmoneapi/internal/sqldb"
	"github.com/llmoneapi/llmoneapi/llm"
)

func init() {
	caddy.RegisterModule(Database{})
}

// The database recorder's defaults.
const (
	DefaultUsageTable        = "llm_usage"
	DefaultDBBatchSize       = 256
	DefaultDBFlushInterval   = 500 * time.Millisecond
	DefaultDBWriteTimeout    = 5 * time.Second
	DefaultSpoolSize         = 256 << 20
	maxDBBatchSize           = 1000
	usageComponent           = "stats_usage"
	replayRetryMin, retryMax = 250 * time.Millisecond, 5 * time.Second
	connectTimeout           = 5 * time.Second
)

// Database is a stats recorder that keeps one row per call in SQLite or
// PostgreSQL, the usage ledger the stats API reads. Rows are written in
// batches, each one statement (for PostgreSQL an INSERT from unnest of one
// array per column; for SQLite a multi-row INSERT, in one transaction when
// a batch of over 500 rows takes two), by one writer per store, so SQLite
// under any number of clients sees one writer.
//
// When the database is down or slower than write_timeout, records go to a
// local append-only spool file and are written, in order, once it answers
// again (also after a restart: a spool left behind is replayed at start).
// A PostgreSQL server that is down at start does not fail the config: the
// recorder spools and connects in the background.
// A row's start and request id are the table's key and every INSERT skips
// rows already stored, so a batch that timed out but did commit is never
// counted twice.
// Records are dropped only when the spool is full; they are then counted
// (llmoneapi_stats_records_total{recorder="database",result="dropped"}) and
// logged.
//
// The table (llm_usage by default) has these columns: request_id,
// start_unix_ms (the call's start, Unix milliseconds), user_name, key_id,
// team, api, endpoint, model, served_model, upstream_model, provider,
// upstream, attempts, status, stream (0/1), prompt_tokens,
// completion_tokens, total_tokens, cached_tokens, cache_creation_tokens,
// reasoning_tokens, usage_source, cost (USD), duration_ms, ttft_ms (0 when
// no byte was sent), truncated (0/1), client_aborted (0/1), error_code. Its
// schema is versioned with the component name stats_usage (stats_usage:<table>
// for another table) in llm_schema_migrations.
//
// As a stats.Querier it answers the stats API with SQL aggregates; it does
// not compute latency percentiles (they are 0), only averages.
type Database struct {
	// The store: "sqlite" or "postgres".
	Dialect string `json:"dialect"`
	// For SQLite, the database file's path; for PostgreSQL, its URL
	// (postgres://user:password@host/db?sslmode=...). Placeholders such as
	// {env.DATABASE_URL} are resolved.
	DSN string `json:"dsn"`
	// The table. Default: llm_usage.
	Table string `json:"table,omitempty"`
	// The most rows written in one INSERT (at most 1000). Default: 256.
	BatchSize int `json:"batch_size,omitempty"`
	// How long a record may wait for others to fill its batch. Default: 500ms.
	FlushInterval caddy.Duration `json:"flush_interval,omitempty"`
	// How long a batch may take to write before it goes to the spool
	// instead. Default: 5s.
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`
	// The spool file. Default: a file named after the store in the llm
	// directory of Caddy's data directory (caddy.AppDataDir()).
	SpoolPath string `json:"spool,omitempty"`
	// The spool's largest size in bytes (a record takes about 700).
	// Default: 256 MiB.
	SpoolSize int64 `json:"spool_size,omitempty"`
	// Rows older than this are deleted, checked hourly (or every tenth of
	// the retention, if shorter). Default: 0, keep every row.
	Retention caddy.Duration `json:"retention,omitempty"`

	key        string
	store      *usageStore
	unregister func()
}

// CaddyModule returns the Caddy module information.
func (Database) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.stats.database",
		New: func() caddy.Module { return new(Database) },
	}
}

var tableName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// stores holds the open usage stores, one per database, table and spool,
// so that a reload keeps the connection pool, the spool and its replay.
var stores = caddy.NewUsagePool()

// Provision checks the options, opens the store (sharing it with earlier
// configs), brings its schema up to date and starts its replay and
// retention loops.
func (d *Database) Provision(ctx caddy.Context) error {
	dsn := caddy.NewReplacer().ReplaceAll(d.DSN, "")
	switch {
	case d.Dialect != sqldb.SQLite && d.Dialect != sqldb.Postgres:
		return fmt.Errorf("database: unknown store '%s': use sqlite or postgres", d.Dialect)
	case dsn == "":
		return fmt.Errorf("database: no %s path or URL given", d.Dialect)
	case d.BatchSize < 0 || d.BatchSize > maxDBBatchSize:
		return fmt.Errorf("database: batch_size %d out of range: use 1 to %d", d.BatchSize, maxDBBatchSize)
	case d.FlushInterval < 0 || d.WriteTimeout < 0 || d.Retention < 0 || d.SpoolSize < 0:
		return fmt.Errorf("database: durations and sizes must not be negative")
	}
	if d.Table == "" {
		d.Table = DefaultUsageTable
	}
	if !tableName.MatchString(d.Table) {
		return fmt.Errorf("database: bad table name '%s': use lower-case letters, digits and _", d.Table)
	}
	if d.BatchSize == 0 {
		d.BatchSize = DefaultDBBatchSize
	}
	if d.FlushInterval == 0 {
		d.FlushInterval = caddy.Duration(DefaultDBFlushInterval)
	}
	if d.WriteTimeout == 0 {
		d.WriteTimeout = caddy.Duration(DefaultDBWriteTimeout)
	}
	if d.SpoolSize == 0 {
		d.SpoolSize = DefaultSpoolSize
	}
	if d.SpoolPath == "" {
		sum := sha256.Sum256([]byte(d.Dialect + "|" + dsn + "|" + d.Table))
		d.SpoolPath = filepath.Join(caddy.AppDataDir(), "llm", "stats-spool-"+hex.EncodeToString(sum[:6])+".jsonl")
	}

	key := d.Dialect + "|" + dsn + "|" + d.Table + "|" + d.SpoolPath
	v, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		return openUsageStore(ctx, d.Dialect, dsn, d.Table, d.SpoolPath, ctx.Logger())
	})
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	d.key, d.store = key, v.(*usageStore)
	// A reload may change these for the store it keeps.
	d.store.settings.Store(&storeSettings{
		batch:        d.BatchSize,
		writeTimeout: time.Duration(d.WriteTimeout),
		retention:    time.Duration(d.Retention),
	})
	d.store.spool.setMax(d.SpoolSize)
	d.unregister = RegisterQuerier(d, true)
	return nil
}

// Cleanup stops answering queries and lets go of the store; the last
// config using it closes it.
func (d *Database) Cleanup() error {
	if d.unregister != nil {
		d.unregister()
	}
	if d.store != nil {
		if _, err := stores.Delete(d.key); err != nil {
			return fmt.Errorf("database: %w", err)
		}
	}
	return nil
}

// Batch implements BatchRecorder.
func (d *Database) Batch() (int, time.Duration) {
	return d.BatchSize, time.Duration(d.FlushInterval)
}

// Record implements Recorder.
func (d *Database) Record(ctx context.Context, c llm.Call) error {
	return d.store.write(ctx, []llm.Call{c})
}

// RecordBatch implements BatchRecorder: it writes calls in one transaction,
// or spools them when the database does not answer in time.
func (d *Database) RecordBatch(ctx context.Context, calls []llm.Call) error {
	return d.store.write(ctx, calls)
}

// Spool implements Spooler: a record whose queue is full goes straight to
// the spool and is written with the rest once the writer catches up.
func (d *Database) Spool(c llm.Call) error {
	if err := d.store.spool.append([]llm.Call{c}); err != nil {
		return err
	}
	d.store.kick()
	return nil
}

// storeSettings are the options of the newest config using a store.
type storeSettings struct {
	batch        int
	writeTimeout time.Duration
	retention    time.Duration
}

// usageStore is one usage table, its spool and the loops that replay the
// spool and apply the retention. It lives in the stores pool.
type usageStore struct {
	dialect, dsn string
	display      string // the DSN for logs, without a password
	// db is nil until the database first answers.
	db       atomic.Pointer[sqldb.DB]
	table    string
	insert   string // the INSERT's text up to VALUES
	spool    *spool
	logger   *zap.Logger
	settings atomic.Pointer[storeSettings]

	// mu makes writes and replays take turns, so that rows reach the
	// table in the order they were recorded. It guards the buffers below.
	mu sync.Mutex
	// PostgreSQL: the batch's columns and the INSERT that takes them.
	pg       *pgColumns
	pgInsert string
	// SQLite: the INSERT's arguments, and the INSERT of the last number of
	// rows written, prepared.
	args     []any
	stmt     *sql.Stmt
	stmtRows int
	// down is set while the database fails, to log an outage once.
	down atomic.Bool

	wake   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	cancel context.CancelFunc
}

// usageColumns are the table's columns, in the order rows are written.
var usageColumns = []string{
	"request_id", "start_unix_ms", "user_name", "key_id", "team", "api", "endpoint",
	"model", "served_model", "upstream_model", "provider", "upstream", "attempts",
	"status", "stream", "prompt_tokens", "completion_tokens", "total_tokens",
	"cached_tokens", "cache_creation_tokens", "reasoning_tokens", "usage_source",
	"cost", "duration_ms", "ttft_ms", "truncated", "client_aborted", "error_code",
}

func usageMigrations(table string) []sqldb.Migration {
	// The types differ only in name: SQLite's INTEGER is 64 bits.
	columns := func(key, bigint, double string) string {
		return strings.NewReplacer("KEY", key, "BIGINT", bigint, "DOUBLE", double).Replace(`(
	request_id TEXT KEY,
	start_unix_ms BIGINT NOT NULL,
	user_name TEXT NOT NULL DEFAULT '',
	key_id TEXT NOT NULL DEFAULT '',
	team TEXT NOT NULL DEFAULT '',
	api TEXT NOT NULL DEFAULT '',
	endpoint TEXT NOT NULL DEFAULT '',
	model TEXT NOT NULL DEFAULT '',
	served_model TEXT NOT NULL DEFAULT '',
	upstream_model TEXT NOT NULL DEFAULT '',
	provider TEXT NOT NULL DEFAULT '',
	upstream TEXT NOT NULL DEFAULT '',
	attempts INTEGER NOT NULL DEFAULT 0,
	status INTEGER NOT NULL DEFAULT 0,
	stream INTEGER NOT NULL DEFAULT 0,
	prompt_tokens BIGINT NOT NULL DEFAULT 0,
	completion_tokens BIGINT NOT NULL DEFAULT 0,
	total_tokens BIGINT NOT NULL DEFAULT 0,
	cached_tokens BIGINT NOT NULL DEFAULT 0,
	cache_creation_tokens BIGINT NOT NULL DEFAULT 0,
	reasoning_tokens BIGINT NOT NULL DEFAULT 0,
	usage_source TEXT NOT NULL DEFAULT '',
	cost DOUBLE NOT NULL DEFAULT 0,
	duration_ms DOUBLE NOT NULL DEFAULT 0,
	ttft_ms DOUBLE NOT NULL DEFAULT 0,
	truncated INTEGER NOT NULL DEFAULT 0,
	client_aborted INTEGER NOT NULL DEFAULT 0,
	error_code TEXT NOT NULL DEFAULT ''
)`)
	}
	t := strings.NewReplacer("{t}", table, "{pkey}", pgPrimaryKeyName(table), "{cols}", strings.Join(usageColumns, ", "))
	indexes := `;
CREATE INDEX {t}_user ON {t} (user_name, start_unix_ms);
CREATE INDEX {t}_model ON {t} (model, start_unix_ms)`
	// Version 2 keys rows by (start_unix_ms, request_id) instead of the
	// request id alone. Request ids are random UUIDs, so every insert into
	// an index of them lands on a random page: at 300,000 rows that index
	// was two thirds of SQLite's cost per row, and it grows with the table.
	// Led by the start, new keys go to the index's right edge, and the
	// pair still tells a record written twice (a replayed batch) apart.
	return []sqldb.Migration{
		{
			SQLite:   t.Replace("CREATE TABLE {t} " + columns("PRIMARY KEY", "INTEGER", "REAL") + ";\nCREATE INDEX {t}_start ON {t} (start_unix_ms)" + indexes),
			Postgres: t.Replace("CREATE TABLE {t} " + columns("PRIMARY KEY", "BIGINT", "DOUBLE PRECISION") + ";\nCREATE INDEX {t}_start ON {t} (start_unix_ms)" + indexes),
		},
		{
			// SQLite cannot drop a primary key: the table is copied.
			SQLite: t.Replace("CREATE TABLE {t}_v2 " + columns("NOT NULL", "INTEGER", "REAL") + `;
INSERT INTO {t}_v2 ({cols}) SELECT {cols} FROM {t};
DROP TABLE {t};
ALTER TABLE {t}_v2 RENAME TO {t};
CREATE UNIQUE INDEX {t}_start ON {t} (start_unix_ms, request_id)` + indexes),
			Postgres: t.Replace(`ALTER TABLE {t} DROP CONSTRAINT {pkey};
DROP INDEX {t}_start;
CREATE UNIQUE INDEX {t}_start ON {t} (start_unix_ms, request_id)`),
		},
	}
}

// pgPrimaryKeyName is the name PostgreSQL gives the primary key of table:
// table_pkey, the table's part cut so that the whole fits in 63 bytes.
func pgPrimaryKeyName(table string) string {
	return table[:min(len(table), 63-len("_pkey"))] + "_pkey"
}

// openUsageStore opens the spool and connects to the database. A
// PostgreSQL server that does not answer is an outage, not a config error:
// the store starts with the spool alone and connects in the background, so
// that a gateway restarted during an outage still serves and records.
func openUsageStore(ctx caddy.Context, dialect, dsn, table, spoolPath string, logger *zap.Logger) (*usageStore, error) {
	if dialect == sqldb.Postgres {
		if _, err := pgx.ParseConfig(dsn); err != nil {
			return nil, fmt.Errorf("bad PostgreSQL URL: %w", err)
		}
	}
	sp, err := openSpool(spoolPath, DefaultSpoolSize)
	if err != nil {
		return nil, err
	}
	s := &usageStore{
		dialect: dialect,
		dsn:     dsn,
		display: (&sqldb.DB{Name: dsn}).Display(),
		table:   table,
		insert:  "INSERT INTO " + table + " (" + strings.Join(usageColumns, ", ") + ") VALUES ",
		spool:   sp,
		logger:  logger,
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if dialect == sqldb.Postgres {
		s.pg, s.pgInsert = newPGColumns(table)
	}
	s.settings.Store(&storeSettings{batch: DefaultDBBatchSize, writeTimeout: DefaultDBWriteTimeout})
	if err := s.connect(ctx); err != nil {
		if dialect != sqldb.Postgres {
			sp.close()
			return nil, err
		}
		s.down.Store(true)
		logger.Error("stats database unavailable at start; spooling records until it answers",
			zap.String("database", s.display), zap.String("spool", spoolPath), zap.Error(err))
	}
	if sp.pending() {
		logger.Info("replaying the stats spool left from an earlier run", zap.String("spool", spoolPath), zap.Int64("bytes", sp.size))
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.loop(loopCtx)
	s.kick()
	return s, nil
}

// connect opens the database and brings the table's schema up to date.
func (s *usageStore) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	db, err := sqldb.Open(ctx, s.dialect, s.dsn)
	if err != nil {
		return err
	}
	component := usageComponent
	if s.table != DefaultUsageTable {
		component += ":" + s.table
	}
	if err := db.Migrate(ctx, component, usageMigrations(s.table)); err != nil {
		sqldb.Release(db)
		return err
	}
	s.db.Store(db)
	return nil
}

// Destruct stops the loops and closes the store. What is still spooled
// stays in the file for the next start.
func (s *usageStore) Destruct() error {
	close(s.stop)
	s.cancel()
	<-s.done
	s.mu.Lock()
	if s.stmt != nil {
		s.stmt.Close()
	}
	s.mu.Unlock()
	if db := s.db.Load(); db != nil {
		sqldb.Release(db)
	}
	return s.spool.close()
}

// kick wakes the replay loop.
func (s *usageStore) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// write stores calls, or spools them when the database fails or is slow,
// or while older records wait in the spool (so that order holds).
func (s *usageStore) write(ctx context.Context, calls []llm.Call) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.spool.pending() && s.db.Load() != nil {
		err := s.insertRows(ctx, calls)
		if err == nil {
			s.up()
			return nil
		}
		s.failing(err)
	}
	if err := s.spool.append(calls); err != nil {
		s.logger.Error("stats records dropped: the database is unavailable and its spool is full",
			zap.String("database", s.display), zap.String("spool", s.spool.path), zap.Error(err))
		return err
	}
	s.kick()
	return nil
}

func (s *usageStore) failing(err error) {
	if !s.down.Swap(true) {
		s.logger.Warn("stats database unavailable; spooling records until it is back",
			zap.String("database", s.display), zap.String("spool", s.spool.path), zap.Error(err))
	}
}

func (s *usageStore) up() {
	if s.down.Swap(false) {
		s.logger.Info("stats database is back; spooled records written", zap.String("database", s.display))
	}
}

// insertRows writes calls, rows whose request id is already stored
// skipped, within the write timeout: PostgreSQL in one statement, SQLite
// in one statement per sqliteChunk rows (in one transaction when there are
// several).
func (s *usageStore) insertRows(ctx context.Context, calls []llm.Call) error {
	db := s.db.Load()
	if db == nil {
		return errors.New("writing usage rows: not connected yet")
	}
	ctx, cancel := context.WithTimeout(ctx, s.settings.Load().writeTimeout)
	defer cancel()
	var err error
	if db.Dialect == sqldb.Postgres {
		err = s.insertPostgres(ctx, db, calls)
	} else {
		err = s.insertSQLite(ctx, db, calls)
	}
	if err != nil {
		return fmt.Errorf("writing usage rows: %w", err)
	}
	return nil
}

// insertPostgres writes calls in one INSERT ... SELECT FROM unnest(...)
// of one array per column: its text is the same for any number of rows, so
// the driver prepares it once per connection, and the server parses 28
// parameters instead of 28 per row. A single statement needs no
// transaction, so a batch is one round trip.
func (s *usageStore) insertPostgres(ctx context.Context, db *sqldb.DB, calls []llm.Call) error {
	cols := s.pg
	cols.reset()
	for i := range calls {
		writeUsageRow(cols, &calls[i])
	}
	_, err := db.ExecContext(ctx, s.pgInsert, cols.args()...)
	return err
}

// sqliteChunk is the most rows in one SQLite statement, which keeps it under
// SQLite's 32766 parameters.
const sqliteChunk = 500

// insertSQLite writes calls in multi-row INSERTs of at most sqliteChunk
// rows. One statement runs on its own: SQLite's autocommit makes it atomic,
// and without a transaction around it SQLite keeps no statement journal (a
// temporary file holding every page the statement changes, for a rollback
// of that statement alone).
func (s *usageStore) insertSQLite(ctx context.Context, db *sqldb.DB, calls []llm.Call) error {
	if len(calls) <= sqliteChunk {
		return s.execSQLite(ctx, db, nil, calls)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	for start := 0; start < len(calls); start += sqliteChunk {
		if err := s.execSQLite(ctx, db, tx, calls[start:min(start+sqliteChunk, len(calls))]); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// execSQLite runs one multi-row INSERT of calls, in tx if it is not nil.
func (s *usageStore) execSQLite(ctx context.Context, db *sqldb.DB, tx *sql.Tx, calls []llm.Call) error {
	stmt, err := s.sqliteStmt(ctx, db, len(calls))
	if err != nil {
		return err
	}
	args := sqliteArgs(s.args[:0])
	for i := range calls {
		writeUsageRow(&args, &calls[i])
	}
	s.args = args
	defer clear(s.args) // let go of the records' strings
	if tx != nil {
		stmt = tx.StmtContext(ctx, stmt)
		defer stmt.Close()
	}
	_, err = stmt.ExecContext(ctx, args...)
	return err
}

// sqliteStmt returns the INSERT of n rows, prepared. The last size asked for
// stays prepared: under load nearly every batch is full, so SQLite parses
// the statement once instead of once per batch.
func (s *usageStore) sqliteStmt(ctx context.Context, db *sqldb.DB, n int) (*sql.Stmt, error) {
	if s.stmt != nil && s.stmtRows == n {
		return s.stmt, nil
	}
	var q strings.Builder
	q.Grow(len(s.insert) + n*(len(usageColumns)*3+2) + 40)
	q.WriteString(s.insert)
	row := "(" + strings.Repeat("?, ", len(usageColumns)-1) + "?)"
	for i := range n {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(row)
	}
	q.WriteString(" ON CONFLICT (start_unix_ms, request_id) DO NOTHING")
	stmt, err := db.PrepareContext(ctx, q.String())
	if err != nil {
		return nil, err
	}
	if s.stmt != nil {
		s.stmt.Close()
	}
	s.stmt, s.stmtRows = stmt, n
	return stmt, nil
}

// rowWriter takes a usage row's values in usageColumns' order.
type rowWriter interface {
	text(string)
	integer(int64)
	real(float64)
}

// writeUsageRow writes c's row to w.
func writeUsageRow(w rowWriter, c *llm.Call) {
	var user, keyID, team string
	if c.Identity != nil {
		user, keyID, team = c.Identity.User, c.Identity.KeyID, c.Identity.Team
	}
	w.text(c.ID)
	w.integer(c.Start.UnixMilli())
	for _, v := range [...]string{user, keyID, team, string(c.API), string(c.Endpoint),
		c.Model, c.ServedModel, c.UpstreamModel, c.Provider, c.Upstream} {
		w.text(v)
	}
	for _, v := range [...]int64{int64(len(c.Attempts)), int64(c.Status), boolInt(c.Stream),
		c.Usage.PromptTokens, c.Usage.CompletionTokens, c.Usage.TotalTokens,
		c.Usage.CachedTokens, c.Usage.CacheCreationTokens, c.Usage.ReasoningTokens} {
		w.integer(v)
	}
	w.text(string(c.UsageSource))
	w.real(c.Cost)
	w.real(milliseconds(c.Duration))
	w.real(milliseconds(c.TTFT))
	w.integer(boolInt(c.Truncated))
	w.integer(boolInt(c.ClientAborted))
	w.text(c.ErrorCode)
}

// sqliteArgs are the arguments of a multi-row INSERT, row after row.
type sqliteArgs []any

func (a *sqliteArgs) text(v string)   { *a = append(*a, v) }
func (a *sqliteArgs) integer(v int64) { *a = append(*a, v) }
func (a *sqliteArgs) real(v float64)  { *a = append(*a, v) }

// pgColumns are a batch's rows column by column, an array each, for
// PostgreSQL's unnest. kinds is the kind of each column, in usageColumns'
// order; each kind's columns are in the same order in its slice. A row
// writes every column once, so each kind's next column wraps around to its
// first at the row's end.
type pgColumns struct {
	kinds      []byte
	texts      [][]string
	integers   [][]int64
	reals      [][]float64
	nt, ni, nr int // the next column of each kind in the row being written
	argv       []any
}

const (
	kindText    = 't'
	kindInteger = 'i'
	kindReal    = 'r'
)

// newPGColumns returns empty columns and the INSERT that takes them.
func newPGColumns(table string) (*pgColumns, string) {
	var kinds columnKinds
	writeUsageRow(&kinds, &llm.Call{})
	cols := &pgColumns{kinds: kinds}
	var q strings.Builder
	q.WriteString("INSERT INTO " + table + " (" + strings.Join(usageColumns, ", ") + ") SELECT * FROM unnest(")
	for i, k := range kinds {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("$" + strconv.Itoa(i+1))
		switch k {
		case kindText:
			q.WriteString("::text[]")
			cols.texts = append(cols.texts, nil)
		case kindInteger:
			q.WriteString("::bigint[]")
			cols.integers = append(cols.integers, nil)
		default:
			q.WriteString("::double precision[]")
			cols.reals = append(cols.reals, nil)
		}
	}
	q.WriteString(") ON CONFLICT (start_unix_ms, request_id) DO NOTHING")
	return cols, q.String()
}

// reset empties the columns, keeping their arrays for the next batch.
func (p *pgColumns) reset() {
	for i := range p.texts {
		clear(p.texts[i]) // let go of the records' strings
		p.texts[i] = p.texts[i][:0]
	}
	for i := range p.integers {
		p.integers[i] = p.integers[i][:0]
	}
	for i := range p.reals {
		p.reals[i] = p.reals[i][:0]
	}
	p.nt, p.ni, p.nr = 0, 0, 0
}

func (p *pgColumns) text(v string) {
	p.texts[p.nt] = append(p.texts[p.nt], v)
	p.nt = (p.nt + 1) % len(p.texts)
}

func (p *pgColumns) integer(v int64) {
	p.integers[p.ni] = append(p.integers[p.ni], v)
	p.ni = (p.ni + 1) % len(p.integers)
}

func (p *pgColumns) real(v float64) {
	p.reals[p.nr] = append(p.reals[p.nr], v)
	p.nr = (p.nr + 1) % len(p.reals)
}

// args returns the arrays in usageColumns' order, the INSERT's parameters.
func (p *pgColumns) args() []any {
	p.argv = p.argv[:0]
	var t, i, r int
	for _, k := range p.kinds {
		switch k {
		case kindText:
			p.argv = append(p.argv, p.texts[t])
			t++
		case kindInteger:
			p.argv = append(p.argv, p.integers[i])
			i++
		default:
			p.argv = append(p.argv, p.reals[r])
			r++
		}
	}
	return p.argv
}

// columnKinds records the kind of each column a row writes.
type columnKinds []byte

func (k *columnKinds) text(string)   { *k = append(*k, kindText) }
func (k *columnKinds) integer(int64) { *k = append(*k, kindInteger) }
func (k *columnKinds) real(float64)  { *k = append(*k, kindReal) }

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func milliseconds(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// loop replays the spool whenever it holds records, backing off while the
// database fails, and applies the retention.
func (s *usageStore) loop(ctx context.Context) {
	defer close(s.done)
	retry := replayRetryMin
	var lastPurge time.Time
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		wait := time.Duration(0)
		if s.db.Load() == nil {
			if err := s.connect(ctx); err != nil {
				wait = retry
				retry = min(2*retry, retryMax)
			}
		}
		if s.db.Load() != nil && s.spool.pending() {
			if err := s.replay(ctx); err != nil {
				s.failing(err)
				wait = retry
				retry = min(2*retry, retryMax)
			} else {
				retry = replayRetryMin
			}
		}
		if r := s.settings.Load().retention; r > 0 && time.Since(lastPurge) >= min(r/10, time.Hour) {
			lastPurge = time.Now()
			s.purge(ctx, r)
		}
		var retryC <-chan time.Time
		if wait > 0 {
			retryC = time.After(wait)
		}
		select {
		case <-s.stop:
			return
		case <-s.wake:
			if wait > 0 {
				// Do not hammer a failing database on every new record.
				select {
				case <-retryC:
				case <-s.stop:
					return
				}
			}
		case <-retryC:
		case <-tick.C:
		}
	}
}

// replay writes the spooled records in order, a batch at a time, until
// the spool is empty or a write fails.
func (s *usageStore) replay(ctx context.Context) error {
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		done, err := s.replayBatch(ctx)
		if err != nil {
			return err
		}
		if done {
			s.up()
			return nil
		}
	}
}

// replayBatch writes the next batch of the spool, holding the write lock
// for that batch only, so that the worker's own writes (which go to the
// spool's end meanwhile) are not held up by a long replay.
func (s *usageStore) replayBatch(ctx context.Context) (done bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.spool.pending() {
		return true, nil
	}
	calls, end, bad, err := s.spool.next(s.settings.Load().batch)
	if err != nil {
		return false, err
	}
	if bad > 0 {
		s.logger.Error("stats spool lines unreadable; skipped", zap.String("spool", s.spool.path), zap.Int("lines", bad))
	}
	if len(calls) > 0 {
		if err := s.insertRows(ctx, calls); err != nil {
			return false, err
		}
	}
	return false, s.spool.commit(end)
}

// purge deletes the rows older than the retention.
func (s *usageStore) purge(ctx context.Context, retention time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cutoff := time.Now().Add(-retention).UnixMilli()
	db := s.db.Load()
	if db == nil {
		return
	}
	res, err := db.ExecContext(ctx, db.Rebind("DELETE FROM "+s.table+" WHERE start_unix_ms < ?"), cutoff)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("deleting old usage rows failed", zap.String("database", s.display), zap.Error(err))
		}
		return
	}
	if n, _ := res.RowsAffected(); n > 0 {
		s.logger.Info("deleted old usage rows", zap.String("table", s.table), zap.Int64("rows", n), zap.Duration("retention", retention))
	}
}

// queryColumns maps a Query's GroupBy to its column.
var queryColumns = map[string]string{
	"": "''", "model": "model", "user": "user_name", "key": "key_id", "upstream": "upstream",
}

// Query implements Querier with one SQL aggregate query.
func (d *Database) Query(ctx context.Context, q Query) ([]Row, error) {
	col, ok := queryColumns[q.GroupBy]
	if !ok {
		return nil, fmt.Errorf("cannot group by '%s': use model, user, key or upstream", q.GroupBy)
	}
	db := d.store.db.Load()
	if db == nil {
		return nil, fmt.Errorf("querying usage: the database %s has not answered yet", d.store.display)
	}
	bucket := "0"
	var args []any
	if q.Bucket > 0 {
		ms := q.Bucket.Milliseconds()
		if ms <= 0 {
			return nil, fmt.Errorf("bucket %v is shorter than a millisecond", q.Bucket)
		}
		bucket = "(start_unix_ms / " + strconv.FormatInt(ms, 10) + ") * " + strconv.FormatInt(ms, 10)
	}
	var where []string
	if !q.From.IsZero() {
		where = append(where, "start_unix_ms >= ?")
		args = append(args, q.From.UnixMilli())
	}
	if !q.To.IsZero() {
		where = append(where, "start_unix_ms < ?")
		args = append(args, q.To.UnixMilli())
	}
	text := "SELECT " + col + " AS grp, " + bucket + ` AS bucket, COUNT(*),
	SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END),
	CAST(SUM(prompt_tokens) AS BIGINT), CAST(SUM(completion_tokens) AS BIGINT),
	CAST(SUM(cached_tokens) AS BIGINT), CAST(SUM(total_tokens) AS BIGINT), SUM(cost),
	AVG(duration_ms), COALESCE(AVG(CASE WHEN ttft_ms > 0 THEN ttft_ms END), 0)
FROM ` + d.store.table
	if len(where) > 0 {
		text += " WHERE " + strings.Join(where, " AND ")
	}
	text += " GROUP BY grp, bucket ORDER BY bucket, grp"
	rows, err := db.QueryContext(ctx, db.Rebind(text), args...)
	if err != nil {
		return nil, fmt.Errorf("querying usage: %w", err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var r Row
		var bucketMS int64
		var durMS, ttftMS float64
		if err := rows.Scan(&r.Group, &bucketMS, &r.Requests, &r.Errors, &r.PromptTokens, &r.CompletionTokens,
			&r.CachedTokens, &r.TotalTokens, &r.Cost, &durMS, &ttftMS); err != nil {
			return nil, fmt.Errorf("querying usage: %w", err)
		}
		if q.Bucket > 0 {
			r.Bucket = time.UnixMilli(bucketMS).UTC()
		}
		r.DurationAvg, r.TTFTAvg = durMS/1000, ttftMS/1000
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("querying usage: %w", err)
	}
	return out, nil
}

// UnmarshalCaddyfile sets up the recorder from Caddyfile tokens. Syntax:
//
//	database sqlite <path> | postgres <url> | sqlite:<path> | postgres://... [{
//	    table          <name>
//	    batch_size     <n>
//	    flush_interval <duration>
//	    write_timeout  <duration>
//	    spool          <path>
//	    spool_size     <size>
//	    retention      <duration>
//	}]
func (d *Database) UnmarshalCaddyfile(disp *caddyfile.Dispenser) error {
	disp.Next() // consume the recorder's name
	dialect, dsn, err := sqldb.ParseArgs(disp.RemainingArgs())
	if err != nil {
		return disp.Errf("database: %v", err)
	}
	d.Dialect, d.DSN = dialect, dsn
	for nesting := disp.Nesting(); disp.NextBlock(nesting); {
		opt := disp.Val()
		switch opt {
		case "table", "spool":
			if !disp.NextArg() {
				return disp.ArgErr()
			}
			if opt == "table" {
				if !tableName.MatchString(disp.Val()) {
					return disp.Errf("database: bad table name '%s': use lower-case letters, digits and _", disp.Val())
				}
				d.Table = disp.Val()
			} else {
				d.SpoolPath = disp.Val()
			}
		case "batch_size":
			if !disp.NextArg() {
				return disp.ArgErr()
			}
			n, err := strconv.Atoi(disp.Val())
			if err != nil || n < 1 || n > maxDBBatchSize {
				return disp.Errf("database: bad batch_size '%s': use 1 to %d", disp.Val(), maxDBBatchSize)
			}
			d.BatchSize = n
		case "flush_interval", "write_timeout", "retention":
			dur, err := durationArg(disp)
			if err != nil {
				return err
			}
			switch opt {
			case "flush_interval":
				d.FlushInterval = dur
			case "write_timeout":
				d.WriteTimeout = dur
			default:
				d.Retention = dur
			}
		case "spool_size":
			n, err := directive.Size(disp)
			if err != nil {
				return err
			}
			d.SpoolSize = n
			continue
		default:
			return disp.Errf("unrecognized database recorder subdirective '%s'", opt)
		}
		if disp.NextArg() {
			return disp.ArgErr()
		}
	}
	return nil
}

// durationArg parses the one positive duration argument of the
// subdirective d is on.
func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	opt := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(d.Val())
	if err != nil || dur <= 0 {
		return 0, d.Errf("bad %s '%s': want a positive duration such as 500ms or 24h", opt, d.Val())
	}
	return caddy.Duration(dur), nil
}

// Interface guards
var (
	_ BatchRecorder         = (*Database)(nil)
	_ Spooler               = (*Database)(nil)
	_ Querier               = (*Database)(nil)
	_ caddy.Provisioner     = (*Database)(nil)
	_ caddy.CleanerUpper    = (*Database)(nil)
	_ caddyfile.Unmarshaler = (*Database)(nil)
	_ caddy.Destructor      = (*usageStore)(nil)
)
