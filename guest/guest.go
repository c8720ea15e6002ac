// Package guest helps write guest modules, the Caddy modules that the
// llm_auth, llm_route and llm_stats handlers host (authenticators, limit
// stores, catalogs, providers, policies, recorders). It holds what the
// hosts do for their guests so that a guest need not: reading its
// Caddyfile tokens into its config fields (UnmarshalCaddyfile, which the
// hosts call for a guest without an UnmarshalCaddyfile method of its own),
// a Redis server config field that manages the server's client (Redis),
// and an SQL database config field that manages its pool (SQL).
package guest
