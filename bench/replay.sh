#!/usr/bin/env bash
# Backlog replay throughput: `pipemedic replay` (record assembly, matching,
# rules, policy — the full pipeline in dry-run) against `rg` on the same
# files, two ways: with the literals a person would grep for the runbook
# (its exception names and messages; LITERALS overrides them), which is the
# limit a replay is measured against, and with the signatures' own capture
# regexes (slow for rg too). Single-threaded per file (`rg -j1`); the last
# line replays all the files at once (a thread per source) against
# multi-threaded `rg` over the same files.
#
#   bench/replay.sh [CORPUS_DIR] [MB]
#
# The corpus comes from ../shared/bench/gen_corpus.py (override with
# GEN_CORPUS=path); it is generated once and reused. Each timing is the best
# of RUNS (default 5) runs on a warm page cache.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-/tmp/pipemedic-corpus}
mb=${2:-256}
runs=${RUNS:-5}
gen=${GEN_CORPUS:-../shared/bench/gen_corpus.py}
command -v rg >/dev/null || { echo "rg is missing: apt-get install -y ripgrep" >&2; exit 1; }

cargo build --release --quiet
bin=target/release/pipemedic
config=examples/pipemedic.toml
if [ ! -f "$corpus/expected.json" ]; then
    echo "generating a $mb MiB corpus in $corpus" >&2
    /usr/bin/python3 "$gen" "$corpus" --mb "$mb"
fi

best() { # best wall time of $runs runs of "$@", in seconds
    local best=999999 t0 t1 t
    for _ in $(seq "$runs"); do
        t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
        t=$(echo "$t1 - $t0" | bc -l)
        if (( $(echo "$t < $best" | bc -l) )); then best=$t; fi
    done
    echo "$best"
}

sigs=$($bin check --config "$config" --signatures | grep -P '^\S+\t\S+\t')
literals=${LITERALS:-'UnknownHostException|errno = 1236|CommitFailedException|WakeupException|PSQLException|no alive canal server|NoRouteToHostException|shut down completed|InconsistentBrokerIdException|replication factor'}
printf '%-16s %-32s %7s %8s %9s %11s %9s %11s %9s\n' source file MiB "pm s" "pm MiB/s" "rg-lit MiB/s" "pm/lit" "rg-re MiB/s" "pm/re"
total_bytes=0; total_pm=0; total_rg=0; total_lit=0; files=()
for pair in consumer_info:data_sync_goldoffice_info.log consumer_error:data_sync_goldoffice_error.log \
            kafka_server:server.log canal:canal.log; do
    source=${pair%%:*}; file=$corpus/${pair#*:}
    bytes=$(stat -c %s "$file")
    cat "$file" >/dev/null   # warm the page cache
    files+=("$file")
    pm=$(best "$bin" replay --config "$config" --source "$source" "$file")
    lit=$(best rg -j1 -c -e "$literals" "$file")
    # rg gets the same patterns (its older regex wants (?P<name>…)).
    mapfile -t pats < <(printf '%s\n' "$sigs" | awk -F'\t' -v s="$source" '$1==s {print $3}' | sed 's/(?</(?P</g')
    if [ ${#pats[@]} -gt 0 ]; then
        args=(); for p in "${pats[@]}"; do args+=(-e "$p"); done
        rgt=$(best rg -j1 -c "${args[@]}" "$file")
    else
        rgt=$(best rg -j1 -c -F -e 'pipemedic-never-present' "$file")   # nothing to find
    fi
    mib=$(echo "$bytes / 1048576" | bc -l)
    printf '%-16s %-32s %7.1f %8.3f %9.0f %11.0f %9.2f %11.0f %9.2f\n' "$source" "${pair#*:}" "$mib" "$pm" \
        "$(echo "$mib / $pm" | bc -l)" "$(echo "$mib / $lit" | bc -l)" "$(echo "$lit / $pm" | bc -l)" \
        "$(echo "$mib / $rgt" | bc -l)" "$(echo "$rgt / $pm" | bc -l)"
    total_bytes=$((total_bytes + bytes)); total_pm=$(echo "$total_pm + $pm" | bc -l)
    total_rg=$(echo "$total_rg + $rgt" | bc -l); total_lit=$(echo "$total_lit + $lit" | bc -l)
done
mib=$(echo "$total_bytes / 1048576" | bc -l)
printf '%-16s %-32s %7.1f %8.3f %9.0f %11.0f %9.2f %11.0f %9.2f\n' "all, one by one" "" "$mib" "$total_pm" \
    "$(echo "$mib / $total_pm" | bc -l)" "$(echo "$mib / $total_lit" | bc -l)" "$(echo "$total_lit / $total_pm" | bc -l)" \
    "$(echo "$mib / $total_rg" | bc -l)" "$(echo "$total_rg / $total_pm" | bc -l)"
# The whole backlog at once: every file in one replay (a core per source,
# decided in log-time order) against rg on every core.
all_pm=$(best "$bin" replay --config "$config" "${files[@]}")
all_lit=$(best rg -c -e "$literals" "${files[@]}")
printf '%-16s %-32s %7.1f %8.3f %9.0f %11.0f %9.2f\n' "all at once" "(rg threads)" "$mib" "$all_pm" \
    "$(echo "$mib / $all_pm" | bc -l)" "$(echo "$mib / $all_lit" | bc -l)" "$(echo "$all_lit / $all_pm" | bc -l)"

# Nothing missed: the decisions per rule against what the generator wrote.
echo
echo "expected incidents: $(tr -d ' \n' < "$corpus/expected.json" | grep -o '"incidents":{[^}]*}')"
echo "all at once, decisions by rule: $($bin replay --config "$config" --format json "${files[@]}" 2>/dev/null \
    | grep -o '"rule":"[a-z0-9_]*"' | sort | uniq -c | tr '\n' ' ')"
for pair in kafka_server:server.log consumer_error:data_sync_goldoffice_error.log canal:canal.log; do
    source=${pair%%:*}; file=$corpus/${pair#*:}
    echo "$source decisions by rule: $($bin replay --config "$config" --source "$source" --format json "$file" 2>/dev/null \
        | grep -o '"rule":"[a-z0-9_]*"' | sort | uniq -c | tr '\n' ' ')"
done
