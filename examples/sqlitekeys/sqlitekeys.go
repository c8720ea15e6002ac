// Package sqlitekeys is an example llm.auth guest: it checks client keys
// against an existing api_keys(key, user_id, active) table in SQLite, the
// table of the Python gateway's plugin guide.
package sqlitekeys

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	_ "modernc.org/sqlite" // the pure-Go "sqlite" driver

	"github.com/llmoneapi/llmoneapi/auth"
	"github.com/llmoneapi/llmoneapi/llm"
)

func init() { caddy.RegisterModule(SQLiteKeys{}) }

// SQLiteKeys authenticates keys found in the api_keys table of an SQLite
// file. Caddyfile, inside llm_auth: `sqlitekeys <path>` (read by the host
// from the field tags).
type SQLiteKeys struct {
	// Path is the SQLite file holding the api_keys table. Required.
	Path string `json:"path" caddyfile:"arg"`

	db *sql.DB
}

// CaddyModule returns the Caddy module information.
func (SQLiteKeys) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "llm.auth.sqlitekeys", New: func() caddy.Module { return new(SQLiteKeys) }}
}

// Provision opens the file read-only and checks that the table is there,
// so that a wrong path fails the config at load, not the first request.
func (s *SQLiteKeys) Provision(ctx caddy.Context) (err error) {
	if s.Path == "" {
		return errors.New("path is required")
	}
	if s.db, err = sql.Open("sqlite", "file:"+s.Path+"?mode=ro"); err == nil {
		_, err = s.db.ExecContext(ctx, "SELECT key, user_id, active FROM api_keys LIMIT 0")
	}
	if err != nil {
		return fmt.Errorf("reading the api_keys table of '%s': %w", s.Path, err)
	}
	return nil
}

// Authenticate looks the key up. An unknown key is not ours (nil, nil); an
// inactive one is refused; a database error means "could not tell".
func (s *SQLiteKeys) Authenticate(ctx context.Context, key string) (*llm.Identity, error) {
	var user string
	var active bool
	err := s.db.QueryRowContext(ctx, "SELECT user_id, active FROM api_keys WHERE key = ?", key).Scan(&user, &active)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, err
	case !active:
		return nil, &auth.Refusal{Code: "api_key_disabled", Reason: "the API key of user '" + user + "' is disabled"}
	}
	// The table has no public key id, so logs and stats name the user.
	return &llm.Identity{User: user, KeyID: user}, nil
}

// Cleanup closes the database; Caddy calls it also when Provision failed.
func (s *SQLiteKeys) Cleanup() error {
	if s.db == nil {
		return nil
	}
	return s.db.Close()
}

var _ auth.Authenticator = (*SQLiteKeys)(nil)
