#!/usr/bin/env bash
# Runs every Go benchmark of the module (-benchmem) and prints one compact
# Markdown table: package, benchmark, ns/op, B/op, allocs/op and the other
# metrics a benchmark reports (MB/s, ns/event). The benchmarks that need
# them use Redis and PostgreSQL on 127.0.0.1, as the tests do.
#
# Usage: bench/gobench.sh [regexp]   (default: every benchmark)
#
# Environment: BENCHTIME (go test -benchtime, default 1s), COUNT (runs of
# each, default 1), RAW (a file to keep go test's own output in, e.g. for
# benchstat).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
pattern=${1:-.}
# Only the packages that have benchmarks, so that no other test binary is
# built; examples/ are modules of their own.
mapfile -t pkgs < <(grep -rl --include='*_test.go' '^func Benchmark' . | grep -v '^./examples/' |
	xargs -n1 dirname | sort -u)
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
echo "gobench.sh: ${#pkgs[@]} packages, -benchtime ${BENCHTIME:-1s} -count ${COUNT:-1}" >&2
status=0
go test -run '^$' -bench "$pattern" -benchmem -benchtime "${BENCHTIME:-1s}" -count "${COUNT:-1}" "${pkgs[@]}" >"$raw" 2>&1 || status=$?
if [[ -n ${RAW:-} ]]; then
	cp "$raw" "$RAW"
fi

echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(go version | cut -d' ' -f3-), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| Package | Benchmark | ns/op | B/op | allocs/op | other |"
echo "|---|---|--:|--:|--:|---|"
awk '
/^pkg: / { pkg = $2; sub(/^github.com\/llmoneapi\/llmoneapi\/?/, "", pkg); if (pkg == "") pkg = "."; next }
/^Benchmark/ && NF >= 4 {
	name = $1; sub(/^Benchmark/, "", name); sub(/-[0-9]+$/, "", name)
	ns = bytes = allocs = ""; other = ""
	for (i = 3; i < NF; i += 2) {
		v = $i; u = $(i + 1)
		if (u == "ns/op") ns = sprintf("%.0f", v)
		else if (u == "B/op") bytes = v
		else if (u == "allocs/op") allocs = v
		else other = other (other == "" ? "" : ", ") v " " u
	}
	printf "| %s | %s | %s | %s | %s | %s |\n", pkg, name, ns, bytes, allocs, other
}
' "$raw"
# A failing benchmark must not pass for a good run: show why.
if ((status != 0)); then
	grep -E '^(--- FAIL|FAIL|panic:)|_test.go:[0-9]+:' "$raw" >&2 || tail -n 30 "$raw" >&2
	exit "$status"
fi
