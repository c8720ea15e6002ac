#!/usr/bin/env bash
# Coding agents end to end, run by .ci/run: the real Claude Code and Codex
# CLI, pinned, each driven through the gateway to an OpenAI-style, an
# Anthropic and a Gemini upstream, and an OpenAI-compatible one that speaks
# chat completions only (all the fake provider, cmd/mockllm -agent, which
# scripts one shell tool call and then an answer quoting its output).
# For every pair it checks that the agent's final answer quotes the marker,
# that the command really ran (the file it writes holds the marker, and the
# command's output reached the provider in the next request), and that the
# gateway wrote one usage record per call with the agent's API.
#
# Usage: examples/agents.sh <caddy binary built from this checkout>
#
#   AGENTS=claude,codex                    the agents to run
#   AGENT_UPSTREAMS=openai,anthropic,gemini,chat
#                                          the upstream kinds to run them against
#   AGENTS_CACHE=~/.cache/llmoneapi-agents  where the npm packages are kept
#   AGENTS_KEEP=1                           keep the run's directory (printed)
#
# Needs go, node/npm (the first run installs the agents with
# `npm install --ignore-scripts`), curl and jq. Offline: nothing but the
# first install leaves 127.0.0.1.
set -euo pipefail
caddy=$(realpath "${1:?usage: examples/agents.sh <caddy binary>}")
cd "$(dirname "$0")/.."

CLAUDE_CODE_VERSION=2.1.332
CODEX_VERSION=0.171.0
agents=${AGENTS:-claude,codex}
upstreams=${AGENT_UPSTREAMS:-openai,anthropic,gemini,chat}
cache=${AGENTS_CACHE:-$HOME/.cache/llmoneapi-agents}

case "$(uname -m)" in
x86_64) npm_arch=x64 ;;
aarch64 | arm64) npm_arch=arm64 ;;
*) echo "agents.sh: no agent packages for $(uname -m)"; exit 1 ;;
esac

# The platform packages ship the agents' native binaries; the wrappers
# around them are node scripts (Claude Code's wants node 22) that are not
# needed to run them.
installed() { jq -r .version "$cache/node_modules/$1/package.json" 2>/dev/null || true; }
if [ "$(installed @anthropic-ai/claude-code-linux-$npm_arch)" != "$CLAUDE_CODE_VERSION" ] ||
	[ "$(installed @openai/codex)" != "$CODEX_VERSION" ]; then
	echo "-- installing @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION and @openai/codex@$CODEX_VERSION into $cache"
	mkdir -p "$cache"
	npm install --prefix "$cache" --ignore-scripts --no-audit --no-fund --loglevel=error \
		"@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" "@openai/codex@$CODEX_VERSION"
fi
claude=$cache/node_modules/@anthropic-ai/claude-code-linux-$npm_arch/claude
codex=$(find "$cache/node_modules/@openai/codex-linux-$npm_arch/vendor" -path '*/bin/codex' -type f | head -n 1)
[ -x "$claude" ] && [ -x "$codex" ] || { echo "agents.sh: the agents' binaries are missing under $cache"; exit 1; }
echo "-- $("$claude" --version), $("$codex" --version)"

tmp=$(mktemp -d)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	if [ -n "${AGENTS_KEEP:-}" ]; then echo "-- kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

freeport() {
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}
export AGENTS_DIR=$tmp GATEWAY_PORT=$(freeport) MOCK_PORT=$(freeport) CHAT_MOCK_PORT=$(freeport)
while [ "$MOCK_PORT" = "$GATEWAY_PORT" ]; do MOCK_PORT=$(freeport); done
while [ "$CHAT_MOCK_PORT" = "$GATEWAY_PORT" ] || [ "$CHAT_MOCK_PORT" = "$MOCK_PORT" ]; do CHAT_MOCK_PORT=$(freeport); done
export AGENTS_KEY=sk-agents-ci-$RANDOM$RANDOM UPSTREAM_KEY=sk-agents-upstream-$RANDOM$RANDOM
# A marker of this run only, so no leftover file or log can pass for it.
marker=run-$$-$RANDOM
want=$(tr a-z A-Z <<<"$marker")
file=fakellm-agent.txt

go build -o "$tmp/mockllm" ./cmd/mockllm
# Both fake providers log to one file: the runs do not overlap.
"$tmp/mockllm" -listen "127.0.0.1:$MOCK_PORT" -key "$UPSTREAM_KEY" -agent -agent-marker "$marker" -agent-file "$file" \
	-requests "$tmp/upstream.jsonl" >"$tmp/mockllm.log" 2>&1 &
pids+=($!)
"$tmp/mockllm" -listen "127.0.0.1:$CHAT_MOCK_PORT" -key "$UPSTREAM_KEY" -agent -agent-marker "$marker" -agent-file "$file" \
	-no-responses -requests "$tmp/upstream.jsonl" >>"$tmp/mockllm.log" 2>&1 &
pids+=($!)
touch "$tmp/upstream.jsonl" "$tmp/llm.log"
# up <url> <key> waits for a server to answer GET <url> with the key.
up() {
	for _ in $(seq 1 100); do
		curl -sf -o /dev/null "$1" -H "Authorization: Bearer $2" && return
		sleep 0.1
	done
	curl -sf -o /dev/null "$1" -H "Authorization: Bearer $2"
}
for p in "$MOCK_PORT" "$CHAT_MOCK_PORT"; do
	up "http://127.0.0.1:$p/v1/models" "$UPSTREAM_KEY" ||
		{ echo "FAIL: the fake provider on port $p did not come up"; cat "$tmp/mockllm.log"; exit 1; }
done
# The provider's readiness probe is no request of an agent.
: >"$tmp/upstream.jsonl"
HOME="$tmp" XDG_DATA_HOME="$tmp" XDG_CONFIG_HOME="$tmp" "$caddy" run --config examples/agents/Caddyfile \
	>"$tmp/caddy.log" 2>&1 &
pids+=($!)
up "http://127.0.0.1:$GATEWAY_PORT/v1/models" "$AGENTS_KEY" ||
	{ echo "FAIL: the gateway did not come up"; tail -n 30 "$tmp/caddy.log"; exit 1; }
echo "-- gateway on 127.0.0.1:$GATEWAY_PORT, fake provider on 127.0.0.1:$MOCK_PORT, marker $marker"

# Keys, endpoints and telemetry of the machine's own agent setup must not
# leak into the runs.
clean_env=(env -u ANTHROPIC_AUTH_TOKEN -u ANTHROPIC_API_KEY -u ANTHROPIC_BASE_URL -u ANTHROPIC_MODEL
	-u OPENAI_API_KEY -u OPENAI_BASE_URL -u CODEX_HOME -u CLAUDE_CONFIG_DIR)

run_claude() { # <model> <home> <work> <out>
	(cd "$3" && "${clean_env[@]}" HOME="$2" XDG_CONFIG_HOME="$2/.config" \
		ANTHROPIC_BASE_URL="http://127.0.0.1:$GATEWAY_PORT" ANTHROPIC_API_KEY="$AGENTS_KEY" \
		ANTHROPIC_DEFAULT_HAIKU_MODEL="$1" ANTHROPIC_SMALL_FAST_MODEL="$1" \
		CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1 DISABLE_TELEMETRY=1 \
		DISABLE_ERROR_REPORTING=1 \
		timeout 60 "$claude" -p "Write the marker file with your Bash tool, then say what it printed." \
		--model "$1" --output-format json --allowedTools Bash --no-session-persistence \
		</dev/null >"$4" 2>"$4.err")
}

run_codex() { # <model> <home> <work> <out>
	mkdir -p "$2/codex"
	cat >"$2/codex/config.toml" <<TOML
model = "$1"
model_provider = "gateway"
approval_policy = "never"
sandbox_mode = "danger-full-access"
check_for_update_on_startup = false

[model_providers.gateway]
name = "llmoneapi gateway"
base_url = "http://127.0.0.1:$GATEWAY_PORT/v1"
env_key = "LLMONEAPI_KEY"
wire_api = "responses"

[analytics]
enabled = false
TOML
	(cd "$3" && "${clean_env[@]}" HOME="$2" CODEX_HOME="$2/codex" LLMONEAPI_KEY="$AGENTS_KEY" \
		timeout 60 "$codex" exec --skip-git-repo-check --ephemeral -o "$4.last" \
		"Write the marker file with your shell tool, then say what it printed." \
		</dev/null >"$4" 2>"$4.err")
}

failures=()
IFS=, read -ra agent_list <<<"$agents"
IFS=, read -ra upstream_list <<<"$upstreams"
for agent in "${agent_list[@]}"; do
	case "$agent" in
	claude) api=anthropic.messages ;;
	codex) api=openai.responses ;;
	*) echo "agents.sh: unknown agent $agent"; exit 1 ;;
	esac
	for up in "${upstream_list[@]}"; do
		model=agent-$up
		name="$agent -> $model"
		home=$tmp/$agent-$up/home work=$tmp/$agent-$up/work out=$tmp/$agent-$up/out
		mkdir -p "$home" "$work"
		seen_before=$(wc -l <"$tmp/upstream.jsonl")
		records_before=$(wc -l <"$tmp/llm.log")
		started=$(date +%s)
		status=0
		"run_$agent" "$model" "$home" "$work" "$out" || status=$?
		took=$(($(date +%s) - started))

		problems=()
		[ "$status" = 0 ] || problems+=("the agent exited with status $status")
		case "$agent" in
		claude) answer=$(jq -r 'select(.type == "result") | .result' "$out" 2>/dev/null || true) ;;
		codex) answer=$(cat "$out.last" 2>/dev/null || true) ;;
		esac
		grep -qF "The command printed $want." <<<"$answer" ||
			problems+=("its final answer does not quote the marker: ${answer:-(none)}")
		[ "$(cat "$work/$file" 2>/dev/null)" = "$want" ] ||
			problems+=("the tool did not run: $work/$file holds '$(cat "$work/$file" 2>/dev/null || echo '(no file)')'")

		# What reached the fake provider during this run, and what the
		# gateway recorded. Recorders write after the response: wait a little.
		# A refused try the gateway answers itself (a chat-only upstream's 404
		# on /responses, then chat completions) is part of one call.
		tail -n +"$((seen_before + 1))" "$tmp/upstream.jsonl" >"$out.upstream"
		calls=$(jq -s 'map(select(.status < 400)) | length' "$out.upstream")
		for _ in $(seq 1 50); do
			[ "$(($(wc -l <"$tmp/llm.log") - records_before))" -ge "$calls" ] && break
			sleep 0.1
		done
		tail -n +"$((records_before + 1))" "$tmp/llm.log" >"$out.records"
		records=$(wc -l <"$out.records")
		grep -qF "$want" "$out.upstream" ||
			problems+=("no request to the provider carried the command's output")
		[ "$calls" -ge 2 ] || problems+=("the provider answered $calls requests, want the tool call's and the answer's")
		[ "$records" = "$calls" ] || problems+=("$records usage records for $calls answered upstream calls")
		bad=$(jq -c --arg api "$api" --arg model "$model" \
			'select(.api != $api or .model != $model or .status != 200 or (.total_tokens // 0) <= 0)
			| {api, model, status, total_tokens, error, error_code}' "$out.records" 2>&1 | head -n 3 | paste -sd ' ' || true)
		[ -z "$bad" ] || problems+=("records that are not $api 200 calls of $model with usage: $bad")

		if [ ${#problems[@]} = 0 ]; then
			tokens=$(jq -s 'map(.total_tokens) | add' "$out.records")
			refused=$(jq -s 'map(select(.status >= 400)) | length' "$out.upstream")
			echo "ok   $name: ${took}s, answer \"$answer\", $calls calls ($refused refused), $records records ($api, $tokens tokens)"
			continue
		fi
		failures+=("$name")
		echo "FAIL $name (${took}s):"
		printf '       - %s\n' "${problems[@]}"
		echo "     --- agent output (last 40 lines of stderr, then stdout)"
		tail -n 40 "$out.err" | sed 's/^/     | /'
		tail -n 40 "$out" | sed 's/^/     | /'
		echo "     --- what the provider saw (method, path, model, status)"
		jq -r '"\(.method) \(.path) \(.model) \(.status)"' "$out.upstream" | sed 's/^/     | /'
		echo "     --- records"; jq -c '{api, model, status, error, error_code, total_tokens}' "$out.records" 2>/dev/null | sed 's/^/     | /'
		echo "     --- caddy log (last 15 lines)"; tail -n 15 "$tmp/caddy.log" | sed 's/^/     | /'
		echo "     --- mockllm log (last 5 lines)"; tail -n 5 "$tmp/mockllm.log" | sed 's/^/     | /'
	done
done

total=$((${#agent_list[@]} * ${#upstream_list[@]}))
echo "agents: $((total - ${#failures[@]})) passed, ${#failures[@]} failed"
[ ${#failures[@]} = 0 ]
