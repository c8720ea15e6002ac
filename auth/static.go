package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/llmoneapi/llmoneapi/llm"
)

func init() {
	caddy.RegisterModule(Static{})
}

// Static authenticates clients with keys written in the config.
//
// A key written in plain text is visible to anyone who can read the config,
// including through Caddy's /config admin endpoint. To keep keys out of it,
// write them as "sha256:<hex digest>" (for example the output of
// `printf %s "$KEY" | sha256sum`) or as an environment placeholder such as
// {env.TEAM_KEY}, which is resolved when the config loads. Only the SHA-256
// digests of the keys are kept in memory, and a presented key is compared
// with every one of them in constant time.
type Static struct {
	// The keys. Each key, and each key id, may appear only once.
	Keys []Key `json:"keys,omitempty"`

	// The secret that the default ids of keys are derived from, so that an
	// id in a log cannot be used to confirm a guessed key. Placeholders such
	// as {env.KEY_ID_SECRET} are resolved when the config loads. Default: a
	// random secret made on first use and kept in the file
	// llmoneapi/key-id-secret of Caddy's data directory, so ids are stable
	// across restarts of one installation; give every instance of a fleet
	// the same id_secret (or explicit ids) so that they agree on ids.
	IDSecret string `json:"id_secret,omitempty"`

	entries []staticEntry
}

// Key is one client key of a Static authenticator.
type Key struct {
	// The key, in plain text or as "sha256:" followed by the 64 hex digits of
	// its SHA-256 digest. Placeholders such as {env.TEAM_KEY} are resolved
	// when the config loads; one that resolves to nothing is an error.
	Key string `json:"key"`

	// A public identifier of the key, for logs, statistics, limits and the
	// {llm.key_id} placeholder. Default: "key-" followed by 12 hex digits of
	// the HMAC-SHA-256, keyed with the authenticator's id_secret, of the
	// key's SHA-256 digest: the same whether the key is written in plain
	// text or hashed, and of no use to confirm a guess without the secret.
	ID string `json:"id,omitempty"`

	// The user or team the key belongs to, for the {llm.user} placeholder,
	// logs and statistics.
	User string `json:"user,omitempty"`

	// The models the key may use: names, and glob patterns where '*' matches
	// any run of characters ("gpt-4o*", "meta-llama/*"), '?' one character
	// and '[...]' one character of a class. Default: every model.
	Models llm.Scope `json:"models,omitempty"`

	// The team the key belongs to, for budgets shared by a team's keys.
	Team string `json:"team,omitempty"`

	// The key's rate limits, token quota and spend budget (see
	// LimitSettings for how they are counted). Zero fields set no limit.
	Limits llm.Limits `json:"limits,omitzero"`
}

type staticEntry struct {
	digest   [sha256.Size]byte
	identity *llm.Identity
}

// CaddyModule returns the Caddy module information.
func (Static) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "llm.auth.static",
		New: func() caddy.Module { return new(Static) },
	}
}

// Provision resolves and hashes the keys and checks them. Errors name a key
// by its position and id, never by its text, since they end up in logs.
func (s *Static) Provision(caddy.Context) error {
	if len(s.Keys) == 0 {
		return errors.New("static authenticator has no keys; add at least one 'key'")
	}
	repl := caddy.NewReplacer()
	var idKey []byte
	s.entries = make([]staticEntry, 0, len(s.Keys))
	keyAt := make(map[[sha256.Size]byte]int, len(s.Keys))
	idAt := make(map[string]int, len(s.Keys))
	for i, k := range s.Keys {
		digest, err := keyDigest(repl.ReplaceAll(k.Key, ""))
		if err != nil {
			return fmt.Errorf("%s: %w", keyLabel(i, k.ID), err)
		}
		id := k.ID
		if id == "" {
			if idKey == nil {
				if idKey, err = s.idKey(repl); err != nil {
					return err
				}
			}
			mac := hmac.New(sha256.New, idKey)
			mac.Write(digest[:])
			id = "key-" + hex.EncodeToString(mac.Sum(nil)[:6])
		}
		if j, dup := keyAt[digest]; dup {
			return fmt.Errorf("%s is the same key as %s; write each key once", keyLabel(i, id), keyLabel(j, s.entries[j].identity.KeyID))
		}
		if j, dup := idAt[id]; dup {
			return fmt.Errorf("%s: id '%s' is already used by key #%d; key ids must be unique", keyLabel(i, ""), id, j+1)
		}
		if err := k.Models.Validate(); err != nil {
			return fmt.Errorf("%s: %w", keyLabel(i, id), err)
		}
		if err := checkLimits(k.Limits); err != nil {
			return fmt.Errorf("%s: %w", keyLabel(i, id), err)
		}
		keyAt[digest], idAt[id] = i, i
		s.entries = append(s.entries, staticEntry{
			digest:   digest,
			identity: &llm.Identity{User: k.User, Team: k.Team, KeyID: id, Models: k.Models, Limits: k.Limits},
		})
	}
	return nil
}

// idKey returns the HMAC key of default key ids: id_secret, or the
// installation's secret.
func (s *Static) idKey(repl *caddy.Replacer) ([]byte, error) {
	if s.IDSecret != "" {
		secret := repl.ReplaceAll(s.IDSecret, "")
		if secret == "" {
			return nil, errors.New("static authenticator: id_secret is empty (is its environment variable set?)")
		}
		return []byte(secret), nil
	}
	return installationSecret()
}

// installationSecret returns the random secret of this installation, kept
// in Caddy's data directory, making it on first use. It is written to a
// temporary file and linked into place, so that instances starting together
// agree on one secret and none reads a half-written file.
func installationSecret() ([]byte, error) {
	dir := filepath.Join(caddy.AppDataDir(), "llmoneapi")
	path := filepath.Join(dir, "key-id-secret")
	secret, err := os.ReadFile(path)
	if err == nil && len(secret) > 0 {
		return secret, nil
	}
	if !errors.Is(err, fs.ErrNotExist) && err != nil {
		return nil, fmt.Errorf("static authenticator: reading the key id secret: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("static authenticator: making the key id secret: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "key-id-secret-*")
	if err != nil {
		return nil, fmt.Errorf("static authenticator: making the key id secret: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(rand.Text() + rand.Text() + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if err = os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
			err = nil // another instance was first: use its secret
		}
	}
	if err != nil {
		return nil, fmt.Errorf("static authenticator: making the key id secret: %w", err)
	}
	return os.ReadFile(path)
}

// keyDigest returns the SHA-256 digest of a key written in plain text or as
// "sha256:<hex>".
func keyDigest(key string) ([sha256.Size]byte, error) {
	var digest [sha256.Size]byte
	if key == "" {
		return digest, errors.New("the key is empty (is its environment variable set?)")
	}
	hexDigest, hashed := strings.CutPrefix(key, "sha256:")
	if !hashed {
		return sha256.Sum256([]byte(key)), nil
	}
	if len(hexDigest) != hex.EncodedLen(sha256.Size) {
		return digest, fmt.Errorf("malformed sha256 key: want 'sha256:' and 64 hex digits, got %d characters after 'sha256:'", len(hexDigest))
	}
	if _, err := hex.Decode(digest[:], []byte(hexDigest)); err != nil {
		return digest, errors.New("malformed sha256 key: the digest is not hexadecimal")
	}
	return digest, nil
}

func keyLabel(i int, id string) string {
	if id == "" {
		return fmt.Sprintf("static key #%d", i+1)
	}
	return fmt.Sprintf("static key #%d (id '%s')", i+1, id)
}

// Authenticate returns the identity of the key, or nil if the key is not one
// of the configured keys. Every configured key is compared, whichever
// matches, so that the time taken tells nothing about which key is close.
// The returned Identity is shared by all requests with that key and must not
// be modified.
func (s *Static) Authenticate(_ context.Context, key string) (*llm.Identity, error) {
	digest := sha256.Sum256([]byte(key))
	found := -1
	for i := range s.entries {
		eq := subtle.ConstantTimeCompare(digest[:], s.entries[i].digest[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return nil, nil
	}
	return s.entries[found].identity, nil
}

// UnmarshalCaddyfile sets up the authenticator from Caddyfile tokens. Syntax:
//
//	static {
//	    id_secret <secret>
//	    key <key> [{
//	        id     <id>
//	        user   <user>
//	        team   <team>
//	        models <pattern...>
//	        rpm            <requests per minute>
//	        tpm            <tokens per minute>
//	        max_concurrent <requests>
//	        quota          <tokens> [daily|weekly|monthly]
//	        budget         <usd>    [daily|weekly|monthly]
//	    }]
//	}
//
// The key subdirective is repeated for each key; id_secret is the HMAC key
// of the default key ids.
func (s *Static) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume module name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if d.Val() == "id_secret" {
			// Not d.AllArgs' error: it would quote the secret.
			if !d.NextArg() || d.Val() == "" {
				return d.Err("'id_secret' needs the secret as its argument")
			}
			s.IDSecret = d.Val()
			if d.NextArg() {
				return d.Err("'id_secret' takes one argument")
			}
			continue
		}
		if d.Val() != "key" {
			return d.Errf("unrecognized static subdirective '%s'", d.Val())
		}
		var k Key
		// Not d.ArgErr: it would quote a neighboring token, which may be a key.
		if !d.NextArg() {
			return d.Err("'key' needs the key as its argument")
		}
		k.Key = d.Val()
		if d.NextArg() {
			return d.Err("'key' takes one argument, the key, and an optional block")
		}
		for keyNesting := d.Nesting(); d.NextBlock(keyNesting); {
			switch d.Val() {
			case "id":
				if !d.AllArgs(&k.ID) {
					return d.ArgErr()
				}
			case "user":
				if !d.AllArgs(&k.User) {
					return d.ArgErr()
				}
			case "team":
				if !d.AllArgs(&k.Team) {
					return d.ArgErr()
				}
			case "models":
				models := d.RemainingArgs()
				if len(models) == 0 {
					return d.ArgErr()
				}
				k.Models = append(k.Models, models...)
			default:
				if ok, err := parseLimit(d, &k.Limits); err != nil {
					return err
				} else if !ok {
					return d.Errf("unrecognized static key subdirective '%s'", d.Val())
				}
			}
		}
		s.Keys = append(s.Keys, k)
	}
	return nil
}

// Interface guards
var (
	_ Authenticator         = (*Static)(nil)
	_ caddy.Provisioner     = (*Static)(nil)
	_ caddyfile.Unmarshaler = (*Static)(nil)
)
