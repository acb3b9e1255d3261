#!/usr/bin/env bash
# Reconcile throughput: `pipemedic reconcile` against reladiff 0.6.0 on the
# same table of ROWS rows (default 1,000,000) in a throwaway MariaDB and
# PostgreSQL on this machine, in the same run: with no difference, and with
# 100 differences scattered over the key range (34 missing, 33 extra, 33
# differing). Prints wall time, peak RSS and the ratio.
#
#   bench/reconcile.sh [ROWS]
#
# reladiff is installed into a virtual environment under $BENCH_DIR (from
# PyPI) by this script; the servers and data live there too and are removed
# at the end (KEEP=1 keeps them).
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}
dir=${BENCH_DIR:-/tmp/pipemedic-bench-reconcile}
for bin in /usr/sbin/mariadbd /usr/bin/time python3; do
    [ -x "$bin" ] || command -v "$bin" >/dev/null || { echo "$bin is missing: apt-get install -y mariadb-server postgresql time python3-venv" >&2; exit 1; }
done
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$pgbin/initdb" ] || { echo "PostgreSQL is missing: apt-get install -y postgresql" >&2; exit 1; }

cargo build --release --quiet
bin=$PWD/target/release/pipemedic
mkdir -p "$dir"
if [ ! -x "$dir/venv/bin/reladiff" ]; then
    python3 -m venv "$dir/venv"
    "$dir/venv/bin/pip" install -q 'reladiff[mysql,postgresql]==0.6.0'
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cleanup() {
    mariadb-admin --no-defaults -uroot --socket="$dir/my/sock" shutdown 2>/dev/null || true
    as_pg "$pgbin/pg_ctl" -D "$dir/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    [ "${KEEP:-0}" = 1 ] || rm -rf "$dir/my" "$dir/pg"
}
trap cleanup EXIT
rm -rf "$dir/my" "$dir/pg"
mkdir -p "$dir/my" "$dir/pg"
myport=$(free_port); pgport=$(free_port)
mariadb-install-db --no-defaults --user="$(id -un)" --auth-root-authentication-method=normal --skip-test-db \
    --datadir="$dir/my/data" --tmpdir="$dir/my" >"$dir/my/install.log" 2>&1
/usr/sbin/mariadbd --no-defaults --user="$(id -un)" --bind-address=127.0.0.1 --port="$myport" --socket="$dir/my/sock" \
    --datadir="$dir/my/data" --tmpdir="$dir/my" --log-error="$dir/my/error.log" --innodb-buffer-pool-size=256M \
    --skip-name-resolve >/dev/null 2>&1 &
[ "$(id -u)" -eq 0 ] && chown postgres "$dir/pg"
as_pg "$pgbin/initdb" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 -D "$dir/pg/data" >"$dir/pg/initdb.log"
as_pg "$pgbin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/log" -o "-p $pgport -k $dir/pg -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=256MB" -w start >/dev/null
my() { mariadb --no-defaults -uroot --socket="$dir/my/sock" "$@"; }
pg() { psql -q -h 127.0.0.1 -p "$pgport" -U postgres -d bench -v ON_ERROR_STOP=1 "$@"; }
for _ in $(seq 300); do my -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done

echo "building $rows rows in MariaDB and PostgreSQL" >&2
my -e "CREATE DATABASE trade CHARACTER SET utf8mb4;
    CREATE USER 'bench'@'127.0.0.1' IDENTIFIED BY 'bench'; GRANT SELECT ON trade.* TO 'bench'@'127.0.0.1';
    CREATE TABLE trade.t_order (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, amount DECIMAL(12,2) NOT NULL,
        note VARCHAR(64), created_at DATETIME(3) NOT NULL);
    INSERT INTO trade.t_order SELECT seq, seq % 9973, (seq % 100000) / 100, IF(seq % 10 = 0, NULL, CONCAT('order ', seq)),
        '2026-01-01 00:00:00' + INTERVAL seq SECOND FROM trade.seq_1_to_$rows;"
psql -q -h 127.0.0.1 -p "$pgport" -U postgres -d postgres -c "CREATE DATABASE bench" >/dev/null
pg -c "CREATE TABLE t_order (id bigint PRIMARY KEY, user_id bigint NOT NULL, amount numeric(12,2) NOT NULL,
        note character varying(64), created_at timestamp(3) NOT NULL);
    INSERT INTO t_order SELECT n, n % 9973, (n % 100000) / 100.0, CASE WHEN n % 10 = 0 THEN NULL ELSE 'order ' || n END,
        timestamp '2026-01-01' + n * interval '1 second' FROM generate_series(1, $rows) n;" >/dev/null
pg -c "VACUUM ANALYZE t_order" >/dev/null

echo "bench" >"$dir/mysql.pw"
cat >"$dir/pipemedic.toml" <<EOF
state_dir = "$dir/state"
rule_dirs = ["$PWD/rules"]
[mysql.ix_trade]
host = "127.0.0.1"
port = $myport
user = "bench"
password_file = "$dir/mysql.pw"
schemas = ["trade"]
[postgres.bench]
host = "127.0.0.1"
port = $pgport
user = "postgres"
dbname = "bench"
[reconcile]
recheck_after_secs = 0
[reconcile.tables.t_order]
EOF

measure() { # LABEL CMD...: wall seconds, peak RSS in MiB, exit status
    local label=$1; shift
    local t0 t1 status
    t0=$(date +%s.%N)
    set +e
    /usr/bin/time -f '%M' -o "$dir/rss" "$@" >"$dir/out.$label" 2>"$dir/err.$label"
    status=$?
    set -e
    t1=$(date +%s.%N)
    printf '%s %.2f %.0f %s\n' "$label" "$(echo "$t1 - $t0" | bc -l)" "$(( $(tail -1 "$dir/rss") / 1024 ))" "$status"
}

run_both() { # CASE
    measure "pm_$1" "$bin" reconcile --config "$dir/pipemedic.toml" --format json
    measure "rd_$1" "$dir/venv/bin/reladiff" "mysql://bench:bench@127.0.0.1:$myport/trade" t_order \
        "postgresql://postgres@127.0.0.1:$pgport/bench" t_order -k id -c user_id -c amount -c note -c created_at
}

results=$(run_both equal)
# 100 differences spread over the key range.
pg -c "DELETE FROM t_order WHERE id IN (SELECT n * ($rows / 34) FROM generate_series(1, 34) n);
       INSERT INTO t_order SELECT $rows + n * 1000, 1, 1.00, 'extra', timestamp '2026-06-01' FROM generate_series(1, 33) n;
       UPDATE t_order SET amount = amount + 1 WHERE id IN (SELECT n * ($rows / 33) - 7 FROM generate_series(1, 33) n);" >/dev/null
results+=$'\n'$(run_both diff100)

pm_found=$(python3 -c "import json,sys; r=json.load(open('$dir/out.pm_diff100')); c=r['tables'][0]['counts']; print(c['missing'], c['extra'], c['differing'])")
rd_found=$(grep -c '^[-+]' "$dir/out.rd_diff100" || true)
printf '%-10s %12s %12s %8s %12s %12s\n' case "pm s" "reladiff s" ratio "pm RSS MiB" "rd RSS MiB"
for c in equal diff100; do
    read -r _ pt prss _ < <(grep "^pm_$c " <<<"$results")
    read -r _ rt rrss _ < <(grep "^rd_$c " <<<"$results")
    printf '%-10s %12s %12s %8.2f %12s %12s\n' "$c" "$pt" "$rt" "$(echo "$rt / $pt" | bc -l)" "$prss" "$rrss"
done
echo "rows: $rows; pipemedic found (missing extra differing): $pm_found; reladiff printed $rd_found +/- lines (a differing row is one - and one +)"
echo "exit statuses: $(awk '{print $1"="$4}' <<<"$results" | tr '\n' ' ')"
