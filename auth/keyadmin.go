package auth

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmoneapi/llmoneapi/internal/adminapi"
)

func init() {
	adminapi.Handle("/llm/keys", caddy.AdminHandlerFunc(serveKeys))
	adminapi.Handle("/llm/keys/", caddy.AdminHandlerFunc(serveKeys))
}

// keyView is a key as the admin API and the commands show it: never its
// secret, except once, in Key, in the answer that created it.
type keyView struct {
	Key string `json:"key,omitempty"`
	*StoredKey
	Status string `json:"status"`
}

func viewOf(k *StoredKey, now time.Time) keyView {
	return keyView{StoredKey: k, Status: k.Status(now)}
}

// serveKeys is the admin API of database keys:
//
//	POST   /llm/keys        create a key (body: KeyChange); 201 with the key, shown this once
//	GET    /llm/keys        list keys (?user=, ?team=)
//	GET    /llm/keys/<id>   one key
//	PATCH  /llm/keys/<id>   change a key (body: KeyChange)
//	DELETE /llm/keys/<id>   revoke a key
//
// It works on the store of the running config's database authenticator;
// with several stores, ?store=<name> picks one. Changes take effect on this
// instance at once, on others within their cache_ttl.
func serveKeys(w http.ResponseWriter, r *http.Request) error {
	s, err := adminStore(r.URL.Query().Get("store"))
	if err != nil {
		return err
	}
	id := strings.Trim(strings.TrimPrefix(r.URL.Path, "/llm/keys"), "/")
	ctx := r.Context()
	t, err := s.keys(ctx)
	if err != nil {
		return adminapi.Error(http.StatusServiceUnavailable, "the key store %s is unreachable: %v", s.name, err)
	}
	now := time.Now()
	switch {
	case r.Method == http.MethodGet && id == "":
		keys, err := t.List(ctx, keyFilter{User: r.URL.Query().Get("user"), Team: r.URL.Query().Get("team")})
		if err != nil {
			return keyError(err)
		}
		views := make([]keyView, len(keys))
		for i, k := range keys {
			views[i] = viewOf(k, now)
		}
		return adminapi.WriteJSON(w, http.StatusOK, views)
	case r.Method == http.MethodGet:
		k, err := t.Get(ctx, id)
		if err != nil {
			return keyError(err)
		}
		return adminapi.WriteJSON(w, http.StatusOK, viewOf(k, now))
	case r.Method == http.MethodPost && id == "":
		c, err := decodeChange(r)
		if err != nil {
			return err
		}
		k, key, err := t.Create(ctx, c)
		if err != nil {
			return keyError(err)
		}
		v := viewOf(k, now)
		v.Key = key
		return adminapi.WriteJSON(w, http.StatusCreated, v)
	case r.Method == http.MethodPatch && id != "":
		c, err := decodeChange(r)
		if err != nil {
			return err
		}
		k, err := s.update(ctx, id, c)
		if err != nil {
			return keyError(err)
		}
		return adminapi.WriteJSON(w, http.StatusOK, viewOf(k, now))
	case r.Method == http.MethodDelete && id != "":
		k, err := s.revoke(ctx, id)
		if err != nil {
			return keyError(err)
		}
		return adminapi.WriteJSON(w, http.StatusOK, viewOf(k, now))
	}
	w.Header().Set("Allow", "GET, POST, PATCH, DELETE")
	return adminapi.Error(http.StatusMethodNotAllowed, "%s %s is not a key operation: POST or GET /llm/keys, GET, PATCH or DELETE /llm/keys/<id>", r.Method, r.URL.Path)
}

// adminStore finds the store the admin API works on among those the running
// config uses.
func adminStore(name string) (*keyStore, error) {
	var all []*keyStore
	stores.Range(func(_, v any) bool {
		all = append(all, v.(*keyStore))
		return true
	})
	slices.SortFunc(all, func(a, b *keyStore) int { return strings.Compare(a.name, b.name) })
	names := make([]string, len(all))
	for i, s := range all {
		if s.name == name {
			return s, nil
		}
		names[i] = s.name
	}
	switch {
	case len(all) == 0:
		return nil, adminapi.Error(http.StatusNotFound, "the running config has no database authenticator, so there are no keys to manage here")
	case name != "":
		return nil, adminapi.Error(http.StatusNotFound, "no key store '%s'; the stores are: %s", name, strings.Join(names, ", "))
	case len(all) > 1:
		return nil, adminapi.Error(http.StatusBadRequest, "the running config has several key stores; name one with ?store=: %s", strings.Join(names, ", "))
	}
	return all[0], nil
}

func decodeChange(r *http.Request) (KeyChange, error) {
	var c KeyChange
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	// An empty body is a key with no settings: every model, no limit.
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, adminapi.Error(http.StatusBadRequest, "the body is not a key's settings in JSON: %v", err)
	}
	return c, nil
}

func keyError(err error) error {
	switch {
	case errors.Is(err, errNoKey):
		return adminapi.Error(http.StatusNotFound, "%v", err)
	case errors.Is(err, errBadChange):
		return adminapi.Error(http.StatusBadRequest, "%v", err)
	}
	return adminapi.Error(http.StatusServiceUnavailable, "%v", err)
}
