#!/usr/bin/env bash
# CI for the example plugins, run by .ci/run: each example module's own
# checks and tests (they are modules of their own, which the root's
# `go test ./...` does not reach), then an end-to-end run of a Caddy built
# with them (by xcaddy, as a user would) in front of the fake provider: a key
# from an SQLite api_keys table works and the Redis counters move.
#
# Usage: examples/ci.sh <caddy binary built with both examples>
# Needs go, sqlite3, redis-cli, curl and the Redis at 127.0.0.1:6379.
set -euo pipefail
caddy=$(realpath "${1:?usage: examples/ci.sh <caddy binary>}")
cd "$(dirname "$0")/.."
export PATH="$PATH:$(go env GOPATH)/bin"

for m in sqlitekeys redisstats; do
	echo "-- examples/$m: go vet, staticcheck, go test -race"
	(cd "examples/$m" && go vet ./... && staticcheck ./... && go test -race ./...)
done

echo "-- end to end with $caddy"
tmp=$(mktemp -d)
prefix="ci:examples:$$:$(date +%s):"
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	redis-cli -h 127.0.0.1 --scan --pattern "$prefix*" | xargs -r redis-cli -h 127.0.0.1 del >/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

# A port nothing listens on now.
freeport() {
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}
mock_port=$(freeport)
port=$(freeport)

# The Python gateway's table, as a migrating team has it.
sqlite3 "$tmp/auth.db" "CREATE TABLE api_keys (key TEXT PRIMARY KEY, user_id TEXT, active BOOLEAN);
	INSERT INTO api_keys VALUES ('sk-ci-alice', 'alice', 1), ('sk-ci-gone', 'mallory', 0);"

go build -o "$tmp/mockllm" ./cmd/mockllm
"$tmp/mockllm" -listen "127.0.0.1:$mock_port" -key sk-ci-upstream >"$tmp/mockllm.log" 2>&1 &
pids+=($!)

cat >"$tmp/Caddyfile" <<CADDYFILE
{
	admin off
	auto_https off
	persist_config off
	storage file_system $tmp/data
}
http://127.0.0.1:$port {
	bind 127.0.0.1
	llm_stats {
		redisstats redis://127.0.0.1:6379/0 $prefix
	}
	llm_auth {
		sqlitekeys $tmp/auth.db
	}
	llm_route {
		model gpt-4o-mini {
			upstream openai http://127.0.0.1:$mock_port/v1 sk-ci-upstream
		}
	}
}
CADDYFILE
HOME="$tmp" XDG_DATA_HOME="$tmp" XDG_CONFIG_HOME="$tmp" "$caddy" run --config "$tmp/Caddyfile" >"$tmp/caddy.log" 2>&1 &
pids+=($!)

fail() {
	echo "FAIL: $*"
	echo "--- caddy log"; tail -n 30 "$tmp/caddy.log"
	echo "--- mockllm log"; tail -n 10 "$tmp/mockllm.log"
	exit 1
}

# chat <key> prints the HTTP status of one chat completion with that key.
chat() {
	curl -s -o "$tmp/body" -w '%{http_code}' "http://127.0.0.1:$port/v1/chat/completions" \
		-H "Authorization: Bearer $1" \
		-d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}' || true
}

for _ in $(seq 1 100); do
	[ "$(chat sk-ci-alice)" = 200 ] && break
	sleep 0.1
done
[ "$(chat sk-ci-alice)" = 200 ] || fail "a key from the api_keys table: $(cat "$tmp/body")"
echo "a key from the SQLite table works: $(head -c 120 "$tmp/body")..."
[ "$(chat sk-ci-gone)" = 401 ] && grep -q api_key_disabled "$tmp/body" || fail "an inactive key: $(cat "$tmp/body")"
[ "$(chat sk-ci-nobody)" = 401 ] && grep -q invalid_api_key "$tmp/body" || fail "an unknown key: $(cat "$tmp/body")"
echo "an inactive key gets 401 api_key_disabled, an unknown one 401 invalid_api_key"

# Two or more calls went through (the readiness loop's and one more);
# recorders write after the response, so wait for the count to show them.
key="${prefix}gpt-4o-mini:alice"
for _ in $(seq 1 50); do
	requests=$(redis-cli -h 127.0.0.1 hget "$key" total_requests)
	tokens=$(redis-cli -h 127.0.0.1 hget "$key" total_tokens)
	[ "${requests:-0}" -ge 2 ] && [ "${tokens:-0}" -gt 0 ] && break
	sleep 0.1
done
[ "${requests:-0}" -ge 2 ] && [ "${tokens:-0}" -gt 0 ] || fail "Redis $key: total_requests=$requests total_tokens=$tokens"
echo "Redis $key: total_requests=$requests total_tokens=$tokens"
