// Package sqlitekeys is an example llm.auth guest: it checks client keys
// against an existing api_keys(key, user_id, active) table in SQLite, the
// table of the Python gateway's plugin guide.
package sqlitekeys

import (
	"context"
	"database/sql"
	"errors"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmoneapi/llmoneapi/auth"
	"github.com/llmoneapi/llmoneapi/guest"
	"github.com/llmoneapi/llmoneapi/llm"
)

func init() { caddy.RegisterModule(SQLiteKeys{}) }

// SQLiteKeys authenticates keys found in the api_keys table. Caddyfile,
// inside llm_auth: `sqlitekeys <file>` (read by the host from the field
// tags).
type SQLiteKeys struct {
	// The database holding the table ("database": the SQLite file, or a
	// PostgreSQL DSN), with its pool; Cleanup comes with it.
	guest.SQL
}

// CaddyModule returns the Caddy module information.
func (SQLiteKeys) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "llm.auth.sqlitekeys", New: func() caddy.Module { return new(SQLiteKeys) }}
}

// Provision opens the database and checks that the table is there, so
// that a wrong path fails the config at load, not the first request.
func (s *SQLiteKeys) Provision(ctx caddy.Context) error {
	return s.Open(ctx, "SELECT key, user_id, active FROM api_keys LIMIT 0")
}

// Authenticate looks the key up. An unknown key is not ours (nil, nil); an
// inactive one is refused; a database error means "could not tell".
func (s *SQLiteKeys) Authenticate(ctx context.Context, key string) (*llm.Identity, error) {
	var user string
	var active bool
	err := s.QueryRow(ctx, "SELECT user_id, active FROM api_keys WHERE key = ?", key).Scan(&user, &active)
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
