#!/usr/bin/env bash
# The lab: the runbook's whole pipeline from the real software, on one
# machine, on loopback and free ports, in a scratch directory.
#
#   two MariaDB sources (binlog, ROW) → ZooKeeper + canal server 1.1.4 →
#   monitor (canal.client → Kafka) → 3 Kafka 3.9 brokers (ZooKeeper mode) →
#   data_sync (kafka-clients, Druid, pgjdbc) → PostgreSQL trade_ix and admin
#
# Commands (scripts/lab is this script):
#   lab build              build the Java side (Maven; downloads once)
#   lab up [--agent]       start everything; the last line printed is the
#                          lab's directory. --agent: pipemedic in dry-run too
#   lab status [DIR]       each part, and "flow: ok" or "flow: broken (why)"
#   lab break ITEM [DIR]   inject a runbook failure: N1, N4, N6, C1, C2, C7, K1
#   lab topics [DIR]       Kafka's own kafka-topics --describe of the topic
#   lab groups [DIR]       Kafka's own kafka-consumer-groups --describe of bo_01
#   lab lag [DIR]          bo_01's backlog: log ends minus its commits, counting
#                          a partition it never committed in from its log start
#   lab down [DIR]         stop everything gracefully, remove the directory
#
# DIR defaults to $LAB_DIR, else the newest lab under ${TMPDIR:-/tmp}.
# Environment: LAB_DIR (where `up` builds the lab), LAB_CANAL_SERVERS (1 or
# 2: a second canal server on the same ZooKeeper, "another host"),
# LAB_HEARTBEAT_SECS (15: four heartbeats a minute per source),
# PIPEMEDIC_BIN (the agent binary for --agent; default: cargo build).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
sources=(ix_trade ix_quote)

die() {
    echo "lab: $*" >&2
    exit 1
}

# The Java side: built in place once (target/ of each module), rebuilt when a
# source or pom is newer than the jars. flock: tests start labs in parallel.
build() {
    command -v java >/dev/null || die "java is missing: apt-get install -y openjdk-17-jdk-headless"
    command -v mvn >/dev/null || die "mvn is missing: apt-get install -y maven"
    exec 9>"$here/.build.lock"
    flock 9
    local stamp=$here/data_sync/target/data-sync.jar
    if [ -f "$stamp" ] && [ -z "$(find "$here" -newer "$stamp" \( -path '*/src/*' -o -name pom.xml \) -type f -not -path '*/target/*' | head -1)" ] &&
        [ -d "$here/canal/target/lib" ] && [ -d "$here/kafka/target/lib" ]; then
        flock -u 9
        return
    fi
    echo "building the lab's Java side (Maven; the first build downloads from Maven Central)"
    if ! mvn -B -q -f "$here/pom.xml" package >"$here/.build.log" 2>&1; then
        tail -40 "$here/.build.log" >&2
        die "the Maven build failed (log: $here/.build.log)"
    fi
    flock -u 9
}

# free_port VAR: sets VAR to a loopback port nothing listens on, below the
# ephemeral range; never the same one twice in a run (not in a subshell: the
# counter must persist).
next_port=$((20000 + (RANDOM * 7 + $$) % 12000))
free_port() {
    local p
    for _ in $(seq 1 500); do
        p=$next_port
        next_port=$((next_port + 1))
        [ $next_port -ge 32000 ] && next_port=20000
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            printf -v "$1" '%s' "$p"
            return
        fi
    done
    die "no free loopback port"
}

# wait_for WHAT SECS LOG COMMAND...: polls COMMAND until it succeeds; after
# SECS fails with the last lines of LOG.
wait_for() {
    local what=$1 secs=$2 log=$3
    shift 3
    local deadline=$(($(date +%s) + secs))
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "lab: $what did not come up within ${secs}s; last lines of $log:" >&2
            tail -40 "$log" >&2 || true
            return 1
        fi
        sleep 0.2
    done
}

log_has() { grep -q -- "$2" "$1" 2>/dev/null; }

root_or() { if [ "$(id -u)" -eq 0 ]; then runuser -u "$1" -- "${@:2}"; else "${@:2}"; fi; }

pg_bin() {
    local b
    b=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -x "$b/initdb" ] || die "PostgreSQL server binaries are missing: apt-get install -y postgresql"
    echo "$b"
}

mysql_sql() { # SOURCE SQL
    mariadb --no-defaults -uroot --connect-timeout=10 --socket="$LAB/mysql/$1/mysqld.sock" -N -B -e "$2"
}

pg_sql() { # DB SQL
    psql -X -q -t -A -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$1" -c "$2"
}

# ---- the parts -------------------------------------------------------------

start_mysql() { # NAME SERVER_ID
    local name=$1 id=$2 dir=$LAB/mysql/$1 port
    [ -x /usr/sbin/mariadbd ] || die "/usr/sbin/mariadbd is missing: apt-get install -y mariadb-server mariadb-client"
    free_port port
    mkdir -p "$dir"
    mariadb-install-db --no-defaults --user="$(id -un)" --auth-root-authentication-method=normal --skip-test-db \
        --datadir="$dir/data" --tmpdir="$dir" >"$dir/install.log" 2>&1 || { tail "$dir/install.log" >&2; die "mariadb-install-db failed for $name"; }
    cat >"$dir/my.cnf" <<EOF
[mariadbd]
user = $(id -un)
bind-address = 127.0.0.1
port = $port
socket = $dir/mysqld.sock
pid-file = $dir/mysqld.pid
datadir = $dir/data
tmpdir = $dir
log-error = $dir/error.log
server-id = $id
log-bin = $dir/data/mysql-bin
binlog-format = ROW
skip-name-resolve
innodb-buffer-pool-size = 16M
EOF
    "$here/bin/daemon.sh" start "$dir/daemon.pid" "$dir/stdout.log" -- /usr/sbin/mariadbd --defaults-file="$dir/my.cnf" >/dev/null
    printf -v "MYSQL_${name^^}_PORT" '%s' "$port"
    echo "MYSQL_${name^^}_PORT=$port" >>"$LAB/lab.env"
}

init_mysql() { # NAME
    local name=$1
    wait_for "MariaDB $name" 60 "$LAB/mysql/$name/error.log" mysql_sql "$name" "SELECT 1"
    mysql_sql "$name" "
        CREATE USER 'canal'@'127.0.0.1' IDENTIFIED BY 'canal';
        GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT, BINLOG MONITOR ON *.* TO 'canal'@'127.0.0.1';
        CREATE DATABASE trade;
        CREATE TABLE trade.t_order (id BIGINT AUTO_INCREMENT PRIMARY KEY, user_id BIGINT NOT NULL,
            amount DECIMAL(12,2) NOT NULL, created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3));
        CREATE TABLE trade.t_item_user (id BIGINT AUTO_INCREMENT PRIMARY KEY, user_id BIGINT NOT NULL,
            item VARCHAR(64) NOT NULL);
        CREATE TABLE trade.heartbeat (id INT PRIMARY KEY, source VARCHAR(32) NOT NULL, beat_at DATETIME(3) NOT NULL);"
}

start_zookeeper() {
    local dir=$LAB/zookeeper jar=/usr/share/java/zookeeper.jar
    [ -f "$jar" ] || die "$jar is missing: apt-get install -y zookeeper"
    free_port ZK_PORT
    mkdir -p "$dir/data"
    cat >"$dir/zoo.cfg" <<EOF
tickTime=500
dataDir=$dir/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok
maxSessionTimeout=20000
EOF
    "$here/bin/daemon.sh" start "$dir/zookeeper.pid" "$dir/zookeeper.log" -- \
        java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dzookeeper.admin.enableServer=false \
        -cp "$jar" org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zoo.cfg" >/dev/null
    echo "ZK_PORT=$ZK_PORT" >>"$LAB/lab.env"
}

zk_ok() { [ "$(exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT" && echo ruok >&3 && timeout 2 cat <&3)" = imok ]; }

start_postgres() {
    local dir=$LAB/postgres bin
    bin=$(pg_bin)
    free_port PG_PORT
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    root_or postgres "$bin/initdb" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 -D "$dir/data" >"$dir/initdb.log" 2>&1 ||
        { tail "$dir/initdb.log" >&2; die "initdb failed"; }
    root_or postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgresql.log" \
        -o "-p $PG_PORT -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" -w start >/dev/null ||
        { tail "$dir/postgresql.log" >&2; die "PostgreSQL did not start"; }
    echo "PG_PORT=$PG_PORT" >>"$LAB/lab.env"
    for db in trade_ix admin; do
        pg_sql postgres "CREATE DATABASE $db" >/dev/null
        pg_sql "$db" "
            CREATE TABLE t_order (source TEXT, id BIGINT, user_id BIGINT, amount NUMERIC(12,2), created_at TIMESTAMP(3),
                PRIMARY KEY (source, id));
            CREATE TABLE t_item_user (source TEXT, id BIGINT, user_id BIGINT, item VARCHAR(64), PRIMARY KEY (source, id));
            CREATE TABLE heartbeat (source TEXT, id INT, beat_at TIMESTAMP(3), PRIMARY KEY (source, id));" >/dev/null
    done
}

kafka_java() { # extra args...: the broker's JVM
    echo java -Xms192m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
}

# Broker ID's directory: server.properties with LISTENER, log4j, and its
# start and stop scripts; the start runs COMMAND… before the JVM (K1's
# private namespace), if given. Sets port.
kafka_files() { # ID LISTENER_HOST [WRAPPER…]
    local id=$1 host=$2 dir=$LAB/kafka/$1
    shift 2
    free_port port
    mkdir -p "$dir/config" "$dir/logs" "$dir/data" "$dir/bin"
    cat >"$dir/config/server.properties" <<EOF
broker.id=$id
listeners=PLAINTEXT://$host:$port
log.dirs=$dir/data
zookeeper.connect=127.0.0.1:$ZK_PORT
zookeeper.connection.timeout.ms=18000
zookeeper.session.timeout.ms=6000
num.partitions=3
default.replication.factor=3
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
EOF
    cp "$here/conf/kafka/log4j.properties" "$dir/config/log4j.properties"
    cat >"$dir/bin/kafka-server-start.sh" <<EOF
#!/usr/bin/env bash
# Broker $id: kafka.Kafka in the background, its pid in $dir/kafka.pid.
exec "$here/bin/daemon.sh" start "$dir/kafka.pid" "$dir/logs/kafkaServer.out" -- $* \\
    $(kafka_java) -Dkafka.logs.dir=$dir/logs -Dlog4j.configuration=file:$dir/config/log4j.properties \\
    -cp "$here/kafka/target/lib/*" kafka.Kafka $dir/config/server.properties
EOF
    cat >"$dir/bin/kafka-server-stop.sh" <<EOF
#!/usr/bin/env bash
# Broker $id: SIGTERM and wait (a controlled shutdown), never SIGKILL.
exec "$here/bin/daemon.sh" stop "$dir/kafka.pid" 120
EOF
    chmod +x "$dir/bin/"*.sh
    echo "KAFKA_${id}_PORT=$port" >>"$LAB/lab.env"
}

start_kafka() { # ID
    local id=$1 port
    kafka_files "$id" 127.0.0.1
    "$LAB/kafka/$id/bin/kafka-server-start.sh" >/dev/null
    BOOTSTRAP=${BOOTSTRAP:+$BOOTSTRAP,}127.0.0.1:$port
}

# K1: broker 4 (no replica of the topic) in a private mount and UTS
# namespace (unshare): its host name is K1_NAME, its /etc/hosts the file
# $LAB/kafka/4/hosts, which its agent (broker4/) maps names in. Its listener
# names no host, so it advertises its own name, which it must resolve.
# Nothing on the machine changes. Started by `break K1`.
K1_NAME=ip-10-98-2-33
prepare_k1_broker() {
    local port
    mkdir -p "$LAB/kafka/4"
    grep -v "$K1_NAME" /etc/hosts >"$LAB/kafka/4/hosts"
    kafka_files 4 "" unshare --mount --uts "$here/bin/k1-namespace.sh" "$LAB/kafka/4/hosts" "$K1_NAME"
    agent_dir "$LAB/broker4"
    {
        echo "# pipemedic on Kafka broker 4's \"host\" (written by scripts/lab): K1. Its"
        echo "# hosts file is the one broker 4 sees as /etc/hosts."
        agent_config_head broker4 "$LAB/kafka/4/hosts"
        cat <<EOF

[sources.kafka_server]
path = "$LAB/kafka/4/logs/server.log"
EOF
        kafka_service_config 4
    } >"$LAB/broker4/pipemedic.toml"
    cat >>"$LAB/broker4/pipemedic.toml" <<EOF

[zookeeper]
connect = "127.0.0.1:$ZK_PORT"
EOF
}

# Canal server N's directory: canal/ for the first, canal2/ for another "host".
canal_home() { if [ "$1" -gt 1 ]; then echo "$LAB/canal$1"; else echo "$LAB/canal"; fi; }

start_canal() { # N (1 or 2: "hosts" sharing ZooKeeper)
    local n=$1 home port metrics_port dest i=0
    home=$(canal_home "$n")
    free_port port
    free_port metrics_port
    mkdir -p "$home/bin" "$home/conf/spring" "$home/logs"
    ln -sfn "$here/canal/target/lib" "$home/lib"
    cp "$here/bin/canal-startup.sh" "$home/bin/startup.sh"
    cp "$here/bin/canal-stop.sh" "$home/bin/stop.sh"
    cp "$here/conf/canal/logback.xml" "$home/conf/"
    cp "$here/conf/canal/spring/"*.xml "$home/conf/spring/"
    cat >"$home/conf/canal.properties" <<EOF
# canal server $n of the lab: ZooKeeper mode, tcp.
canal.id = $n
canal.ip = 127.0.0.1
canal.register.ip = 127.0.0.1
canal.port = $port
canal.metrics.pull.port = $metrics_port
canal.zkServers = 127.0.0.1:$ZK_PORT
canal.zookeeper.flush.period = 1000
canal.withoutNetty = false
canal.serverMode = tcp
canal.file.data.dir = $home/conf
canal.file.flush.period = 1000
canal.instance.memory.buffer.size = 16384
canal.instance.memory.buffer.memunit = 1024
canal.instance.memory.batch.mode = MEMSIZE
canal.instance.memory.rawEntry = true
canal.instance.detecting.enable = false
canal.instance.transaction.size = 1024
canal.instance.fallbackIntervalInSeconds = 60
canal.instance.network.receiveBufferSize = 16384
canal.instance.network.sendBufferSize = 16384
canal.instance.network.soTimeout = 30
canal.instance.filter.druid.ddl = true
canal.instance.filter.query.dcl = false
canal.instance.filter.query.dml = false
canal.instance.filter.query.ddl = false
canal.instance.filter.table.error = false
canal.instance.filter.rows = false
canal.instance.filter.transaction.entry = false
canal.instance.binlog.format = ROW,STATEMENT,MIXED
canal.instance.binlog.image = FULL,MINIMAL,NOBLOB
canal.instance.get.ddl.isolation = false
canal.instance.parser.parallel = false
# The table-meta history (TSDB) needs canal's h2/mybatis configuration, which
# only its release tarball ships: off in the lab.
canal.instance.tsdb.enable = false
canal.destinations = $(IFS=,; echo "${sources[*]}")
canal.conf.dir = $home/conf
canal.auto.scan = false
canal.instance.global.mode = spring
canal.instance.global.lazy = false
canal.instance.global.spring.xml = classpath:spring/default-instance.xml
EOF
    for dest in "${sources[@]}"; do
        i=$((i + 1))
        mkdir -p "$home/conf/$dest"
        local mport_var="MYSQL_${dest^^}_PORT"
        cat >"$home/conf/$dest/instance.properties" <<EOF
canal.instance.mysql.slaveId = $((1000 + 10 * n + i))
canal.instance.master.address = 127.0.0.1:${!mport_var}
canal.instance.master.journal.name =
canal.instance.master.position =
canal.instance.master.timestamp =
canal.instance.master.gtid =
canal.instance.dbUsername = canal
canal.instance.dbPassword = canal
canal.instance.connectionCharset = UTF-8
canal.instance.filter.regex = trade\\\\..*
canal.instance.filter.black.regex =
EOF
    done
    "$home/bin/startup.sh" >/dev/null
    printf -v "CANAL_${n}_PORT" '%s' "$port"
    echo "CANAL_${n}_PORT=$port" >>"$LAB/lab.env"
}

start_monitor() {
    local dir=$LAB/monitor
    mkdir -p "$dir" "$LAB/logs/data_monitor"
    cat >"$dir/monitor.properties" <<EOF
zkServers = 127.0.0.1:$ZK_PORT
destinations = $(IFS=,; echo "${sources[*]}")
bootstrap.servers = $BOOTSTRAP
topic = TABLE_IX_TRADE_ALL_BASE
EOF
    cat >"$dir/start.sh" <<EOF
#!/usr/bin/env bash
exec "$here/bin/daemon.sh" start "$dir/monitor.pid" "$dir/stdout.log" -- \\
    java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dlog.dir=$LAB/logs/data_monitor \\
    -jar "$here/monitor/target/data-monitor.jar" "$dir/monitor.properties"
EOF
    cat >"$dir/stop.sh" <<EOF
#!/usr/bin/env bash
exec "$here/bin/daemon.sh" stop "$dir/monitor.pid" 60
EOF
    chmod +x "$dir/"*.sh
    "$dir/start.sh" >/dev/null
}

start_data_sync() {
    local dir=$LAB/data_sync
    mkdir -p "$dir" "$LAB/logs/data_sync"
    cat >"$dir/consumer.properties" <<EOF
# kafka-clients settings of the ConsumerThreads (runbook C2, C7); sync.* are
# data_sync's own.
bootstrap.servers=$BOOTSTRAP
group.id=bo_01
max.poll.records=500
max.poll.interval.ms=300000
auto.offset.reset=earliest
sync.topic=TABLE_IX_TRADE_ALL_BASE
sync.threads=3
EOF
    cat >"$dir/jdbc.properties" <<EOF
databases=trade_ix,admin
trade_ix.url=jdbc:postgresql://127.0.0.1:$PG_PORT/trade_ix?stringtype=unspecified
admin.url=jdbc:postgresql://127.0.0.1:$PG_PORT/admin?stringtype=unspecified
username=postgres
password=
EOF
    cat >"$dir/start.sh" <<EOF
#!/usr/bin/env bash
exec "$here/bin/daemon.sh" start "$dir/data_sync.pid" "$dir/stdout.log" -- \\
    java -Xmx192m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dlog.dir=$LAB/logs/data_sync \\
    -jar "$here/data_sync/target/data-sync.jar" "$dir/consumer.properties" "$dir/jdbc.properties"
EOF
    cat >"$dir/stop.sh" <<EOF
#!/usr/bin/env bash
# Like Tomcat's shutdown.sh: the consumers are woken up and close (runbook T3).
exec "$here/bin/daemon.sh" stop "$dir/data_sync.pid" 60
EOF
    chmod +x "$dir/"*.sh
    "$dir/start.sh" >/dev/null
}

# Four heartbeats a minute per source (runbook M1), as a background loop.
start_heartbeats() {
    local secs=${LAB_HEARTBEAT_SECS:-15}
    cat >"$LAB/heartbeat.sh" <<EOF
#!/usr/bin/env bash
while :; do
    for s in ${sources[*]}; do
        mariadb --no-defaults -uroot --connect-timeout=5 --socket="$LAB/mysql/\$s/mysqld.sock" -e \\
            "INSERT INTO trade.heartbeat VALUES (1, '\$s', NOW(3)) ON DUPLICATE KEY UPDATE beat_at = NOW(3)" 2>/dev/null
    done
    sleep $secs
done
EOF
    chmod +x "$LAB/heartbeat.sh"
    "$here/bin/daemon.sh" start "$LAB/heartbeat.pid" /dev/null -- "$LAB/heartbeat.sh" >/dev/null
}

# An agent's directory: its state (owner only), rule and playbook dirs.
agent_dir() { # DIR
    mkdir -p "$1/state" "$1/rules.d" "$1/playbooks.d"
    chmod 700 "$1/state"
}

# The top of an agent's pipemedic.toml, after its own comment lines.
agent_config_head() { # HOST_NAME HOSTS_FILE
    cat <<EOF
state_dir = "state"
dry_run = true
rule_dirs = ["$repo/rules", "rules.d"]
playbook_dirs = ["$repo/playbooks", "playbooks.d"]
hosts_file = "$2"
host_name = "$1"
EOF
}

# Broker ID as its host's agent's `kafka` service.
kafka_service_config() { # ID
    cat <<EOF

[services.kafka]
start = ["$LAB/kafka/$1/bin/kafka-server-start.sh"]
stop = ["$LAB/kafka/$1/bin/kafka-server-stop.sh"]
process = { pid_file = "$LAB/kafka/$1/kafka.pid" }
up = { log_file = "$LAB/kafka/$1/logs/server.log", log_pattern = "started \\\\(kafka\\\\.server\\\\.KafkaServer\\\\)" }
stop_timeout_secs = 120
start_timeout_secs = 180
EOF
}

# The agent of canal server N's "host": agent/ beside canal server 1 (which
# also watches the monitor, Kafka broker 1 and data_sync), agentN/ beside
# canal server N (canal only). With several canal servers they run in HA.
agent_home() { if [ "$1" -gt 1 ]; then echo "$LAB/agent$1"; else echo "$LAB/agent"; fi; }

write_agent_config() { # N
    local n=$1 dir home host=lab ha=false
    dir=$(agent_home "$n")
    home=$(canal_home "$n")
    [ "$n" -gt 1 ] && host=lab$n
    [ "${CANAL_SERVERS:-1}" -gt 1 ] && ha=true
    agent_dir "$dir"
    echo canal >"$dir/mysql.pw"
    chmod 600 "$dir/mysql.pw"
    {
        echo "# pipemedic on the lab (written by scripts/lab): the lab's logs, services and"
        echo "# sources. dry_run: it shows what it would do and changes nothing."
        agent_config_head "$host" "$LAB/hosts"
    } >"$dir/pipemedic.toml"
    cat >>"$dir/pipemedic.toml" <<EOF

[sources.canal]
path = "$home/logs/canal/canal.log"
EOF
    for dest in "${sources[@]}"; do
        cat >>"$dir/pipemedic.toml" <<EOF
[sources.canal_instance_$dest]
path = "$home/logs/$dest/$dest.log"
kind = "canal_instance"
EOF
    done
    [ "$n" -eq 1 ] && cat >>"$dir/pipemedic.toml" <<EOF
[sources.consumer_info]
path = "$LAB/logs/data_sync/data_sync_goldoffice_info.log"
[sources.consumer_error]
path = "$LAB/logs/data_sync/data_sync_goldoffice_error.log"
[sources.kafka_server]
path = "$LAB/kafka/1/logs/server.log"
[sources.kafka_controller]
path = "$LAB/kafka/1/logs/controller.log"
[sources.monitor]
path = "$LAB/logs/data_monitor/data_monitor_info.log"
EOF
    cat >>"$dir/pipemedic.toml" <<EOF

[services.canal]
start = ["$home/bin/startup.sh"]
stop = ["$home/bin/stop.sh"]
workdir = "$home/bin"
process = { pid_file = "$home/bin/canal.pid" }
up = { log_file = "$home/logs/canal/canal.log", log_pattern = "## the canal server is running now" }
stale_pid_file = "$home/bin/canal.pid"
stop_timeout_secs = 120
start_timeout_secs = 180
EOF
    [ "$n" -eq 1 ] && kafka_service_config 1 >>"$dir/pipemedic.toml"
    [ "$n" -eq 1 ] && cat >>"$dir/pipemedic.toml" <<EOF

[services.consumer]
start = ["$LAB/data_sync/start.sh"]
stop = ["$LAB/data_sync/stop.sh"]
process = { pid_file = "$LAB/data_sync/data_sync.pid" }
stop_timeout_secs = 120
start_timeout_secs = 180

[properties_files]
consumer = "$LAB/data_sync/consumer.properties"
kafka_server = "$LAB/kafka/1/config/server.properties"

[kafka]
bootstrap_servers = "$BOOTSTRAP"
topics = ["TABLE_IX_TRADE_ALL_BASE"]
group = "bo_01"

[postgres.trade_ix]
host = "127.0.0.1"
port = $PG_PORT
user = "postgres"
dbname = "trade_ix"

[postgres.admin]
host = "127.0.0.1"
port = $PG_PORT
user = "postgres"
dbname = "admin"
EOF
    cat >>"$dir/pipemedic.toml" <<EOF

[zookeeper]
connect = "127.0.0.1:$ZK_PORT"

EOF
    for dest in "${sources[@]}"; do
        local mport_var="MYSQL_${dest^^}_PORT"
        cat >>"$dir/pipemedic.toml" <<EOF
[mysql.$dest]
host = "127.0.0.1"
port = ${!mport_var}
user = "canal"
password_file = "mysql.pw"
schemas = ["trade"]

EOF
    done
    cat >>"$dir/pipemedic.toml" <<EOF
[canal]
service = "canal"
properties_files = ["$home/conf/canal.properties"]
stop_wait_secs = 60
ha = $ha
EOF
    for dest in "${sources[@]}"; do
        printf '[canal.destinations.%s]\nmysql = "%s"\n' "$dest" "$dest" >>"$dir/pipemedic.toml"
    done
    [ "$n" -eq 1 ] && cat >>"$dir/pipemedic.toml" <<EOF

[heartbeat]
source = "consumer_info"
pattern = 'heartbeat consumed source=(?<source>\\w+)'
expected = [$(printf '"%s", ' "${sources[@]}" | sed 's/, $//')]
missing_secs = 180
return_deadline_secs = 300

# C5: data_sync is a plain Java program, not Tomcat: its own start line.
[stall]
started_pattern = 'data_sync started: group'
consumed_pattern = 'consumed \\d+ records'
grace_secs = 30
EOF
    [ "$n" -eq 1 ] && cat >>"$dir/pipemedic.toml" <<EOF

# What a fix that skips binlog loses (N3, N4, N6): pipemedic reconcile.
# The consumer writes each source's rows with its name in "source".
[reconcile]
recheck_after_secs = 5
[reconcile.tables.t_order]
source_column = "source"
[reconcile.tables.t_item_user]
source_column = "source"
EOF
    [ "$n" -eq 1 ] && kafka_cluster_config 1 >>"$dir/pipemedic.toml"
    return 0
}

# K4: each broker "host" has its agent; the brokers restart leader-first.
kafka_cluster_config() { # BROKER_ID
    cat <<EOF

[kafka.cluster]
broker_id = $1
brokers = [1, 2, 3]
settle_secs = 5
start_timeout_secs = 120
lock_wait_secs = 600
EOF
}

# The agent of Kafka broker N's "host" (N = 2, 3; broker 1's is agent/):
# its broker's logs and scripts, in the leader-first restart with the others.
write_broker_agent_config() { # N
    local n=$1 dir=$LAB/broker$1
    agent_dir "$dir"
    {
        echo "# pipemedic on Kafka broker $n's \"host\" (written by scripts/lab)."
        agent_config_head "broker$n" "$LAB/hosts"
        cat <<EOF

[sources.kafka_server]
path = "$LAB/kafka/$n/logs/server.log"
[sources.kafka_controller]
path = "$LAB/kafka/$n/logs/controller.log"
EOF
        kafka_service_config "$n"
    } >"$dir/pipemedic.toml"
    cat >>"$dir/pipemedic.toml" <<EOF

[properties_files]
kafka_server = "$LAB/kafka/$n/config/server.properties"

[kafka]
bootstrap_servers = "$BOOTSTRAP"
topics = ["TABLE_IX_TRADE_ALL_BASE"]
group = "bo_01"
EOF
    kafka_cluster_config "$n" >>"$dir/pipemedic.toml"
    cat >>"$dir/pipemedic.toml" <<EOF

[zookeeper]
connect = "127.0.0.1:$ZK_PORT"
EOF
}

pipemedic_bin() {
    if [ -n "${PIPEMEDIC_BIN:-}" ]; then
        echo "$PIPEMEDIC_BIN"
        return
    fi
    (cd "$repo" && cargo build --quiet --bin pipemedic >&2) || die "cargo build failed"
    echo "$repo/target/debug/pipemedic"
}

start_agent() {
    local bin
    bin=$(pipemedic_bin)
    "$bin" check --config "$LAB/agent/pipemedic.toml" >"$LAB/agent/check.log" 2>&1 ||
        { cat "$LAB/agent/check.log" >&2; die "pipemedic check failed"; }
    (cd "$LAB/agent" && "$here/bin/daemon.sh" start "$LAB/agent/pipemedic.pid" "$LAB/agent/agent.log" -- \
        "$bin" run --config "$LAB/agent/pipemedic.toml" >/dev/null)
    wait_for "pipemedic" 60 "$LAB/agent/agent.log" log_has "$LAB/agent/state/audit.jsonl" '"kind":"started"'
}

# ---- commands --------------------------------------------------------------

lab_dir() { # the lab a command acts on
    local d=${1:-${LAB_DIR:-}}
    if [ -z "$d" ]; then
        d=$(ls -dt "${TMPDIR:-/tmp}"/pipemedic-lab.* 2>/dev/null | head -1 || true)
    fi
    [ -n "$d" ] && [ -f "$d/lab.env" ] || die "no lab here (${d:-none}): run scripts/lab up"
    echo "$d"
}

load_env() {
    LAB=$1
    # shellcheck disable=SC1091
    source "$LAB/lab.env"
}

up() {
    local agent=false t0
    [ "${1:-}" = --agent ] && agent=true
    t0=$(date +%s)
    build
    if [ -n "${LAB_DIR:-}" ]; then
        LAB=$LAB_DIR
        mkdir -p "$LAB"
    else
        LAB=$(mktemp -d "${TMPDIR:-/tmp}/pipemedic-lab.XXXXXX")
    fi
    chmod 755 "$LAB"
    : >"$LAB/lab.env"
    echo "LAB=$LAB" >>"$LAB/lab.env"
    local i=0
    for s in "${sources[@]}"; do
        i=$((i + 1))
        start_mysql "$s" "$i"
    done
    start_zookeeper
    start_postgres
    for s in "${sources[@]}"; do init_mysql "$s"; done
    wait_for ZooKeeper 60 "$LAB/zookeeper/zookeeper.log" zk_ok
    BOOTSTRAP=
    for id in 1 2 3; do start_kafka "$id"; done
    echo "BOOTSTRAP=$BOOTSTRAP" >>"$LAB/lab.env"
    local servers=${LAB_CANAL_SERVERS:-1}
    CANAL_SERVERS=$servers
    for n in $(seq 1 "$servers"); do start_canal "$n"; done
    echo "CANAL_SERVERS=$servers" >>"$LAB/lab.env"
    for id in 1 2 3; do
        wait_for "Kafka broker $id" 180 "$LAB/kafka/$id/logs/server.log" \
            log_has "$LAB/kafka/$id/logs/server.log" 'started (kafka.server.KafkaServer)'
    done
    kafka_tool TopicCommand --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic TABLE_IX_TRADE_ALL_BASE \
        --partitions 3 --replication-factor 3 >"$LAB/kafka/topic.log" 2>&1 ||
        { cat "$LAB/kafka/topic.log" >&2; die "creating the topic failed"; }
    for n in $(seq 1 "$servers"); do
        local home
        home=$(canal_home "$n")
        wait_for "canal server $n" 180 "$home/logs/canal/canal.log" \
            log_has "$home/logs/canal/canal.log" 'the canal server is running now'
    done
    start_monitor
    start_data_sync
    start_heartbeats
    wait_for "the monitor" 120 "$LAB/logs/data_monitor/data_monitor_info.log" \
        log_has "$LAB/logs/data_monitor/data_monitor_info.log" 'heartbeat parsed'
    wait_for "data_sync" 120 "$LAB/logs/data_sync/data_sync_goldoffice_info.log" \
        log_has "$LAB/logs/data_sync/data_sync_goldoffice_info.log" 'heartbeat consumed'
    # The agents' hosts file: a copy. A test never changes the machine's.
    cp /etc/hosts "$LAB/hosts"
    for n in $(seq 1 "$servers"); do write_agent_config "$n"; done
    for n in 2 3; do write_broker_agent_config "$n"; done
    prepare_k1_broker
    $agent && start_agent
    echo "UP_SECS=$(($(date +%s) - t0))" >>"$LAB/lab.env"
    describe
    echo "$LAB"
}

describe() {
    cat <<EOF
lab up in $(grep '^UP_SECS=' "$LAB/lab.env" | cut -d= -f2)s
  MariaDB ix_trade   127.0.0.1:$MYSQL_IX_TRADE_PORT  $LAB/mysql/ix_trade/my.cnf, binlog $LAB/mysql/ix_trade/data
  MariaDB ix_quote   127.0.0.1:$MYSQL_IX_QUOTE_PORT  $LAB/mysql/ix_quote/my.cnf, binlog $LAB/mysql/ix_quote/data
  ZooKeeper          127.0.0.1:$ZK_PORT  $LAB/zookeeper/zoo.cfg
  canal server       127.0.0.1:$CANAL_1_PORT  $LAB/canal/conf/canal.properties
      logs           $LAB/canal/logs/canal/canal.log, $LAB/canal/logs/<destination>/<destination>.log
  Kafka brokers 1-3  $BOOTSTRAP  $LAB/kafka/<id>/config/server.properties
      logs           $LAB/kafka/<id>/logs/server.log, controller.log
  monitor            $LAB/monitor/monitor.properties
      log            $LAB/logs/data_monitor/data_monitor_info.log
  data_sync          $LAB/data_sync/consumer.properties, jdbc.properties
      logs           $LAB/logs/data_sync/data_sync_goldoffice_info.log, _error.log
  PostgreSQL         127.0.0.1:$PG_PORT  databases trade_ix, admin
  pipemedic          $LAB/agent/pipemedic.toml (dry-run), journal $LAB/agent/state/audit.jsonl
EOF
    for n in $(seq 2 "${CANAL_SERVERS:-1}"); do
        local v=CANAL_${n}_PORT
        echo "  canal server $n     127.0.0.1:${!v}  $(canal_home "$n")/conf/canal.properties (HA; its agent: $(agent_home "$n")/pipemedic.toml)"
    done
    echo "  brokers 2, 3's agents (K4 leader-first restarts): $LAB/broker2/pipemedic.toml, $LAB/broker3/pipemedic.toml (not started)"
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# A row inserted now in each source must reach both PostgreSQL databases.
flow() {
    local marker why=() deadline
    marker=$(( $(date +%s%N) / 1000000 % 1000000000 ))
    for s in "${sources[@]}"; do
        mysql_sql "$s" "INSERT INTO trade.t_order (user_id, amount) VALUES ($marker, 1.00)" 2>/dev/null ||
            why+=("cannot insert into $s")
    done
    deadline=$(($(date +%s) + ${FLOW_SECS:-30}))
    while :; do
        why=()
        for s in "${sources[@]}"; do
            for db in trade_ix admin; do
                [ "$(pg_sql "$db" "SELECT count(*) FROM t_order WHERE source = '$s' AND user_id = $marker" 2>/dev/null)" = 1 ] ||
                    why+=("a row of $s has not reached $db")
            done
        done
        [ ${#why[@]} -eq 0 ] && { echo "flow: ok"; return 0; }
        [ "$(date +%s)" -ge "$deadline" ] && break
        sleep 0.5
    done
    echo "flow: broken ($(IFS=';'; echo "${why[*]}"))"
    return 1
}

status() {
    load_env "$(lab_dir "${1:-}")"
    local state
    for s in "${sources[@]}"; do
        running "$LAB/mysql/$s/daemon.pid" && state=up || state=down
        echo "mysql $s: $state"
    done
    running "$LAB/zookeeper/zookeeper.pid" && state=up || state=down
    echo "zookeeper: $state"
    for n in $(seq 1 "$CANAL_SERVERS"); do
        local home
        home=$(canal_home "$n")
        if running "$home/bin/canal.pid"; then state=up; elif [ -f "$home/bin/canal.pid" ]; then state="down (stale pid file)"; else state=down; fi
        echo "canal server $n: $state"
    done
    for id in 1 2 3; do
        running "$LAB/kafka/$id/kafka.pid" && state=up || state=down
        echo "kafka broker $id: $state"
    done
    running "$LAB/monitor/monitor.pid" && state=up || state=down
    echo "monitor: $state"
    running "$LAB/data_sync/data_sync.pid" && state=up || state=down
    echo "data_sync: $state"
    root_or postgres "$(pg_bin)/pg_ctl" -D "$LAB/postgres/data" status >/dev/null 2>&1 && state=up || state=down
    echo "postgresql: $state"
    running "$LAB/agent/pipemedic.pid" && state="up (dry-run)" || state=down
    echo "pipemedic: $state"
    flow || true
}

# Runs bin/SCRIPT of every canal server: a cursor only changes while none
# serves it (a standby takes over 5 s after the active one goes).
canal_all() {
    for n in $(seq 1 "${CANAL_SERVERS:-1}"); do "$(canal_home "$n")/bin/$1" >/dev/null; done
}

# Runbook failures, injected the way they happen.
break_item() {
    local item=${1:-}
    load_env "$(lab_dir "${2:-}")"
    case $item in
    N1) # canal dies hard (a crash): its pid file stays behind
        local pid
        pid=$(cat "$LAB/canal/bin/canal.pid")
        kill -KILL "$pid"
        echo "N1: canal server (pid $pid) killed; bin/canal.pid left behind"
        ;;
    N4) # binlogs purged past canal's cursor while canal is down
        # An insert, an update and a delete go with the purged binlogs: the
        # rows a rewind cannot bring back (a reconcile finds them; the keys
        # are kept in $LAB/N4.lost).
        local s=${sources[1]}
        canal_all stop.sh
        local upd del ins
        upd=$(mysql_sql "$s" "SELECT MIN(id) FROM trade.t_order")
        del=$(mysql_sql "$s" "SELECT MAX(id) FROM trade.t_order")
        ins=$(mysql_sql "$s" "UPDATE trade.t_order SET amount = amount + 100 WHERE id = $upd;
            DELETE FROM trade.t_order WHERE id = $del AND id <> $upd;
            INSERT INTO trade.t_order (user_id, amount) VALUES (4, 4.00); SELECT LAST_INSERT_ID(); FLUSH BINARY LOGS;")
        [ "$del" = "$upd" ] && del=
        printf 'source=%s\ninserted=%s\nupdated=%s\ndeleted=%s\n' "$s" "$ins" "$upd" "$del" >"$LAB/N4.lost"
        local last
        last=$(mysql_sql "$s" "SHOW MASTER STATUS" | cut -f1)
        purge_to "$s" "$last"
        canal_all startup.sh
        echo "N4: canal stopped, $s's binlogs purged up to $last (with them: inserted id $ins, updated id $upd${del:+, deleted id $del}), canal started"
        ;;
    N6) # the cursor points past the end of its binlog, MariaDB restarted
        local s=${sources[1]}
        canal_all stop.sh
        LAB_SOURCE=$s cursor_past_end
        restart_mysql "$s"
        canal_all startup.sh
        echo "N6: $s's cursor moved past the end of its binlog, MariaDB restarted, canal started"
        ;;
    C1) # two columns added in MySQL that PostgreSQL lacks
        # Not binlogged: canal 1.1.4 cannot decode MariaDB 10.11's ALTER
        # query event (Read Q_FLAGS2_CODE error) and would stop for good.
        # canal reads the new columns from the row event's table map.
        mysql_sql "${sources[0]}" "SET SESSION sql_log_bin = 0;
            ALTER TABLE trade.t_item_user ADD COLUMN review VARCHAR(255) NULL, ADD COLUMN score INT NULL;
            SET SESSION sql_log_bin = 1;
            INSERT INTO trade.t_item_user (user_id, item, review, score) VALUES (1, 'pen', 'fine', 7)"
        echo "C1: trade.t_item_user.review and .score added in ${sources[0]} only; a row written"
        ;;
    C2) # polls bigger than the consumer can process in max.poll.interval.ms
        # A slow downstream (30 ms a record) and a 10 s poll interval: a
        # poll of 500 records takes 15 s, so its commit fails, it is read
        # again, forever. A backlog waits in Kafka before data_sync starts,
        # so that every poll is full.
        local n=${LAB_C2_ROWS:-3000}
        sed -i -e 's/^max\.poll\.interval\.ms=.*/max.poll.interval.ms=10000/' "$LAB/data_sync/consumer.properties"
        slow_consumer_with_backlog "$n" 30
        echo "C2: data_sync takes 30 ms a record with max.poll.interval.ms=10000; a backlog of $n rows waits in Kafka"
        ;;
    C7) # a backlog: a burst of data the consumer takes minutes to work off
        # 40 ms a record, 5 minutes' poll interval: every poll finishes in
        # time (no commit failure), but the heartbeats wait behind the burst
        # (2000 rows a partition: 80 s).
        local n=${LAB_C7_ROWS:-6000}
        sed -i -e 's/^max\.poll\.interval\.ms=.*/max.poll.interval.ms=300000/' "$LAB/data_sync/consumer.properties"
        slow_consumer_with_backlog "$n" 40
        echo "C7: data_sync takes 40 ms a record; a backlog of $n rows waits in Kafka"
        ;;
    K1) # a broker whose own host name its hosts file does not map
        command -v unshare >/dev/null || die "K1 needs unshare: apt-get install -y util-linux"
        "$LAB/kafka/4/bin/kafka-server-start.sh" >/dev/null
        echo "K1: broker 4 started as host $K1_NAME, which $LAB/kafka/4/hosts (its /etc/hosts) does not map"
        ;;
    *)
        die "break what? N1, N4, N6, C1, C2, C7, K1"
        ;;
    esac
}

# Stops data_sync, makes it take DELAY_MS per record (the lab's knob for a
# slow downstream), lets ROWS new rows of the first source wait in Kafka,
# and starts data_sync again.
slow_consumer_with_backlog() { # ROWS DELAY_MS
    local props=$LAB/data_sync/consumer.properties n=$1
    "$LAB/data_sync/stop.sh" >/dev/null
    sed -i -e '/^sync\.record\.delay\.ms=/d' "$props"
    echo "sync.record.delay.ms=$2" >>"$props"
    mysql_sql "${sources[0]}" "INSERT INTO trade.t_order (user_id, amount) SELECT 2, 2.00 FROM trade.seq_1_to_$n"
    local deadline=$(($(date +%s) + 120))
    until [ "$(group_lag)" -ge "$n" ]; do
        [ "$(date +%s)" -ge "$deadline" ] && die "the backlog of $n rows did not reach Kafka in 120 s"
        sleep 1
    done
    "$LAB/data_sync/start.sh" >/dev/null
}

# PURGE BINARY LOGS TO, until it took: MariaDB skips a file a binlog dump
# thread still reads, and the thread of a just-stopped canal lingers.
purge_to() { # SOURCE FILE
    local deadline=$(($(date +%s) + 60))
    until mysql_sql "$1" "PURGE BINARY LOGS TO '$2'" && [ "$(mysql_sql "$1" "SHOW BINARY LOGS" | head -1 | cut -f1)" = "$2" ]; do
        [ "$(date +%s)" -ge "$deadline" ] && die "MariaDB $1 still keeps binlogs before $2"
        sleep 0.2
    done
}

restart_mysql() { # NAME
    local dir=$LAB/mysql/$1
    mariadb-admin --no-defaults -uroot --socket="$dir/mysqld.sock" shutdown
    while running "$dir/daemon.pid"; do sleep 0.2; done
    rm -f "$dir/daemon.pid"
    "$here/bin/daemon.sh" start "$dir/daemon.pid" "$dir/stdout.log" -- /usr/sbin/mariadbd --defaults-file="$dir/my.cnf" >/dev/null
    wait_for "MariaDB $1" 60 "$dir/error.log" mysql_sql "$1" "SELECT 1"
}

# Writes LAB_SOURCE's cursor as canal would, but with a position past the
# end of its current binlog (the state a crash leaves behind).
cursor_past_end() {
    local s=$LAB_SOURCE file size port_var="MYSQL_${LAB_SOURCE^^}_PORT" now
    read -r file size < <(mysql_sql "$s" "SHOW MASTER STATUS" | cut -f1,2)
    now=$(($(date +%s) * 1000))
    local json="{\"@type\":\"com.alibaba.otter.canal.protocol.position.LogPosition\",\"identity\":{\"slaveId\":-1,\"sourceAddress\":{\"address\":\"127.0.0.1\",\"port\":${!port_var}}},\"postion\":{\"gtid\":\"\",\"included\":false,\"journalName\":\"$file\",\"position\":$((size + 100000)),\"serverId\":2,\"timestamp\":$now}}"
    java -cp /usr/share/java/zookeeper.jar org.apache.zookeeper.ZooKeeperMain -server "127.0.0.1:$ZK_PORT" \
        set "/otter/canal/destinations/$s/1001/cursor" "$json" >"$LAB/zookeeper/cli.log" 2>&1
}

down() {
    local dir
    dir=$(lab_dir "${1:-}")
    load_env "$dir"
    local d=$here/bin/daemon.sh
    running "$LAB/agent/pipemedic.pid" && "$d" stop "$LAB/agent/pipemedic.pid" 60 >/dev/null
    "$d" stop "$LAB/heartbeat.pid" 10 >/dev/null || true
    "$d" stop "$LAB/monitor/monitor.pid" 60 >/dev/null || true
    "$d" stop "$LAB/data_sync/data_sync.pid" 60 >/dev/null || true
    for n in $(seq 1 "${CANAL_SERVERS:-1}"); do
        local home
        home=$(canal_home "$n")
        [ -x "$home/bin/stop.sh" ] && "$home/bin/stop.sh" >/dev/null || true
    done
    for id in 4 3 2 1; do
        [ -f "$LAB/kafka/$id/kafka.pid" ] && "$d" stop "$LAB/kafka/$id/kafka.pid" 120 >/dev/null || true
    done
    "$d" stop "$LAB/zookeeper/zookeeper.pid" 30 >/dev/null || true
    for s in "${sources[@]}"; do
        local sock=$LAB/mysql/$s/mysqld.sock
        [ -S "$sock" ] && mariadb-admin --no-defaults -uroot --socket="$sock" shutdown >/dev/null 2>&1 || true
        while running "$LAB/mysql/$s/daemon.pid"; do sleep 0.2; done
    done
    [ -d "$LAB/postgres/data" ] && root_or postgres "$(pg_bin)/pg_ctl" -D "$LAB/postgres/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$LAB"
    echo "lab down: $LAB removed"
}

# One of Kafka's own command-line tools (kafka-topics.sh and friends are
# thin wrappers around these classes).
kafka_tool() { # CLASS ARGS...
    local class=$1
    shift
    java -Xmx128m -XX:TieredStopAtLevel=1 -cp "$here/kafka/target/lib/*" "org.apache.kafka.tools.$class" "$@"
}

topics() {
    load_env "$(lab_dir "${1:-}")"
    kafka_tool TopicCommand --bootstrap-server "$BOOTSTRAP" --describe --topic TABLE_IX_TRADE_ALL_BASE
}

groups() {
    load_env "$(lab_dir "${1:-}")"
    kafka_tool consumer.group.ConsumerGroupCommand --bootstrap-server "$BOOTSTRAP" --describe --group bo_01
}

# bo_01's backlog: what it will still read. Per partition, from the log end
# (GetOffsetShell) back to what the group committed, or, where it never
# committed, to the log start, where the lab's auto.offset.reset=earliest
# makes it begin. Kafka's group tool alone does not tell: for a partition
# without a commit it prints "-" while the group runs, and while the group
# has no member (data_sync stopped for a break) it leaves such a partition
# out. A fresh lab has records in one partition only, so a backlog lands
# mostly where nothing was committed yet.
group_lag() {
    local topic=TABLE_IX_TRADE_ALL_BASE ends starts committed
    ends=$(kafka_tool GetOffsetShell --bootstrap-server "$BOOTSTRAP" --topic "$topic" --time -1 2>/dev/null)
    starts=$(kafka_tool GetOffsetShell --bootstrap-server "$BOOTSTRAP" --topic "$topic" --time -2 2>/dev/null)
    committed=$(kafka_tool consumer.group.ConsumerGroupCommand --bootstrap-server "$BOOTSTRAP" --describe --group bo_01 2>/dev/null |
        awk '$1 == "bo_01" && $4 ~ /^[0-9]+$/ { print $2 ":" $3 ":" $4 }')
    awk -F: -v starts="$starts" -v committed="$committed" '
        BEGIN {
            n = split(starts, l, "\n"); for (i = 1; i <= n; i++) if (split(l[i], f, ":") == 3) start[f[2]] = f[3]
            n = split(committed, l, "\n"); for (i = 1; i <= n; i++) if (split(l[i], f, ":") == 3) done[f[2]] = f[3]
        }
        NF == 3 && $3 ~ /^[0-9]+$/ { lag += $3 - (($2 in done) ? done[$2] : start[$2] + 0) }
        END { print lag + 0 }' <<<"$ends"
}

cmd=${1:-}
shift || true
case $cmd in
build) build ;;
up) up "$@" ;;
status) status "$@" ;;
break) break_item "$@" ;;
topics) topics "$@" ;;
groups) groups "$@" ;;
lag)
    load_env "$(lab_dir "${1:-}")"
    group_lag
    ;;
down) down "$@" ;;
*)
    sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
