package guest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmoneapi/llmoneapi/internal/sqldb"
)

// SQL is an SQL database a guest module uses, made to be embedded in the
// module's struct: its Database is the module's "database" config field
// (and its first Caddyfile argument). The module calls Open from its
// Provision, with a query that must work (one that reads the tables it
// needs), so that a wrong path or a missing table fails the config at
// load; it gets Cleanup from SQL.
//
// The pool is shared by every module of the process that names the same
// database, the built-in database modules included, and kept across config
// reloads. SQLite files are opened in WAL mode, so the gateway reads while
// another program writes.
type SQL struct {
	// Database is an SQLite file (its path, or sqlite:<path>; a missing
	// file is created empty) or a PostgreSQL DSN (postgres://...).
	// Placeholders such as {env.DATABASE_URL} are resolved when the config
	// loads. Required.
	Database string `json:"database" caddyfile:"arg"`

	db *sqldb.DB
}

// Open opens the database and, when check is not empty, runs check on it.
func (s *SQL) Open(ctx context.Context, check string) error {
	name := caddy.NewReplacer().ReplaceAll(s.Database, "")
	if name == "" {
		return errors.New("no database given (is its environment variable set?)")
	}
	dialect, dsn, err := sqldb.ParseDSN(name)
	if err != nil {
		dialect, dsn = sqldb.SQLite, name // a bare path is an SQLite file
	}
	if s.db, err = sqldb.Open(ctx, dialect, dsn); err != nil {
		return err
	}
	if check != "" {
		if _, err := s.db.ExecContext(ctx, check); err != nil {
			return fmt.Errorf("database %s: %w", s.db.Display(), err)
		}
	}
	return nil
}

// QueryRow runs a query written with ? placeholders, whatever the
// database's own placeholder syntax.
func (s *SQL) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return s.db.QueryRowContext(ctx, s.db.Rebind(query), args...)
}

// Exec runs a statement written with ? placeholders.
func (s *SQL) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return s.db.ExecContext(ctx, s.db.Rebind(query), args...)
}

// Cleanup lets go of the pool; the last module to let go of a database
// closes it. Caddy calls it also when Provision failed.
func (s *SQL) Cleanup() error {
	if s.db != nil {
		sqldb.Release(s.db)
	}
	return nil
}
