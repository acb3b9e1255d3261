//! `pipemedic reconcile` against a real MariaDB source and real PostgreSQL
//! targets: every type of the C1 mapping, NULL against empty, composite
//! keys, keys with gaps, sources sharing a target table, empty and missing
//! tables, keys that differ between the catalogues, hostile names, and rows
//! in flight. The agent's users can only SELECT.

mod common;

use std::process::{Command, Output};

use common::db::{MariaDb, Postgres};
use serde_json::Value;

struct Dbs {
    mysql: MariaDb,
    pg: Postgres,
    dir: tempfile::TempDir,
}

/// A source server holding schemas `trade` and `admin` (two `[mysql.*]`
/// sources), and a PostgreSQL cluster with `trade_ix` and `admin`; the
/// agent's users may only read.
fn dbs() -> Dbs {
    let mysql = MariaDb::start();
    mysql.sql(
        "CREATE DATABASE trade CHARACTER SET utf8mb4; CREATE DATABASE admin CHARACTER SET utf8mb4; \
         CREATE USER 'remed'@'127.0.0.1' IDENTIFIED BY 'pw'; \
         GRANT SELECT ON trade.* TO 'remed'@'127.0.0.1'; GRANT SELECT ON admin.* TO 'remed'@'127.0.0.1';",
    );
    let pg = Postgres::start();
    pg.connect("postgres").batch_execute("CREATE ROLE reader LOGIN").unwrap();
    for db in ["trade_ix", "admin"] {
        pg.create_db(db);
        pg.connect(db)
            .batch_execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO reader")
            .unwrap();
    }
    Dbs { mysql, pg, dir: tempfile::tempdir().unwrap() }
}

impl Dbs {
    fn pg_sql(&self, db: &str, sql: &str) {
        self.pg.connect(db).batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn both_pg(&self, sql: &str) {
        for db in ["trade_ix", "admin"] {
            self.pg_sql(db, sql);
        }
    }

    /// Writes the configuration with these `[reconcile]` lines.
    fn config(&self, reconcile: &str) -> std::path::PathBuf {
        let dir = self.dir.path();
        std::fs::write(dir.join("mysql.pw"), "pw\n").unwrap();
        let (mp, pp) = (self.mysql.port, self.pg.port);
        let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");
        let text = format!(
            "state_dir = \"state\"\nrule_dirs = [\"{rules}\"]\n\
             \n[mysql.ix_trade]\nhost = \"127.0.0.1\"\nport = {mp}\nuser = \"remed\"\npassword_file = \"mysql.pw\"\nschemas = [\"trade\"]\n\
             \n[mysql.ix_admin]\nhost = \"127.0.0.1\"\nport = {mp}\nuser = \"remed\"\npassword_file = \"mysql.pw\"\nschemas = [\"admin\"]\n\
             \n[postgres.trade_ix]\nhost = \"127.0.0.1\"\nport = {pp}\nuser = \"reader\"\ndbname = \"trade_ix\"\n\
             \n[postgres.admin]\nhost = \"127.0.0.1\"\nport = {pp}\nuser = \"reader\"\ndbname = \"admin\"\n\
             \n[reconcile]\n{reconcile}\n"
        );
        let path = dir.join("pipemedic.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn reconcile(&self, reconcile: &str, args: &[&str]) -> (i32, Value, Output) {
        let config = self.config(reconcile);
        let out = Command::new(common::BIN)
            .args(["reconcile", "--format", "json", "--recheck-after", "0", "--config"])
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        // Shown when a test fails.
        eprintln!("pipemedic reconcile {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), json, out)
    }
}

fn table<'a>(report: &'a Value, table: &str, source: &str, target: &str) -> &'a Value {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table && t["source"] == source && t["target"] == target)
        .unwrap_or_else(|| panic!("no {table} {source} {target} in {report:#}"))
}

fn keys(t: &Value, kind: &str) -> Vec<String> {
    t[kind]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect::<Vec<_>>().join("/"))
        .collect()
}

const MYSQL_TYPES: &str = "CREATE TABLE trade.t_types (id BIGINT PRIMARY KEY, \
    i_tiny TINYINT, i_small SMALLINT UNSIGNED, i_med MEDIUMINT, i_int INT UNSIGNED, i_big BIGINT UNSIGNED, \
    flag TINYINT(1), b1 BIT(1), b5 BIT(5), amount DECIMAL(12,4), whole DECIMAL(10,0), \
    code CHAR(8), name VARCHAR(64), note TEXT, kind ENUM('a','b'), tags SET('x','y'), \
    raw VARBINARY(16), blobby BLOB, d DATE, y YEAR, dt DATETIME(3), ts TIMESTAMP(6) NULL DEFAULT NULL, t TIME(2), \
    ratio DOUBLE, doc JSON)";

const PG_TYPES: &str = "CREATE TABLE t_types (id bigint PRIMARY KEY, \
    i_tiny smallint, i_small integer, i_med integer, i_int bigint, i_big numeric(20,0), \
    flag smallint, b1 boolean, b5 bit(5), amount numeric(12,4), whole numeric(10,0), \
    code character(8), name character varying(64), note text, kind text, tags text, \
    raw bytea, blobby bytea, d date, y smallint, dt timestamp(3), ts timestamp(6), t time(2), \
    ratio double precision, doc jsonb)";

const MYSQL_ROWS: &str = "INSERT INTO trade.t_types (id) VALUES (1); \
    INSERT INTO trade.t_types VALUES (2, 0, 0, 0, 0, 0, 0, b'0', b'00000', 0, 0, '', '', '', 'a', '', '', '', \
      '1000-01-01', 1901, '1000-01-01 00:00:00.000', '1970-01-02 00:00:00', '00:00:00', 0, '{}'); \
    INSERT INTO trade.t_types VALUES (3, -128, 65535, -8388608, 4294967295, 18446744073709551615, 1, b'1', b'10101', \
      -12345678.1234, 9999999999, 'abc', 'héllo wörld ✓ 漢字', 'line\\nbreak\\ttab', 'b', 'x,y', 0x00FF10, 0xDEADBEEF, \
      '9999-12-31', 2155, '2026-12-03 14:15:16.789', '2038-01-19 03:14:07.999999', '23:59:59.99', 0.1, '{\"a\": 1}');";

const PG_ROWS: &str = "INSERT INTO t_types (id) VALUES (1); \
    INSERT INTO t_types VALUES (2, 0, 0, 0, 0, 0, 0, false, B'00000', 0, 0, '', '', '', 'a', '', '', '', \
      '1000-01-01', 1901, '1000-01-01 00:00:00.000', '1970-01-02 00:00:00', '00:00:00', 0, '{}'); \
    INSERT INTO t_types VALUES (3, -128, 65535, -8388608, 4294967295, 18446744073709551615, 1, true, B'10101', \
      -12345678.1234, 9999999999, 'abc', 'héllo wörld ✓ 漢字', E'line\\nbreak\\ttab', 'b', 'x,y', '\\x00ff10', '\\xdeadbeef', \
      '9999-12-31', 2155, '2026-12-03 14:15:16.789', '2038-01-19 03:14:07.999999', '23:59:59.99', 0.1, '{\"a\": 1}');";

#[test]
fn every_type_of_the_c1_mapping_compares_exactly_and_each_difference_is_found() {
    let db = dbs();
    db.mysql.sql(&format!("SET NAMES utf8mb4; {MYSQL_TYPES}; {MYSQL_ROWS}"));
    db.both_pg(&format!("{PG_TYPES}; {PG_ROWS}"));
    let cfg = "recheck_after_secs = 0\n[reconcile.tables.t_types]\nsources = [\"ix_trade\"]\n";

    let (code, report, out) = db.reconcile(cfg, &[]);
    assert_eq!(code, 0, "{report:#}\n{}", String::from_utf8_lossy(&out.stderr));
    let t = table(&report, "t_types", "ix_trade", "trade_ix");
    assert_eq!(t["source_rows"], 3);
    let columns: Vec<&str> = t["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(columns.len(), 23, "every column but the float and the json: {columns:?}");
    let left_out: Vec<&str> = t["left_out"].as_array().unwrap().iter().map(|c| c["column"].as_str().unwrap()).collect();
    assert_eq!(left_out, ["ratio", "doc"], "{t:#}");

    // NULL against empty, a trailing space, a millisecond, a bit, a byte:
    // each is a difference, and only those rows are named.
    db.pg_sql(
        "trade_ix",
        "UPDATE t_types SET note = '' WHERE id = 1; UPDATE t_types SET name = name || ' ' WHERE id = 3; \
                          DELETE FROM t_types WHERE id = 2; INSERT INTO t_types (id) VALUES (99)",
    );
    db.pg_sql("admin", "UPDATE t_types SET dt = dt + interval '1 millisecond' WHERE id = 2; UPDATE t_types SET raw = '\\x00ff11' WHERE id = 3");
    let (code, report, _) = db.reconcile(cfg, &[]);
    assert_eq!(code, 1, "{report:#}");
    let t = table(&report, "t_types", "ix_trade", "trade_ix");
    assert_eq!(
        (keys(t, "missing"), keys(t, "extra"), keys(t, "differing")),
        (vec!["2".into()], vec!["99".into()], vec!["1".to_string(), "3".into()]),
        "{t:#}"
    );
    let a = table(&report, "t_types", "ix_trade", "admin");
    assert_eq!(
        (keys(a, "missing"), keys(a, "extra"), keys(a, "differing")),
        (vec![], vec![], vec!["2".to_string(), "3".into()]),
        "{a:#}"
    );

    // The text report says the same for a person.
    let config = db.config(cfg);
    let out = Command::new(common::BIN)
        .args(["reconcile", "--recheck-after", "0", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "t_types [ix_trade] → [trade_ix]: DIFFER: 1 missing in the target, 1 extra in the target, 2 differing"
        ),
        "{text}"
    );
    assert!(text.contains("  missing: (id=2)") && text.contains("  differing: (id=1), (id=3)"), "{text}");
    assert!(text.contains("column ratio left out: double is floating point"), "{text}");
    assert!(text.contains("reconcile: 2 compared: 0 equal, 2 differ (6 rows), 0 not compared"), "{text}");
}

#[test]
fn sources_sharing_a_target_table_composite_keys_and_keys_with_gaps() {
    let db = dbs();
    // Two sources write one target table keyed (source, id); ids with large
    // gaps, enough rows for several levels of segments.
    for schema in ["trade", "admin"] {
        db.mysql.sql(&format!(
            "CREATE TABLE {schema}.t_order (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, amount DECIMAL(12,2) NOT NULL, created_at DATETIME(3) NOT NULL); \
             INSERT INTO {schema}.t_order SELECT seq * 7 + IF(seq > 2500, 1000000000, 0), seq % 97, seq / 100, '2026-12-01 00:00:00' + INTERVAL seq SECOND FROM {schema}.seq_1_to_5000; \
             CREATE TABLE {schema}.t_line (order_no VARCHAR(20), line INT, item VARCHAR(64), PRIMARY KEY (order_no, line)); \
             INSERT INTO {schema}.t_line SELECT CONCAT('SO-', seq DIV 3), seq % 3, CONCAT('item ', seq) FROM {schema}.seq_1_to_3000;"
        ));
    }
    db.both_pg(
        "CREATE TABLE t_order (source text, id bigint, user_id bigint, amount numeric(12,2), created_at timestamp(3), PRIMARY KEY (source, id)); \
         CREATE TABLE t_line (source text, order_no character varying(20), line integer, item character varying(64), PRIMARY KEY (source, order_no, line));",
    );
    for source in ["ix_trade", "ix_admin"] {
        db.both_pg(&format!(
            "INSERT INTO t_order SELECT '{source}', n * 7 + CASE WHEN n > 2500 THEN 1000000000 ELSE 0 END, n % 97, round(n / 100.0, 2), timestamp '2026-12-01' + n * interval '1 second' FROM generate_series(1, 5000) n; \
             INSERT INTO t_line SELECT '{source}', 'SO-' || (n / 3), n % 3, 'item ' || n FROM generate_series(1, 3000) n;"
        ));
    }
    let cfg = "[reconcile.tables.t_order]\nsource_column = \"source\"\n[reconcile.tables.t_line]\nsource_column = \"source\"\n";
    let (code, report, out) = db.reconcile(cfg, &[]);
    assert_eq!(code, 0, "{report:#}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(report["tables"].as_array().unwrap().len(), 8, "2 tables × 2 sources × 2 targets");
    let t = table(&report, "t_line", "ix_admin", "admin");
    assert_eq!(
        (t["source_rows"].as_i64(), t["target_rows"].as_i64()),
        (Some(3000), Some(3000)),
        "only this source's rows: {t:#}"
    );

    // Scattered differences in one source's rows of one target; the other
    // source's rows there, and the other target, stay equal.
    db.mysql.sql("DELETE FROM trade.t_order WHERE id IN (14, 1000017507); UPDATE trade.t_order SET amount = amount + 1 WHERE id = 7007; \
                  UPDATE trade.t_line SET item = 'changed' WHERE order_no = 'SO-500' AND line = 1; DELETE FROM trade.t_line WHERE order_no = 'SO-999';");
    db.pg_sql("trade_ix", "INSERT INTO t_order VALUES ('ix_trade', 3, 1, 1.00, now()); DELETE FROM t_order WHERE source = 'ix_trade' AND id = 1000035000; \
                           UPDATE t_line SET item = 'changed' WHERE source = 'ix_trade' AND order_no = 'SO-500' AND line = 1;");
    db.pg_sql(
        "admin",
        "UPDATE t_order SET amount = 0 WHERE source = 'ix_trade' AND id = 7007; \
                        UPDATE t_order SET user_id = -1 WHERE source = 'ix_admin' AND id = 21;",
    );
    let (code, report, _) = db.reconcile(cfg, &[]);
    assert_eq!(code, 1, "{report:#}");
    let t = table(&report, "t_order", "ix_trade", "trade_ix");
    assert_eq!(keys(t, "missing"), ["1000035000"], "{t:#}");
    assert_eq!(keys(t, "extra"), ["3", "14", "1000017507"], "{t:#}");
    assert_eq!(keys(t, "differing"), ["7007"], "{t:#}");
    let t = table(&report, "t_order", "ix_trade", "admin");
    assert_eq!(
        (keys(t, "missing"), keys(t, "extra"), keys(t, "differing")),
        (vec![], vec!["14".to_string(), "1000017507".into()], vec!["7007".to_string()]),
        "amount+1 in MySQL, 0 here: {t:#}"
    );
    let t = table(&report, "t_order", "ix_admin", "admin");
    assert_eq!(keys(t, "differing"), ["21"], "{t:#}");
    assert!(
        table(&report, "t_order", "ix_admin", "trade_ix")["counts"]
            == serde_json::json!({"missing": 0, "extra": 0, "differing": 0})
    );
    let t = table(&report, "t_line", "ix_trade", "trade_ix");
    assert_eq!(
        (keys(t, "missing"), keys(t, "extra"), keys(t, "differing")),
        (vec![], vec!["SO-999/0".to_string(), "SO-999/1".into(), "SO-999/2".into()], vec![]),
        "{t:#}"
    );
    let t = table(&report, "t_line", "ix_trade", "admin");
    assert_eq!(keys(t, "differing"), ["SO-500/1"], "{t:#}");
    assert_eq!(keys(t, "extra").len(), 3, "{t:#}");

    // Keys spread over the whole signed 64-bit range: cut by hash, still exact.
    db.mysql.sql(
        "INSERT INTO admin.t_order VALUES (-9223372036854775808, 1, 1, NOW()), (9223372036854775807, 1, 1, NOW());",
    );
    db.pg_sql("admin", "INSERT INTO t_order VALUES ('ix_admin', -9223372036854775808, 1, 1, now());");
    let (_, report, _) = db.reconcile(cfg, &["--table", "t_order"]);
    let t = table(&report, "t_order", "ix_admin", "admin");
    assert!(t["error"].is_null(), "{t:#}");
    assert_eq!(keys(t, "missing"), ["9223372036854775807"], "{t:#}");
    assert_eq!(keys(t, "differing"), ["-9223372036854775808", "21"], "{t:#}");

    // --table limits the run to that entry.
    let (_, report, _) = db.reconcile(cfg, &["--table", "t_line"]);
    assert!(report["tables"].as_array().unwrap().iter().all(|t| t["table"] == "t_line"), "{report:#}");
}

#[test]
fn tables_that_cannot_be_compared_are_named_and_the_others_still_run() {
    let db = dbs();
    db.mysql.sql(
        "CREATE TABLE trade.t_empty (id INT PRIMARY KEY, v VARCHAR(8)); \
         CREATE TABLE trade.t_only_mysql (id INT PRIMARY KEY); \
         CREATE TABLE trade.t_keyed (id INT PRIMARY KEY, user_id INT NOT NULL); \
         CREATE TABLE trade.t_weird (id INT PRIMARY KEY, `we\"ird` INT, plain INT); INSERT INTO trade.t_weird VALUES (1, 1, 1);",
    );
    db.both_pg(
        "CREATE TABLE t_empty (id integer PRIMARY KEY, v character varying(8)); \
         CREATE TABLE t_keyed (id integer, user_id integer, PRIMARY KEY (id, user_id)); \
         CREATE TABLE t_weird (id integer PRIMARY KEY, \"we\"\"ird\" integer, plain integer); INSERT INTO t_weird VALUES (1, 2, 1);",
    );
    let cfg = "[reconcile.tables.t_empty]\nsources = [\"ix_trade\"]\n[reconcile.tables.t_only_mysql]\nsources = [\"ix_trade\"]\n\
               [reconcile.tables.t_keyed]\nsources = [\"ix_trade\"]\n[reconcile.tables.t_weird]\nsources = [\"ix_trade\"]\n";
    let (code, report, _) = db.reconcile(cfg, &[]);
    assert_eq!(code, 2, "{report:#}");
    let t = table(&report, "t_empty", "ix_trade", "trade_ix");
    assert!(t["error"].is_null() && t["source_rows"] == 0, "{t:#}");
    let e = table(&report, "t_only_mysql", "ix_trade", "admin")["error"].as_str().unwrap().to_string();
    assert!(e.contains("PostgreSQL [admin] has no table public.t_only_mysql"), "{e}");
    let e = table(&report, "t_keyed", "ix_trade", "trade_ix")["error"].as_str().unwrap().to_string();
    assert!(e.contains("the key differs between the catalogues: MySQL (id), PostgreSQL (id, user_id)"), "{e}");
    let t = table(&report, "t_weird", "ix_trade", "trade_ix");
    assert_eq!(
        t["left_out"][0]["column"], "we\"ird",
        "a catalogue's name that is no plain identifier never reaches SQL: {t:#}"
    );
    assert!(t["error"].is_null() && t["counts"]["differing"] == 0, "{t:#}");

    // The key named in the configuration settles it.
    let (_, report, _) = db.reconcile("[reconcile.tables.t_keyed]\nsources = [\"ix_trade\"]\nkey = [\"id\"]\n", &[]);
    assert!(table(&report, "t_keyed", "ix_trade", "trade_ix")["error"].is_null(), "{report:#}");
}

#[test]
fn hostile_names_in_the_configuration_are_refused_before_any_query() {
    let db = dbs();
    for (bad, what) in [
        ("[reconcile.tables.t]\ntable = \"t; DROP TABLE t\"\n", "SQL identifier"),
        ("[reconcile.tables.t]\nsource_column = \"source\\\" OR 1=1 --\"\n", "SQL identifier"),
        ("[reconcile.tables.t]\nkey = [\"id`\"]\n", "SQL identifier"),
        ("[reconcile.tables.\"x;y\"]\n", "reconcile table"),
        ("[reconcile.tables.\"../../etc/x\"]\ntable = \"t\"\n", "reconcile table"),
        ("[reconcile.tables.t]\nsources = [\"nowhere\"]\n", "no [mysql.nowhere]"),
        ("[reconcile.tables.t]\ntargets = [\"nowhere\"]\n", "no [postgres.nowhere]"),
    ] {
        let (code, _, out) = db.reconcile(bad, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code, 2, "{bad}: {stderr}");
        assert!(stderr.contains(what) && stderr.contains("pipemedic.toml"), "{bad}: {stderr}");
    }
}

#[test]
fn rows_in_flight_are_not_reported_as_lost() {
    let db = dbs();
    db.mysql.sql(
        "CREATE TABLE trade.t_order (id BIGINT PRIMARY KEY, amount DECIMAL(12,2), updated_at DATETIME(3) NOT NULL); \
         INSERT INTO trade.t_order VALUES (1, 1.00, '2026-12-01 10:00:00'), (2, 2.00, '2026-12-01 11:00:00'), (3, 3.00, '2026-12-02 10:00:00');",
    );
    db.both_pg("CREATE TABLE t_order (id bigint PRIMARY KEY, amount numeric(12,2), updated_at timestamp(3)); \
                INSERT INTO t_order VALUES (1, 1.00, '2026-12-01 10:00:00'), (2, 2.00, '2026-12-01 11:00:00'), (3, 3.00, '2026-12-02 10:00:00');");
    let cfg =
        "min_age_secs = 3600\n[reconcile.tables.t_order]\nsources = [\"ix_trade\"]\nchange_column = \"updated_at\"\n";
    // Just written in the source, not yet in the targets: in flight.
    db.mysql.sql("INSERT INTO trade.t_order VALUES (4, 4.00, NOW(3)); UPDATE trade.t_order SET amount = 9, updated_at = NOW(3) WHERE id = 2;");
    let (code, report, _) = db.reconcile(cfg, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(table(&report, "t_order", "ix_trade", "trade_ix")["in_flight"], 2, "{report:#}");

    // An old change the targets never got is lost, whatever the window.
    db.mysql.sql("UPDATE trade.t_order SET amount = 7 WHERE id = 1");
    let (code, report, _) = db.reconcile(cfg, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(keys(table(&report, "t_order", "ix_trade", "admin"), "differing"), ["1"]);
    // The window on the change column: only rows changed in it.
    let (code, report, _) = db.reconcile(cfg, &["--since", "2026-12-02", "--until", "2026-12-03"]);
    assert_eq!(code, 0, "row 1 changed before the window: {report:#}");
    let (code, _, _) = db.reconcile(cfg, &["--since", "2026-12-01 09:00", "--until", "2026-12-01 10:30"]);
    assert_eq!(code, 1);
    // A window needs the change column.
    let (code, _, out) =
        db.reconcile("[reconcile.tables.t_order]\nsources = [\"ix_trade\"]\n", &["--since", "2026-12-02"]);
    assert_eq!(code, 2);
    assert!(String::from_utf8_lossy(&out.stdout).contains("need a change_column"));
}

#[test]
fn a_difference_the_pipeline_heals_within_its_lag_is_in_flight() {
    let db = dbs();
    db.mysql.sql("CREATE TABLE trade.t_order (id BIGINT PRIMARY KEY, amount DECIMAL(12,2)); INSERT INTO trade.t_order VALUES (1, 1.00), (2, 2.00);");
    db.both_pg(
        "CREATE TABLE t_order (id bigint PRIMARY KEY, amount numeric(12,2)); INSERT INTO t_order VALUES (1, 1.00);",
    );
    let config = db.config("[reconcile.tables.t_order]\nsources = [\"ix_trade\"]\ntargets = [\"trade_ix\"]\n");
    let child = Command::new(common::BIN)
        .args(["reconcile", "--format", "json", "--recheck-after", "5", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the first pass has read the rows (its last query is the leaf's,
    // by key range), the "consumer" catches up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut watch = db.pg.connect("postgres");
    loop {
        let seen = watch
            .query(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = 'pipemedic' AND query LIKE '%BETWEEN%'",
                &[],
            )
            .unwrap();
        if !seen.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the first pass never read the rows");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    db.pg_sql("trade_ix", "INSERT INTO t_order VALUES (2, 2.00)");
    let out = child.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(table(&report, "t_order", "ix_trade", "trade_ix")["in_flight"], 1, "{report:#}");
}
