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
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "modernc.org/sqlite" // the pure-Go "sqlite" driver

	"github.com/llmoneapi/llmoneapi/auth"
	"github.com/llmoneapi/llmoneapi/llm"
)

func init() { caddy.RegisterModule(SQLiteKeys{}) }

// SQLiteKeys authenticates keys found in the api_keys table of an SQLite
// file. Caddyfile, inside llm_auth: `sqlitekeys <path>`.
type SQLiteKeys struct {
	// Path is the SQLite file holding the api_keys table.
	Path string `json:"path"`

	db *sql.DB
}

// CaddyModule returns the Caddy module information.
func (SQLiteKeys) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "llm.auth.sqlitekeys", New: func() caddy.Module { return new(SQLiteKeys) }}
}

// Provision opens the file read-only and checks that the table is there,
// so that a wrong path fails the config at load, not the first request.
func (s *SQLiteKeys) Provision(ctx caddy.Context) error {
	if s.Path == "" {
		return errors.New("sqlitekeys: path is required")
	}
	db, err := sql.Open("sqlite", "file:"+s.Path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		return fmt.Errorf("sqlitekeys: %w", err)
	}
	s.db = db // Caddy calls Cleanup also when Provision fails
	if _, err := db.ExecContext(ctx, "SELECT key, user_id, active FROM api_keys LIMIT 0"); err != nil {
		return fmt.Errorf("sqlitekeys: reading the api_keys table of '%s': %w", s.Path, err)
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
		return nil, fmt.Errorf("sqlitekeys: %w", err)
	case !active:
		return nil, &auth.Refusal{Code: "api_key_disabled", Reason: "the API key of user '" + user + "' is disabled"}
	}
	// The table has no public key id, so logs and stats name the user.
	return &llm.Identity{User: user, KeyID: user}, nil
}

// Cleanup closes the database.
func (s *SQLiteKeys) Cleanup() error {
	if s.db == nil {
		return nil
	}
	return s.db.Close()
}

// UnmarshalCaddyfile reads `sqlitekeys <path>`.
func (s *SQLiteKeys) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module's name
	if !d.AllArgs(&s.Path) || d.NextBlock(0) {
		return d.Err("sqlitekeys takes one argument, the SQLite file's path: sqlitekeys <path>")
	}
	return nil
}

// Interface guards
var (
	_ auth.Authenticator    = (*SQLiteKeys)(nil)
	_ caddy.Provisioner     = (*SQLiteKeys)(nil)
	_ caddy.CleanerUpper    = (*SQLiteKeys)(nil)
	_ caddyfile.Unmarshaler = (*SQLiteKeys)(nil)
)
