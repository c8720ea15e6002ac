package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmoneapi/llmoneapi/internal/sqldb"
	"github.com/llmoneapi/llmoneapi/llm"
)

// Database keys look like sk-llm-<public id>-<secret>. The public id names
// the key in logs, statistics and the key management commands, and is what
// a lookup goes by; the secret is what makes the key hard to guess. Both are
// base32 from crypto/rand: 12 characters (60 bits) of id, lower case so it
// reads as a name, and 52 characters (256 bits) of secret.
const (
	keyPrefix = "sk-llm-"
	idLen     = 12
	secretLen = 52
)

// defaultKeyTable is the table a database authenticator keeps its keys in.
const defaultKeyTable = "llm_keys"

var tableName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// newKey returns a fresh key and its public id.
func newKey() (key, id string) {
	id = strings.ToLower(rand.Text()[:idLen])
	return keyPrefix + id + "-" + rand.Text() + rand.Text(), id
}

// parseKey returns the public id of a key in the database format, or false
// for any other key, which a database authenticator then leaves to the
// others without asking its store.
func parseKey(key string) (id string, ok bool) {
	rest, ok := strings.CutPrefix(key, keyPrefix)
	if !ok || len(rest) != idLen+1+secretLen || rest[idLen] != '-' {
		return "", false
	}
	id, secret := rest[:idLen], rest[idLen+1:]
	for i := range len(id) {
		if c := id[i]; (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return "", false
		}
	}
	for i := range len(secret) {
		if c := secret[i]; (c < 'A' || c > 'Z') && (c < '2' || c > '7') {
			return "", false
		}
	}
	return id, true
}

// storedHash is what the store keeps of a key: its SHA-256 digest. The secret
// holds 256 random bits, so nothing can be learned by guessing candidates
// against a leaked digest, and a slow password hash would only add its cost
// to every cache miss. The digest covers the whole key, id included, so a
// digest is bound to its row.
func storedHash(key string) [sha256.Size]byte {
	// Through an array on the stack: []byte(key) would allocate on every
	// request.
	var buf [len(keyPrefix) + idLen + 1 + secretLen]byte
	if len(key) != len(buf) {
		return sha256.Sum256([]byte(key))
	}
	copy(buf[:], key)
	return sha256.Sum256(buf[:])
}

// StoredKey is a database key as the store keeps it: everything but the
// secret, which is kept only as a hash and never shown again.
type StoredKey struct {
	// ID is the key's public id, the part after "sk-llm-".
	ID string `json:"id"`
	// User is who the key belongs to.
	User string `json:"user,omitempty"`
	// Team is the team the key belongs to.
	Team string `json:"team,omitempty"`
	// Name says what the key is for.
	Name string `json:"name,omitempty"`
	// Models is the key's model scope; empty for every model.
	Models llm.Scope `json:"models,omitempty"`
	// The key's limits (rpm, tpm, max_concurrent, quota, quota_period,
	// budget, budget_period); zero for none.
	llm.Limits
	// ExpiresAt is when the key stops working; nil for never.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Disabled keys are refused until enabled again.
	Disabled bool `json:"disabled"`
	// RevokedAt is when the key was revoked, for good.
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// CreatedAt is when the key was created.
	CreatedAt time.Time `json:"created_at"`
	// LastUsedAt is when the key last authenticated a request, to within
	// the few seconds the store batches these stamps over.
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`

	hash [sha256.Size]byte
}

// Status is "active", "disabled", "expired" or "revoked", at time now.
func (k *StoredKey) Status(now time.Time) string {
	switch {
	case k.RevokedAt != nil:
		return "revoked"
	case k.Disabled:
		return "disabled"
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return "expired"
	}
	return "active"
}

// refusal is why the key may not be used now, or nil.
func (k *StoredKey) refusal(now time.Time) error {
	switch k.Status(now) {
	case "revoked":
		return &Refusal{Code: "api_key_revoked", Reason: fmt.Sprintf("the API key '%s' has been revoked; ask the gateway's operator for a new one", k.ID)}
	case "disabled":
		return &Refusal{Code: "api_key_disabled", Reason: fmt.Sprintf("the API key '%s' is disabled; ask the gateway's operator to enable it", k.ID)}
	case "expired":
		return &Refusal{Code: "api_key_expired", Reason: fmt.Sprintf("the API key '%s' expired at %s; ask the gateway's operator for a new one", k.ID, k.ExpiresAt.UTC().Format(time.RFC3339))}
	}
	return nil
}

// identity is who the key authenticates as.
func (k *StoredKey) identity() *llm.Identity {
	return &llm.Identity{User: k.User, KeyID: k.ID, Models: k.Models, Team: k.Team, Limits: k.Limits}
}

// KeyChange is a change to a key, as the admin API takes it in JSON and
// the commands from their flags: each field given is set, the others are
// left as they are (for a new key: empty, no limit, never expiring).
type KeyChange struct {
	User          *string     `json:"user,omitempty"`
	Team          *string     `json:"team,omitempty"`
	Name          *string     `json:"name,omitempty"`
	Models        *llm.Scope  `json:"models,omitempty"`
	RPM           *int64      `json:"rpm,omitempty"`
	TPM           *int64      `json:"tpm,omitempty"`
	MaxConcurrent *int64      `json:"max_concurrent,omitempty"`
	Quota         *int64      `json:"quota,omitempty"`
	QuotaPeriod   *llm.Period `json:"quota_period,omitempty"`
	Budget        *float64    `json:"budget,omitempty"`
	BudgetPeriod  *llm.Period `json:"budget_period,omitempty"`
	// ExpiresAt is an RFC 3339 time ("2027-01-31T00:00:00Z"), a date
	// ("2027-01-31", midnight UTC), a time from now ("720h", "90d"), or
	// "never".
	ExpiresAt *string `json:"expires_at,omitempty"`
	Disabled  *bool   `json:"disabled,omitempty"`
}

// errBadChange marks the errors of a change that cannot be applied.
var errBadChange = errors.New("invalid key settings")

// apply checks c and applies it to k.
func (c *KeyChange) apply(k *StoredKey, now time.Time) error {
	if err := c.applyChecked(k, now); err != nil {
		return fmt.Errorf("%w: %w", errBadChange, err)
	}
	return nil
}

func (c *KeyChange) applyChecked(k *StoredKey, now time.Time) error {
	set(&k.User, c.User)
	set(&k.Team, c.Team)
	set(&k.Name, c.Name)
	set(&k.Models, c.Models)
	set(&k.RPM, c.RPM)
	set(&k.TPM, c.TPM)
	set(&k.MaxConcurrent, c.MaxConcurrent)
	set(&k.Quota, c.Quota)
	set(&k.QuotaPeriod, c.QuotaPeriod)
	set(&k.Budget, c.Budget)
	set(&k.BudgetPeriod, c.BudgetPeriod)
	set(&k.Disabled, c.Disabled)
	if c.ExpiresAt != nil {
		t, err := parseExpiry(*c.ExpiresAt, now)
		if err != nil {
			return err
		}
		k.ExpiresAt = t
	}
	if err := k.Models.Validate(); err != nil {
		return fmt.Errorf("models: %w", err)
	}
	return checkLimits(k.Limits)
}

// parseExpiry reads an expiry as KeyChange.ExpiresAt describes it; nil
// means never.
func parseExpiry(s string, now time.Time) (*time.Time, error) {
	var t time.Time
	switch {
	case s == "never" || s == "":
		return nil, nil
	case strings.Contains(s, "T"):
		var err error
		if t, err = time.Parse(time.RFC3339, s); err != nil {
			return nil, fmt.Errorf("expires_at '%s' is not an RFC 3339 time such as 2027-01-31T00:00:00Z", s)
		}
	case strings.Count(s, "-") == 2:
		var err error
		if t, err = time.Parse(time.DateOnly, s); err != nil {
			return nil, fmt.Errorf("expires_at '%s' is not a date such as 2027-01-31", s)
		}
	default:
		d, err := caddy.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("expires_at '%s' is not a time, a date, a duration from now such as 720h or 90d, or 'never'", s)
		}
		t = now.Add(d)
	}
	t = t.UTC().Truncate(time.Microsecond)
	return &t, nil
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// errNoKey is returned for a key id the store does not hold.
var errNoKey = errors.New("no such key")

// keyTable is the SQL table of database keys, the one place that speaks
// SQL about them: the authenticator, the admin API and the commands all go
// through it.
type keyTable struct {
	db    *sqldb.DB
	table string
}

// keyMigrations is the schema of a key table, in order; add, never edit.
func keyMigrations(table string) []sqldb.Migration {
	create := func(ts string) string {
		return strings.NewReplacer("$TS", ts, "$T", table).Replace(`CREATE TABLE $T (
			id TEXT PRIMARY KEY,
			key_hash TEXT NOT NULL,
			user_name TEXT NOT NULL DEFAULT '',
			team TEXT NOT NULL DEFAULT '',
			name TEXT NOT NULL DEFAULT '',
			models TEXT NOT NULL DEFAULT '',
			rpm BIGINT NOT NULL DEFAULT 0,
			tpm BIGINT NOT NULL DEFAULT 0,
			max_concurrent BIGINT NOT NULL DEFAULT 0,
			quota BIGINT NOT NULL DEFAULT 0,
			quota_period TEXT NOT NULL DEFAULT '',
			budget DOUBLE PRECISION NOT NULL DEFAULT 0,
			budget_period TEXT NOT NULL DEFAULT '',
			expires_at $TS,
			disabled BOOLEAN NOT NULL DEFAULT FALSE,
			revoked_at $TS,
			created_at $TS NOT NULL,
			last_used_at $TS
		);
		CREATE INDEX $T_user ON $T (user_name);
		CREATE INDEX $T_team ON $T (team)`)
	}
	return []sqldb.Migration{{SQLite: create("TIMESTAMP"), Postgres: create("TIMESTAMPTZ")}}
}

// openKeyTable opens the store and brings the table's schema up to date.
// Release the table's db with sqldb.Release.
func openKeyTable(ctx context.Context, dialect, dsn, table string) (*keyTable, error) {
	if table == "" {
		table = defaultKeyTable
	}
	if !tableName.MatchString(table) {
		return nil, fmt.Errorf("table '%s' is not a plain SQL name (lower-case letters, digits and '_')", table)
	}
	db, err := sqldb.Open(ctx, dialect, dsn)
	if err != nil {
		return nil, err
	}
	component := "auth_keys"
	if table != defaultKeyTable {
		component += ":" + table
	}
	if err := db.Migrate(ctx, component, keyMigrations(table)); err != nil {
		sqldb.Release(db)
		return nil, err
	}
	return &keyTable{db: db, table: table}, nil
}

const keyColumns = `id, key_hash, user_name, team, name, models, rpm, tpm, max_concurrent, quota, quota_period,
	budget, budget_period, expires_at, disabled, revoked_at, created_at, last_used_at`

func (t *keyTable) query(q string) string {
	return t.db.Rebind(strings.ReplaceAll(q, "$T", t.table))
}

func (t *keyTable) scan(row interface{ Scan(...any) error }) (*StoredKey, error) {
	var (
		k                             StoredKey
		hash, models                  string
		expires, revoked, created, lu sql.NullTime
	)
	if err := row.Scan(&k.ID, &hash, &k.User, &k.Team, &k.Name, &models, &k.RPM, &k.TPM, &k.MaxConcurrent,
		&k.Quota, &k.QuotaPeriod, &k.Budget, &k.BudgetPeriod, &expires, &k.Disabled, &revoked, &created, &lu); err != nil {
		return nil, err
	}
	if _, err := hex.Decode(k.hash[:], []byte(hash)); err != nil || len(hash) != hex.EncodedLen(sha256.Size) {
		return nil, fmt.Errorf("key '%s' has a malformed hash in the store", k.ID)
	}
	if models != "" {
		if err := json.Unmarshal([]byte(models), &k.Models); err != nil {
			return nil, fmt.Errorf("key '%s' has malformed models in the store: %w", k.ID, err)
		}
	}
	k.ExpiresAt, k.RevokedAt, k.LastUsedAt = timePtr(expires), timePtr(revoked), timePtr(lu)
	k.CreatedAt = created.Time.UTC()
	return &k, nil
}

func timePtr(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
}

func nullTime(t *time.Time) sql.NullTime {
	if t == nil {
		return sql.NullTime{}
	}
	return sql.NullTime{Time: t.UTC(), Valid: true}
}

func modelsText(s llm.Scope) string {
	if len(s) == 0 {
		return ""
	}
	b, _ := json.Marshal(s)
	return string(b)
}

// Get returns the key with the public id, or errNoKey.
func (t *keyTable) Get(ctx context.Context, id string) (*StoredKey, error) {
	k, err := t.scan(t.db.QueryRowContext(ctx, t.query(`SELECT `+keyColumns+` FROM $T WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("key '%s': %w", id, errNoKey)
	}
	if err != nil {
		return nil, fmt.Errorf("reading key '%s' from %s: %w", id, t.db.Display(), err)
	}
	return k, nil
}

// keyFilter selects keys to list; empty fields select all.
type keyFilter struct {
	User, Team string
}

// List returns the keys the filter selects, oldest first.
func (t *keyTable) List(ctx context.Context, f keyFilter) ([]*StoredKey, error) {
	q := `SELECT ` + keyColumns + ` FROM $T WHERE 1 = 1`
	var args []any
	if f.User != "" {
		q += ` AND user_name = ?`
		args = append(args, f.User)
	}
	if f.Team != "" {
		q += ` AND team = ?`
		args = append(args, f.Team)
	}
	rows, err := t.db.QueryContext(ctx, t.query(q+` ORDER BY created_at, id`), args...)
	if err != nil {
		return nil, fmt.Errorf("listing keys in %s: %w", t.db.Display(), err)
	}
	defer rows.Close()
	keys := []*StoredKey{}
	for rows.Next() {
		k, err := t.scan(rows)
		if err != nil {
			return nil, fmt.Errorf("listing keys in %s: %w", t.db.Display(), err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing keys in %s: %w", t.db.Display(), err)
	}
	return keys, nil
}

// Create makes a new key with the settings of c, and returns it with the
// key itself, which exists nowhere else from then on.
func (t *keyTable) Create(ctx context.Context, c KeyChange) (*StoredKey, string, error) {
	k := &StoredKey{CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
	if err := c.apply(k, k.CreatedAt); err != nil {
		return nil, "", err
	}
	key, id := newKey()
	k.ID, k.hash = id, storedHash(key)
	_, err := t.db.ExecContext(ctx, t.query(`INSERT INTO $T (`+keyColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		k.ID, hex.EncodeToString(k.hash[:]), k.User, k.Team, k.Name, modelsText(k.Models), k.RPM, k.TPM, k.MaxConcurrent,
		k.Quota, k.QuotaPeriod, k.Budget, k.BudgetPeriod, nullTime(k.ExpiresAt), k.Disabled, nullTime(nil), k.CreatedAt, nullTime(nil))
	if err != nil {
		return nil, "", fmt.Errorf("creating a key in %s: %w", t.db.Display(), err)
	}
	return k, key, nil
}

// Update applies c to the key with the public id and returns the result.
// A revoked key stays revoked.
func (t *keyTable) Update(ctx context.Context, id string, c KeyChange) (*StoredKey, error) {
	k, err := t.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := c.apply(k, time.Now()); err != nil {
		return nil, fmt.Errorf("key '%s': %w", id, err)
	}
	_, err = t.db.ExecContext(ctx, t.query(`UPDATE $T SET user_name = ?, team = ?, name = ?, models = ?, rpm = ?, tpm = ?,
		max_concurrent = ?, quota = ?, quota_period = ?, budget = ?, budget_period = ?, expires_at = ?, disabled = ? WHERE id = ?`),
		k.User, k.Team, k.Name, modelsText(k.Models), k.RPM, k.TPM, k.MaxConcurrent, k.Quota, k.QuotaPeriod,
		k.Budget, k.BudgetPeriod, nullTime(k.ExpiresAt), k.Disabled, id)
	if err != nil {
		return nil, fmt.Errorf("updating key '%s' in %s: %w", id, t.db.Display(), err)
	}
	return k, nil
}

// Revoke ends the key for good and returns it. The row stays, so that the
// key's clients are told it was revoked and its records keep a name.
func (t *keyTable) Revoke(ctx context.Context, id string) (*StoredKey, error) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	_, err := t.db.ExecContext(ctx, t.query(`UPDATE $T SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`), now, id)
	if err != nil {
		return nil, fmt.Errorf("revoking key '%s' in %s: %w", id, t.db.Display(), err)
	}
	// No row changed when the key is unknown (Get says so) or was revoked
	// already (Get shows when).
	return t.Get(ctx, id)
}

// touch records when keys were last used, in one transaction.
func (t *keyTable) touch(ctx context.Context, used map[string]time.Time) error {
	tx, err := t.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck
	q := t.query(`UPDATE $T SET last_used_at = ? WHERE id = ?`)
	for id, at := range used {
		if _, err := tx.ExecContext(ctx, q, at.UTC(), id); err != nil {
			return err
		}
	}
	return tx.Commit()
}
