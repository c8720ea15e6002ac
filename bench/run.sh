#!/usr/bin/env bash
# Measures what the gateway costs over bare Caddy, in each deployment it is
# made for. One Caddy binary (built once per source tree and cached) runs as
# one process per deployment, all with the same GOMAXPROCS and GOGC, in front
# of the same fake provider (cmd/mockllm) on loopback:
#
#   bare        reverse_proxy to the provider (what Caddy costs anyway)
#   basic       llm_stats { log } to a file, one static key, an openai upstream
#   single      SQLite keys (database authenticator), memory rpm+tpm limits,
#               SQLite usage ledger, memory + prometheus sinks
#   fleet       PostgreSQL keys, Redis rpm+tpm limits, PostgreSQL ledger,
#               redis + prometheus sinks
#   translated  as basic, to an Anthropic-format upstream
#
# bench/load drives each in turn with the same load, a second at a time, and
# reads each process's CPU time and peak RSS from /proc. Then: the
# time to first byte with a 50 ms chunk delay upstream, the memory held by
# 1,000 slow streams, and the peak memory of a 50 MB streamed answer and of
# eight concurrent 50 MB unstreamed ones. bench/report prints the tables.
#
# Usage: bench/run.sh [--quick] [--json FILE]   (see bench/README.md)
set -euo pipefail

usage() {
	cat >&2 <<'EOF'
usage: bench/run.sh [--quick] [--json FILE] [--keep]
  --quick      a short run (about a minute) to check that everything works
  --json FILE  also write the tables as JSON to FILE
  --keep       keep the working directory (configs, logs, raw results)
Environment (see bench/README.md): DURATION SLICE ROUNDS CONCURRENCY SCENARIOS
DEPLOYMENTS STREAMS TTFB_DURATION PROVIDER_BUFFERED BENCH_GOMAXPROCS BENCH_GOGC BASE_PORT
PG_DSN REDIS_URL BENCH_CACHE RESULTS
EOF
	exit 2
}

QUICK=${QUICK:-}
JSON=${JSON:-}
KEEP=${KEEP:-}
while (($#)); do
	case $1 in
	--quick) QUICK=1 ;;
	--json)
		(($# >= 2)) || usage
		JSON=$2
		shift
		;;
	--keep) KEEP=1 ;;
	*) usage ;;
	esac
	shift
done

if [[ -n $QUICK ]]; then
	DURATION=${DURATION:-2s}
	ROUNDS=${ROUNDS:-1}
	STREAMS=${STREAMS:-200}
	TTFB_DURATION=${TTFB_DURATION:-2s}
fi
DURATION=${DURATION:-8s}
SLICE=${SLICE:-1s}
ROUNDS=${ROUNDS:-3}
CONCURRENCY=${CONCURRENCY:-50}
SCENARIOS=${SCENARIOS:-chat stream}
DEPLOYMENTS=${DEPLOYMENTS:-bare basic single fleet translated}
STREAMS=${STREAMS:-1000}
TTFB_DURATION=${TTFB_DURATION:-6s}
PROVIDER_BUFFERED=${PROVIDER_BUFFERED:-1}
BENCH_GOMAXPROCS=${BENCH_GOMAXPROCS:-$(nproc)}
BENCH_GOGC=${BENCH_GOGC:-100}
BASE_PORT=${BASE_PORT:-19100}
PG_DSN=${PG_DSN:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
BENCH_CACHE=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmoneapi-bench}

read -ra deployments <<<"$DEPLOYMENTS"
read -ra scenarios <<<"$SCENARIOS"
if [[ ${deployments[0]} != bare ]]; then
	echo "run.sh: DEPLOYMENTS must start with bare, the baseline" >&2
	exit 2
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/llmbench.XXXXXX")
results=$work/results.jsonl
: >"$results"
# Names of this run's PostgreSQL schema and Redis keys, so that two runs on
# one machine, or the project's tests, never see each other's data.
tag=llmbench_$$
schema=$tag
redis_prefix="$tag:"
pg_bench_dsn="$PG_DSN$([[ $PG_DSN == *\?* ]] && echo '&' || echo '?')search_path=$schema"

needs() {
	for d in "${deployments[@]}"; do
		[[ $d == "$1" ]] && return 0
	done
	return 1
}

for tool in go curl sqlite3 psql redis-cli; do
	case $tool in
	sqlite3) needs single || continue ;;
	psql | redis-cli) needs fleet || continue ;;
	esac
	if ! command -v "$tool" >/dev/null; then
		echo "run.sh: $tool is needed and not installed" >&2
		exit 1
	fi
done

declare -A pid_of=()
pids=()

clean_stores() {
	if needs fleet; then
		psql -q "$PG_DSN" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
		redis-cli -u "$REDIS_URL" --scan --pattern "$redis_prefix*" 2>/dev/null |
			xargs -r -n 500 redis-cli -u "$REDIS_URL" DEL >/dev/null 2>&1 || true
	fi
}

cleanup() {
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	clean_stores
	if [[ -n $KEEP ]]; then
		echo "run.sh: kept $work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
# Turn a signal into an ordinary exit so that the EXIT trap cleans up.
trap 'exit 130' INT TERM

log() { echo "run.sh: $*" >&2; }

port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_port PORT PID LOG: wait until the process PID listens on PORT, and
# show its log if it dies or takes too long.
wait_port() {
	local port=$1 pid=$2 logfile=$3
	for _ in $(seq 300); do
		port_open "$port" && return 0
		if ! kill -0 "$pid" 2>/dev/null; then
			log "the process for port $port exited:"
			cat "$logfile" >&2
			exit 1
		fi
		sleep 0.1
	done
	log "nothing listens on port $port after 30s:"
	cat "$logfile" >&2
	exit 1
}

# Ports: the providers from BASE_PORT, deployment i's site on
# BASE_PORT+10+2i, its slow-provider site on the next, its admin endpoint on
# BASE_PORT+40+i.
mock_fast=$BASE_PORT      # replies of 20 chunks at once
mock_delay=$((BASE_PORT + 1)) # 20 chunks, 50 ms apart
mock_slow=$((BASE_PORT + 2))  # a chunk every 100 ms, for far longer than a test
mock_big=$((BASE_PORT + 3))   # 4,000,000 chunks: about 50 MB unstreamed
index_of() {
	local i
	for i in "${!deployments[@]}"; do
		[[ ${deployments[i]} == "$1" ]] && echo "$i" && return
	done
}
site_port() { echo $((BASE_PORT + 10 + 2 * $(index_of "$1"))); }
ttfb_port() { echo $((BASE_PORT + 11 + 2 * $(index_of "$1"))); }
admin_port() { echo $((BASE_PORT + 40 + $(index_of "$1"))); }

for port in $mock_fast $mock_delay $mock_slow $mock_big; do
	if port_open "$port"; then
		log "127.0.0.1:$port is in use; choose another BASE_PORT"
		exit 1
	fi
done
for d in "${deployments[@]}"; do
	for port in $(site_port "$d") $(ttfb_port "$d") $(admin_port "$d"); do
		if port_open "$port"; then
			log "127.0.0.1:$port is in use; choose another BASE_PORT"
			exit 1
		fi
	done
done

started=$(date -u '+%Y-%m-%d %H:%M UTC')

# One build per source tree: the cache key hashes every Go file and go.mod
# and go.sum as they are on disk, committed or not, so a run after an edit
# measures the edit and a change to the docs rebuilds nothing.
tree=$(cd "$root" && {
	go version
	if git rev-parse --git-dir >/dev/null 2>&1; then
		git ls-files -co --exclude-standard -- '*.go' go.mod go.sum | LC_ALL=C sort
	else
		find . -name '*.go' -o -name go.mod -o -name go.sum | LC_ALL=C sort
	fi | while IFS= read -r f; do
		[[ -f $f ]] && printf '%s\n' "$f" && cat "$f"
	done
} | sha256sum | cut -c1-16)
bin=$BENCH_CACHE/$tree
if [[ -x $bin/caddy && -x $bin/mockllm && -x $bin/load && -x $bin/report ]]; then
	log "using the build cached in $bin"
else
	log "building into $bin"
	mkdir -p "$BENCH_CACHE"
	rm -rf "$bin.tmp"
	(cd "$root" && go build -o "$bin.tmp/" ./cmd/caddy ./cmd/mockllm ./bench/load ./bench/report)
	# Keep only this build: old ones are of no use and 100 MB each.
	find "$BENCH_CACHE" -mindepth 1 -maxdepth 1 ! -name "$tree.tmp" -exec rm -rf {} +
	mv "$bin.tmp" "$bin"
fi

# start_mock PORT FLAGS...: a fake provider. Without -key it lets every key
# in: the bare proxy passes the client's key through, the gateway sends its
# own.
start_mock() {
	local port=$1
	shift
	"$bin/mockllm" -listen "127.0.0.1:$port" "$@" >"$work/mockllm-$port.log" 2>&1 &
	pids+=($!)
	wait_port "$port" "$!" "$work/mockllm-$port.log"
}
# The fast provider sends a stream's events in as few writes as it can
# (-buffered): flushing each, it spent more CPU on its own write calls than
# either proxy, on the same cores (bench/README.md).
fast_flags=(-chunks 20)
[[ $PROVIDER_BUFFERED == 0 ]] || fast_flags+=(-buffered)
start_mock "$mock_fast" "${fast_flags[@]}"
start_mock "$mock_delay" -chunks 20 -chunk-delay 50ms
start_mock "$mock_slow" -chunks 100000 -chunk-delay 100ms
start_mock "$mock_big" -chunks 4000000

# The stores, and the keys of the deployments that keep them in a database.
declare -A key_of=()
clean_stores
if needs single; then
	key_of[single]=$("$bin/caddy" llm key create --db "sqlite:$work/single-keys.db" --user bench \
		--rpm 1000000000 --tpm 1000000000000 2>>"$work/keys.log")
fi
if needs fleet; then
	psql -q "$PG_DSN" -c "CREATE SCHEMA $schema" >/dev/null
	key_of[fleet]=$("$bin/caddy" llm key create --db "$pg_bench_dsn" --user bench \
		--rpm 1000000000 --tpm 1000000000000 2>>"$work/keys.log")
fi

# chain NAME UPSTREAM_PORT: the handlers of deployment NAME's site. Limits
# are set far above what a run can reach: they are checked and charged on
# every request, never refuse one.
chain() {
	local name=$1 port=$2
	local route="llm_route {
		model bench {
			upstream openai http://127.0.0.1:$port/v1 sk-mock
		}
	}"
	case $name in
	bare)
		echo "reverse_proxy 127.0.0.1:$port"
		;;
	basic)
		echo "llm_stats {
		log
	}
	llm_auth {
		static {
			key sk-bench
		}
	}
	$route"
		;;
	single)
		echo "llm_stats {
		database sqlite $work/single-usage.db
		memory
		prometheus
	}
	llm_auth {
		database sqlite $work/single-keys.db
		limits memory
	}
	$route"
		;;
	fleet)
		echo "llm_stats {
		database postgres \"$pg_bench_dsn\"
		redis $REDIS_URL {
			prefix ${redis_prefix}stats
		}
		prometheus
	}
	llm_auth {
		database postgres \"$pg_bench_dsn\"
		limits redis $REDIS_URL {
			prefix ${redis_prefix}limits
		}
	}
	$route"
		;;
	translated)
		echo "llm_stats {
		log
	}
	llm_auth {
		static {
			key sk-bench
		}
	}
	llm_route {
		model bench {
			upstream anthropic http://127.0.0.1:$port sk-mock
		}
	}"
		;;
	*)
		log "unknown deployment $name"
		exit 2
		;;
	esac
}

# start_caddy NAME UPSTREAM_PORT [TTFB_UPSTREAM_PORT]: deployment NAME in a
# process of its own, its site in front of UPSTREAM_PORT (and a second site
# in front of TTFB_UPSTREAM_PORT); sets pid_of[NAME].
start_caddy() {
	local name=$1 up=$2 ttfb_up=${3:-}
	local conf=$work/$name.Caddyfile
	{
		cat <<EOF
{
	# On localhost only: /metrics and /debug/pprof during a run.
	admin 127.0.0.1:$(admin_port "$name")
	persist_config off
	auto_https off
	log {
		level ERROR
	}
	# Rolled files are left uncompressed: Caddy would otherwise gzip each
	# rolled 100 MiB in this process, a cost of its file logger, not of
	# the gateway (README "Benchmarks").
	log llm {
		output file $work/$name-llm.log {
			roll_uncompressed
		}
		include llm.stats.log
	}
}

:$(site_port "$name") {
	bind 127.0.0.1
	$(chain "$name" "$up")
}
EOF
		if [[ -n $ttfb_up ]]; then
			cat <<EOF

:$(ttfb_port "$name") {
	bind 127.0.0.1
	$(chain "$name" "$ttfb_up")
}
EOF
		fi
	} >"$conf"
	mkdir -p "$work/data" "$work/config"
	GOMAXPROCS=$BENCH_GOMAXPROCS GOGC=$BENCH_GOGC XDG_DATA_HOME=$work/data XDG_CONFIG_HOME=$work/config \
		"$bin/caddy" run --config "$conf" --adapter caddyfile >>"$work/$name.log" 2>&1 &
	local pid=$!
	pids+=("$pid")
	pid_of[$name]=$pid
	wait_port "$(site_port "$name")" "$pid" "$work/$name.log"
	[[ -z $ttfb_up ]] || wait_port "$(ttfb_port "$name")" "$pid" "$work/$name.log"
}

stop_caddy() {
	local pid=${pid_of[$1]}
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	unset "pid_of[$1]"
}

# A server that died would turn every later measurement into errors: stop
# at once and show why.
check_alive() {
	for pid in "${pid_of[@]}"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			log "a server exited during the run:"
			tail -n 50 "$work"/*.log >&2
			exit 1
		fi
	done
}

# load NAME PORT ARGS...: one measurement of deployment NAME.
load() {
	local name=$1 port=$2
	shift 2
	"$bin/load" -url "http://127.0.0.1:$port/v1" -name "$name" -key "${key_of[$name]:-sk-bench}" \
		-pid "${pid_of[$name]}" "$@" | tee -a "$results" >&2
	check_alive
}

for d in "${deployments[@]}"; do
	start_caddy "$d" "$mock_fast" "$mock_delay"
done

count=$((ROUNDS * ${#scenarios[@]}))
log "$count rounds of $DURATION per deployment in slices of $SLICE, at concurrency $CONCURRENCY, GOMAXPROCS=$BENCH_GOMAXPROCS GOGC=$BENCH_GOGC"
for ((round = 0; round < ROUNDS; round++)); do
	for scenario in "${scenarios[@]}"; do
		# One bench/load drives every deployment in turn, a slice at a
		# time, so that each sees the machine as the others do (see
		# bench/README.md); each round starts with the next deployment.
		targets=()
		for ((i = 0; i < ${#deployments[@]}; i++)); do
			d=${deployments[(i + round) % ${#deployments[@]}]}
			targets+=(-target "name=$d,url=http://127.0.0.1:$(site_port "$d")/v1,key=${key_of[$d]:-sk-bench},pid=${pid_of[$d]}")
		done
		"$bin/load" "${targets[@]}" -test load -round "$round" -scenario "$scenario" \
			-duration "$DURATION" -slice "$SLICE" -concurrency "$CONCURRENCY" | tee -a "$results" >&2
		check_alive
	done
done

# The streams of this test last a second (20 chunks 50 ms apart): started
# together they would stay in step, and each measurement would be four
# bursts of 50 requests at once, timing the queue in the burst rather than
# what the gateway adds. Their starts are spread over that second.
log "time to first byte, 50 ms between chunks upstream"
for d in "${deployments[@]}"; do
	load "$d" "$(ttfb_port "$d")" -test ttfb -scenario stream -duration "$TTFB_DURATION" \
		-warmup 100ms -concurrency "$CONCURRENCY" -stagger 1s
done

# ledger_rows NAME: the rows in deployment NAME's usage ledger, once no
# more arrive (they are written in batches every 500 ms).
ledger_rows() {
	local n prev=-1
	for _ in $(seq 30); do
		case $1 in
		single) n=$(sqlite3 "$work/single-usage.db" 'SELECT COUNT(*) FROM llm_usage') ;;
		fleet) n=$(psql -tAq "$PG_DSN" -c "SELECT COUNT(*) FROM $schema.llm_usage") ;;
		esac
		[[ $n == "$prev" ]] && break
		prev=$n
		sleep 1
	done
	echo "$n"
}
for d in single fleet; do
	needs "$d" || continue
	echo "{\"name\":\"$d\",\"mode\":\"ledger\",\"rows\":$(ledger_rows "$d")}" | tee -a "$results" >&2
done

# A full recorder queue drops records rather than slow the response: the
# figures then understate the recorders' cost, so say so.
for d in "${deployments[@]}"; do
	dropped=$(curl -fsS "http://127.0.0.1:$(admin_port "$d")/metrics" |
		awk '/^llmoneapi_stats_records_total\{.*result="dropped"/ { n += $NF } END { print n + 0 }')
	if [[ $dropped != 0 ]]; then
		log "$d: llm_stats dropped $dropped records"
	fi
	stop_caddy "$d"
done

# Memory, each test in a new process, so that no earlier load's heap hides
# or inflates what it costs.
for d in bare basic; do
	needs "$d" || continue
	log "$d: $STREAMS slow streams held open"
	start_caddy "$d" "$mock_slow"
	load "$d" "$(site_port "$d")" -test memory -scenario slow -hold -concurrency "$STREAMS" -timeout 10m
	stop_caddy "$d"

	log "$d: one streamed answer of about 50 MB"
	start_caddy "$d" "$mock_big"
	load "$d" "$(site_port "$d")" -test big -scenario big-stream -requests 1 -concurrency 1 \
		-warmup 0 -duration 5m -timeout 5m
	stop_caddy "$d"

	log "$d: eight unstreamed answers of about 50 MB at once"
	start_caddy "$d" "$mock_big"
	load "$d" "$(site_port "$d")" -test big -scenario big -requests 8 -concurrency 8 \
		-warmup 0 -duration 5m -timeout 5m
	stop_caddy "$d"
done

if [[ -n ${RESULTS:-} ]]; then
	cp "$results" "$RESULTS"
fi
echo "$started, $(nproc) cores, $(go version | cut -d' ' -f3-), DURATION=$DURATION ROUNDS=$ROUNDS CONCURRENCY=$CONCURRENCY GOMAXPROCS=$BENCH_GOMAXPROCS GOGC=$BENCH_GOGC PROVIDER_BUFFERED=$PROVIDER_BUFFERED, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$bin/report" -baseline bare ${JSON:+-json "$JSON"} "$results"
