#!/usr/bin/env bash
# Measures what the gateway costs over bare Caddy: one Caddy process serves
# the same fake provider (cmd/mockllm) three ways, on three ports, and
# bench/load drives each in turn, interleaved round after round, so machine
# noise hits all three alike. bench/report then prints the medians as a
# Markdown table, with every figure also as a ratio to the baseline.
#
#   baseline       reverse_proxy to the provider (what Caddy costs anyway)
#   gateway        llm_auth + llm_route
#   gateway+stats  llm_stats { log } + llm_auth + llm_route, the log to a file
#
# Usage: bench/run.sh   (see bench/README.md)
#
# Environment: DURATION (per measurement, default 5s), CONCURRENCY (default
# 16), ROUNDS (default 2), SCENARIOS (default "chat stream embeddings"),
# RESULTS (a file to keep the raw JSON lines in), and the ports MOCK_PORT,
# PORT_A, PORT_B, PORT_C and ADMIN_PORT (19999, 19001-19003, 19020).
set -euo pipefail

DURATION=${DURATION:-5s}
CONCURRENCY=${CONCURRENCY:-16}
ROUNDS=${ROUNDS:-2}
SCENARIOS=${SCENARIOS:-chat stream embeddings}
MOCK_PORT=${MOCK_PORT:-19999}
PORT_A=${PORT_A:-19001}
PORT_B=${PORT_B:-19002}
PORT_C=${PORT_C:-19003}
ADMIN_PORT=${ADMIN_PORT:-19020}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/llmbench.XXXXXX")
pids=()

cleanup() {
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
# Turn a signal into an ordinary exit so that the EXIT trap cleans up.
trap 'exit 130' INT TERM

port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_port PORT PID LOG: wait until the process PID listens on PORT, and
# show its log if it dies or takes too long.
wait_port() {
	local port=$1 pid=$2 log=$3
	for _ in $(seq 200); do
		port_open "$port" && return 0
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "run.sh: the process for port $port exited:" >&2
			cat "$log" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "run.sh: nothing listens on port $port after 20s:" >&2
	cat "$log" >&2
	exit 1
}

# A port already taken would make the load hit something else: refuse.
for port in "$MOCK_PORT" "$PORT_A" "$PORT_B" "$PORT_C" "$ADMIN_PORT"; do
	if port_open "$port"; then
		echo "run.sh: 127.0.0.1:$port is in use; choose other ports (MOCK_PORT, PORT_A, PORT_B, PORT_C, ADMIN_PORT)" >&2
		exit 1
	fi
done

started=$(date -u '+%Y-%m-%d %H:%M UTC')
echo "run.sh: building into $work" >&2
(cd "$root" && go build -o "$work/" ./cmd/caddy ./cmd/mockllm ./bench/load ./bench/report)

# Without -key mockllm lets every key in: the baseline passes the client's
# key through, the gateway sends its own.
"$work/mockllm" -listen "127.0.0.1:$MOCK_PORT" >"$work/mockllm.log" 2>&1 &
pids+=($!)
wait_port "$MOCK_PORT" "${pids[-1]}" "$work/mockllm.log"

upstream="http://127.0.0.1:$MOCK_PORT/v1"
cat >"$work/Caddyfile" <<EOF
{
	# On localhost only, for /debug/pprof during a run.
	admin 127.0.0.1:$ADMIN_PORT
	persist_config off
	auto_https off
	log {
		level ERROR
	}
	log llm {
		output file $work/llm-stats.log
		include llm.stats.log
	}
}

(gateway) {
	llm_auth {
		static {
			key sk-bench
		}
	}
	llm_route {
		model bench {
			upstream openai $upstream sk-mock
		}
	}
}

# baseline
:$PORT_A {
	bind 127.0.0.1
	# No flush_interval -1: reverse_proxy already flushes text/event-stream
	# at once, like the gateway, and -1 would only add a write to every
	# unstreamed answer, handicapping the baseline.
	reverse_proxy 127.0.0.1:$MOCK_PORT
}

# gateway
:$PORT_B {
	bind 127.0.0.1
	import gateway
}

# gateway+stats
:$PORT_C {
	bind 127.0.0.1
	llm_stats {
		log
	}
	import gateway
}
EOF
"$work/caddy" run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
pids+=($!)
for port in "$PORT_A" "$PORT_B" "$PORT_C"; do
	wait_port "$port" "${pids[-1]}" "$work/caddy.log"
done

targets=("baseline:$PORT_A" "gateway:$PORT_B" "gateway+stats:$PORT_C")
read -ra scenarios <<<"$SCENARIOS"
count=$((ROUNDS * ${#scenarios[@]} * ${#targets[@]}))
echo "run.sh: $count measurements of $DURATION at concurrency $CONCURRENCY" >&2

for ((round = 0; round < ROUNDS; round++)); do
	for scenario in "${scenarios[@]}"; do
		# Each round starts with the next target, so none always follows
		# the same one (and inherits its garbage in the shared Caddy).
		for ((i = 0; i < ${#targets[@]}; i++)); do
			target=${targets[(i + round) % ${#targets[@]}]}
			"$work/load" -url "http://127.0.0.1:${target##*:}/v1" -name "${target%:*}" \
				-scenario "$scenario" -duration "$DURATION" -concurrency "$CONCURRENCY" |
				tee -a "$work/results.jsonl" >&2
			# A server that died would turn every later measurement into
			# errors: stop at once and show why.
			for pid in "${pids[@]}"; do
				if ! kill -0 "$pid" 2>/dev/null; then
					echo "run.sh: a server exited during the run:" >&2
					cat "$work/mockllm.log" "$work/caddy.log" >&2
					exit 1
				fi
			done
		done
	done
done

if [[ -n ${RESULTS:-} ]]; then
	cp "$work/results.jsonl" "$RESULTS"
fi
# A full recorder queue drops records rather than slow the response; say so
# when it happened, since the gateway+stats figures then understate the cost.
dropped=$(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" |
	awk '/^llmoneapi_stats_records_total\{.*result="dropped"/ { n += $NF } END { print n + 0 }')
echo "run.sh: llm_stats wrote $(wc -l <"$work/llm-stats.log") log lines, dropped $dropped records" >&2

echo "$started, $(nproc) cores, $(go version | cut -d' ' -f3-), DURATION=$DURATION CONCURRENCY=$CONCURRENCY ROUNDS=$ROUNDS"
echo
"$work/report" -baseline baseline "$work/results.jsonl"
