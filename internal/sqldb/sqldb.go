// Package sqldb opens the SQL stores the modules share (SQLite, the embedded
// default, and PostgreSQL), keeps one connection pool per store across config
// reloads, and applies each component's versioned schema migrations.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
	_ "modernc.org/sqlite"             // driver "sqlite", pure Go
)

// The dialects.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// DB is an open store. It is shared: Close it through Release only.
type DB struct {
	*sql.DB
	// Dialect is SQLite or Postgres.
	Dialect string
	// Name is the store as a user wrote it, without a password, for logs.
	Name string
}

var pool = caddy.NewUsagePool()

type pooled struct{ *DB }

func (p pooled) Destruct() error { return p.DB.DB.Close() }

// ParseDSN splits a store as users write it, "sqlite <path>" arguments or a
// "sqlite:<path>" / "postgres://..." string, into its dialect and DSN.
func ParseDSN(s string) (dialect, dsn string, err error) {
	switch {
	case strings.HasPrefix(s, "postgres://"), strings.HasPrefix(s, "postgresql://"):
		return Postgres, s, nil
	case strings.HasPrefix(s, "sqlite:"):
		return SQLite, strings.TrimPrefix(s, "sqlite:"), nil
	}
	return "", "", fmt.Errorf("'%s' is not a store: write sqlite:<path> or postgres://<user>@<host>/<db>", s)
}

// Open returns the shared pool of the store (dialect, dsn), opening it and
// checking that it answers when this is its first user. Each Open must be
// matched by one Release.
func Open(ctx context.Context, dialect, dsn string) (*DB, error) {
	if dsn == "" {
		return nil, errors.New("no database path or DSN given")
	}
	key := dialect + "|" + dsn
	v, _, err := pool.LoadOrNew(key, func() (caddy.Destructor, error) {
		db, err := open(ctx, dialect, dsn)
		if err != nil {
			return nil, err
		}
		return pooled{db}, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(pooled).DB, nil
}

// Release lets go of a store got from Open; the last release closes it.
func Release(db *DB) {
	_, _ = pool.Delete(db.Dialect + "|" + db.Name)
}

func open(ctx context.Context, dialect, dsn string) (*DB, error) {
	var (
		sdb *sql.DB
		err error
	)
	switch dialect {
	case SQLite:
		if dir := filepath.Dir(dsn); dir != "." {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("creating the directory of %s: %w", dsn, err)
			}
		}
		// WAL lets readers run beside the one writer; busy_timeout makes a
		// second writer wait instead of failing with "database is locked";
		// immediate transactions take the write lock up front, so two
		// writers never deadlock upgrading a read lock.
		sdb, err = sql.Open("sqlite", "file:"+dsn+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)&_txlock=immediate")
		if err == nil {
			sdb.SetMaxOpenConns(8)
		}
	case Postgres:
		sdb, err = sql.Open("pgx", dsn)
		if err == nil {
			sdb.SetMaxOpenConns(16)
			sdb.SetMaxIdleConns(16)
			sdb.SetConnMaxIdleTime(5 * time.Minute)
		}
	default:
		return nil, fmt.Errorf("unknown database kind '%s': use sqlite or postgres", dialect)
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s database: %w", dialect, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sdb.PingContext(pctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("connecting to %s database %s: %w", dialect, redact(dsn), err)
	}
	return &DB{DB: sdb, Dialect: dialect, Name: dsn}, nil
}

// Display is the store's name for logs and errors, with any password hidden.
func (db *DB) Display() string { return redact(db.Name) }

func redact(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return dsn
	}
	userinfo := dsn[scheme+3 : at]
	if i := strings.IndexByte(userinfo, ':'); i >= 0 {
		return dsn[:scheme+3] + userinfo[:i] + ":xxxxx" + dsn[at:]
	}
	return dsn
}

// Rebind turns a query written with ? placeholders into the dialect's form
// ($1, $2, ... for PostgreSQL). Queries must not hold a literal '?'.
func (db *DB) Rebind(query string) string {
	if db.Dialect != Postgres || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

// Migration is one step of a component's schema. Its SQL may hold several
// statements separated by ';' and is run in one transaction; give a
// dialect its own text where the two differ.
type Migration struct {
	SQLite, Postgres string
}

// Migrate brings the schema of component (a name such as "auth_keys") up
// to date: migration i (from 1) is applied once, in order, and recorded in
// the table llm_schema_migrations. Instances of a fleet starting together
// take turns (an advisory lock on PostgreSQL, the write lock on SQLite).
func (db *DB) Migrate(ctx context.Context, component string, migrations []Migration) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrating %s in %s: %w", component, db.Display(), err)
	}
	defer conn.Close()
	if db.Dialect == Postgres {
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(4242001)`); err != nil {
			return fmt.Errorf("migrating %s in %s: locking: %w", component, db.Display(), err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(4242001)`) //nolint:errcheck
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS llm_schema_migrations (
		component TEXT NOT NULL, version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL,
		PRIMARY KEY (component, version))`); err != nil {
		return fmt.Errorf("migrating %s in %s: %w", component, db.Display(), err)
	}
	for i, m := range migrations {
		version := i + 1
		if err := db.apply(ctx, conn, component, version, m); err != nil {
			return fmt.Errorf("migrating %s in %s to version %d: %w", component, db.Display(), version, err)
		}
	}
	return nil
}

func (db *DB) apply(ctx context.Context, conn *sql.Conn, component string, version int, m Migration) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck
	var n int
	if err := tx.QueryRowContext(ctx, db.Rebind(`SELECT COUNT(*) FROM llm_schema_migrations WHERE component = ? AND version = ?`),
		component, version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	text := m.SQLite
	if db.Dialect == Postgres && m.Postgres != "" {
		text = m.Postgres
	}
	for _, stmt := range strings.Split(text, ";") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%w in: %s", err, strings.TrimSpace(stmt))
		}
	}
	if _, err := tx.ExecContext(ctx, db.Rebind(`INSERT INTO llm_schema_migrations (component, version, applied_at) VALUES (?, ?, ?)`),
		component, version, time.Now().UTC()); err != nil {
		return err
	}
	return tx.Commit()
}

// ParseArgs reads a store from the arguments of a Caddyfile line, as the
// database modules take them: "sqlite <path>", "postgres <dsn>", or one
// "sqlite:<path>" / "postgres://..." argument.
func ParseArgs(args []string) (dialect, dsn string, err error) {
	switch len(args) {
	case 1:
		return ParseDSN(args[0])
	case 2:
		if args[0] != SQLite && args[0] != Postgres {
			return "", "", fmt.Errorf("unknown kind '%s': write 'sqlite <path>' or 'postgres <dsn>'", args[0])
		}
		return args[0], args[1], nil
	}
	return "", "", fmt.Errorf("write 'sqlite <path>' or 'postgres <dsn>', got %d arguments", len(args))
}
