//! Runbook C1 with real databases: a MariaDB source holding the table with
//! the column, two PostgreSQL target databases (trade_ix, admin) without it.

mod common;

use common::db::{MariaDb, Postgres};
use common::{Host, Options};

const MISSING_REVIEW: &str = "2026-11-25 10:00:00.001 [pool-2-thread-4] ERROR c.g.datasync.dao.BaseDao - sync failed\n\
org.postgresql.util.PSQLException: ERROR: column \"review\" of relation \"t_item_user\" does not exist\n\
\tat org.postgresql.core.v3.QueryExecutorImpl.receiveErrorResponse(QueryExecutorImpl.java:2440)\n";

struct Pipeline {
    host: Host,
    pg: Postgres,
    _mysql: MariaDb,
}

fn pipeline(lock_timeout_ms: u64) -> Pipeline {
    let mysql = MariaDb::start();
    mysql.sql(
        "CREATE DATABASE trade; \
         CREATE TABLE trade.t_item_user (id bigint(20) unsigned NOT NULL PRIMARY KEY, user_id int(11) NOT NULL, \
           review varchar(255) DEFAULT NULL, score decimal(12,4) NOT NULL DEFAULT '0.0000', flag tinyint(1) NOT NULL DEFAULT 0); \
         CREATE USER 'remed'@'127.0.0.1' IDENTIFIED BY 'pw'; GRANT SELECT ON trade.* TO 'remed'@'127.0.0.1';",
    );
    let pg = Postgres::start();
    for db in ["trade_ix", "admin"] {
        pg.create_db(db);
        pg.connect(db).batch_execute("CREATE TABLE t_item_user (id numeric(20,0) PRIMARY KEY, user_id integer NOT NULL); INSERT INTO t_item_user VALUES (1, 7)").unwrap();
    }
    let extra = format!(
        "\n[mysql.ix_trade]\nhost = \"127.0.0.1\"\nport = {mp}\nuser = \"remed\"\npassword_file = \"mysql.pw\"\nschemas = [\"trade\"]\n\
         \n[postgres.trade_ix]\nhost = \"127.0.0.1\"\nport = {pp}\nuser = \"postgres\"\ndbname = \"trade_ix\"\nlock_timeout_ms = {lock_timeout_ms}\n\
         \n[postgres.admin]\nhost = \"127.0.0.1\"\nport = {pp}\nuser = \"postgres\"\ndbname = \"admin\"\nlock_timeout_ms = {lock_timeout_ms}\n",
        mp = mysql.port,
        pp = pg.port,
    );
    let host = Host::new(Options { approvers: vec!["dba@example.com"], extra, ..Options::default() });
    std::fs::write(host.path("mysql.pw"), "pw\n").unwrap();
    Pipeline { host, pg, _mysql: mysql }
}

#[test]
fn c1_missing_column_is_added_to_both_databases_after_approval() {
    let mut p = pipeline(3000);
    p.host.start_agent();
    p.host.append("logs/error.log", MISSING_REVIEW);
    let d = p.host.wait_decision("c1_schema_drift", 1);
    assert_eq!(d["decision"], "awaiting-approval", "{d:#}");
    let preview = d["steps"][0]["preview"].as_str().unwrap();
    assert!(
        preview
            .contains("trade.t_item_user.review: varchar(255) NULL DEFAULT NULL -> PostgreSQL character varying(255)"),
        "{preview}"
    );
    for db in ["trade_ix", "admin"] {
        assert!(
            preview.contains(&format!("[{db} / {db}] BEGIN; SET LOCAL lock_timeout = '3000ms'; ALTER TABLE \"public\".\"t_item_user\" ADD COLUMN IF NOT EXISTS \"review\" character varying(255); COMMIT;")),
            "{preview}"
        );
    }
    let mail = p.host.wait_mails(1).remove(0);
    assert!(
        mail.text.contains("ALTER TABLE \"public\".\"t_item_user\" ADD COLUMN IF NOT EXISTS \"review\""),
        "the SQL is in the mail"
    );
    assert_eq!(p.pg.column_type("trade_ix", "t_item_user", "review"), None, "nothing before approval");

    p.host.approve(&mail);
    let applied = p.host.wait_decision("c1_schema_drift", 2);
    assert_eq!(applied["decision"], "applied", "{applied:#}");
    assert!(applied["steps"][0]["result"].as_str().unwrap().contains("admin: added; trade_ix: added"), "{applied:#}");
    for db in ["trade_ix", "admin"] {
        assert_eq!(p.pg.column_type(db, "t_item_user", "review").as_deref(), Some("character varying(255)"), "{db}");
    }

    // The consumer's error again (a retry already in the log): nothing to do.
    p.host.append("logs/error.log", MISSING_REVIEW);
    let again = p.host.wait_decision("c1_schema_drift", 3);
    assert_eq!(again["decision"], "no-change", "{again:#}");
    assert_eq!(p.host.mails().len(), 1, "no second request");
    p.host.stop_agent();
}

#[test]
fn c1_busy_table_times_out_cleanly_and_the_approval_is_reported_failed() {
    let mut p = pipeline(500);
    p.host.start_agent();
    p.host.append("logs/error.log", MISSING_REVIEW);
    let mail = p.host.wait_mails(1).remove(0);
    // The live consumer is in the middle of a batch on trade_ix.
    let mut consumer = p.pg.connect("trade_ix");
    let mut batch = consumer.transaction().unwrap();
    batch.execute("UPDATE t_item_user SET user_id = 8 WHERE id = 1", &[]).unwrap();

    let started = std::time::Instant::now();
    p.host.approve(&mail);
    let d = p.host.wait_decision("c1_schema_drift", 2);
    assert_eq!(d["decision"], "failed", "{d:#}");
    let reason = d["reason"].as_str().unwrap();
    assert!(reason.contains("trade_ix: FAILED") && reason.contains("55P03"), "{reason}");
    assert!(reason.contains("admin: added"), "each database in its own transaction: {reason}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "not hung");
    batch.rollback().unwrap();
    assert_eq!(p.pg.column_type("trade_ix", "t_item_user", "review"), None);
    let approvals = p.host.audit_of_kind("approval-decided");
    assert_eq!(approvals.len(), 1);
    let state = std::fs::read_to_string(
        std::fs::read_dir(p.host.path("state/approvals")).unwrap().flatten().next().unwrap().path(),
    )
    .unwrap();
    assert!(state.contains("\"state\": \"failed\""), "{state}");
    p.host.stop_agent();
}

#[test]
fn c1_hostile_identifiers_are_refused_and_nothing_is_asked() {
    let mut p = pipeline(3000);
    p.host.start_agent();
    p.host.append(
        "logs/error.log",
        "2026-11-25 10:00:00.001 [pool-2-thread-4] ERROR x - sync failed\n\
         org.postgresql.util.PSQLException: ERROR: column \"review\" of relation \"t_item_user;DROP TABLE t_item_user\" does not exist\n",
    );
    let d = p.host.wait_decision("c1_schema_drift", 1);
    assert_eq!(d["decision"], "refused", "{d:#}");
    assert!(d["reason"].as_str().unwrap().contains("SQL identifier"), "{d:#}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(p.host.mails().is_empty());
    p.host.stop_agent();
}

#[test]
fn c1_missing_table_is_reported_never_created() {
    let mut p = pipeline(3000);
    p.host.start_agent();
    p.host.append(
        "logs/error.log",
        "2026-11-25 10:00:00.001 [pool-2-thread-4] ERROR x - sync failed\n\
         org.postgresql.util.PSQLException: ERROR: relation \"t_new_table\" does not exist\n",
    );
    let d = p.host.wait_decision("c1_schema_drift", 1);
    assert_eq!(d["decision"], "applied", "{d:#}");
    assert_eq!(d["steps"][0]["action"], "notify");
    let mail = p.host.wait_mails(1).remove(0);
    assert_eq!(mail.to, ["oncall@example.com"]);
    assert!(mail.text.contains("never creates tables"));
    let exists: bool =
        p.pg.connect("trade_ix").query_one("SELECT to_regclass('t_new_table') IS NOT NULL", &[]).unwrap().get(0);
    assert!(!exists);
    p.host.stop_agent();
}

/// The server names only the column: the table is the one the failed
/// statement writes, never a word from a row value printed before it.
#[test]
fn c1_the_table_comes_from_the_failed_statement_never_from_a_row_value() {
    let mut p = pipeline(3000);
    for db in ["trade_ix", "admin"] {
        p.pg.connect(db).batch_execute("CREATE TABLE t_admin (id integer PRIMARY KEY)").unwrap();
    }
    p.host.start_agent();
    p.host.append(
        "logs/error.log",
        "2026-11-25 10:00:00.001 [pool-2-thread-4] ERROR c.g.datasync.dao.BaseDao - sync failed for row {id=2, note=please update t_admin soon}\n\
         java.sql.BatchUpdateException: Batch entry 0 INSERT INTO \"T_Item_User\" (id, user_id, review) VALUES (2, 7, 'please update t_admin soon') \
         ON CONFLICT (id) DO UPDATE SET review = EXCLUDED.review was aborted: ERROR: column \"review\" does not exist\n",
    );
    let d = p.host.wait_decision("c1_schema_drift", 1);
    // Quoted, so PostgreSQL reads "T_Item_User" exactly: no such table
    // here, and the preview says so rather than touching t_admin.
    assert_ne!(d["decision"], "awaiting-approval", "{d:#}");
    assert!(!d.to_string().contains("t_admin.review"), "{d:#}");
    assert!(
        d["reason"].as_str().unwrap().contains("no configured MySQL source has a column T_Item_User.review"),
        "{d:#}"
    );

    p.host.append(
        "logs/error.log",
        "2026-11-25 10:00:01.001 [pool-2-thread-4] ERROR c.g.datasync.dao.BaseDao - sync failed for row {id=2, note=please update t_admin soon}\n\
         java.sql.BatchUpdateException: Batch entry 0 INSERT INTO T_Item_User (id, user_id, review) VALUES (2, 7, 'please update t_admin soon') \
         was aborted: ERROR: column \"review\" does not exist\n",
    );
    let d = p.host.wait_decision("c1_schema_drift", 2);
    assert_eq!(d["decision"], "awaiting-approval", "{d:#}");
    assert_eq!(d["steps"][0]["target"], "t_item_user.review", "unquoted: folded to lower case; {d:#}");

    // A schema the targets do not sync is not this pipeline's table.
    p.host.append(
        "logs/error.log",
        "2026-11-25 10:00:02.001 [pool-2-thread-4] ERROR c.g.datasync.dao.BaseDao - sync failed\n\
         org.apache.ibatis.exceptions.PersistenceException: \n\
         ### Error updating database.  Cause: org.postgresql.util.PSQLException: ERROR: column \"memo\" does not exist\n\
         ### SQL: update audit.t_item_user set memo = ? where id = ?\n",
    );
    let d = p.host.wait_decision("c1_schema_drift", 3);
    assert_ne!(d["decision"], "awaiting-approval", "{d:#}");
    assert!(d["reason"].as_str().unwrap_or("").contains("not a table this pipeline syncs"), "{d:#}");
    for db in ["trade_ix", "admin"] {
        assert_eq!(p.pg.column_type(db, "t_admin", "review"), None, "{db}");
    }
    p.host.stop_agent();
}
