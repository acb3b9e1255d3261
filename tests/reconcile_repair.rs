//! Repairing what a reconcile found, through the running agent and the
//! approval mails (runbook N3/N4/N6: the rows a fix that skipped binlog
//! lost): upserts with one approver, deletes with two, rows read again from
//! the source when written, old rows kept, dry-run writing nothing.

mod common;

use std::process::Command;

use common::db::{MariaDb, Postgres};
use common::{Host, Options};

struct Setup {
    host: Host,
    mysql: MariaDb,
    pg: Postgres,
}

fn setup(dry_run: bool) -> Setup {
    let mysql = MariaDb::start();
    mysql.sql(
        "CREATE DATABASE trade CHARACTER SET utf8mb4; \
         CREATE TABLE trade.t_order (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, amount DECIMAL(12,2) NOT NULL, \
           note VARCHAR(64), raw VARBINARY(8), ratio DOUBLE, created_at DATETIME(3) NOT NULL); \
         INSERT INTO trade.t_order SELECT seq, seq % 7, seq * 1.5, IF(seq % 5 = 0, NULL, CONCAT('n', seq)), UNHEX('00FF'), seq / 3, \
           '2026-12-01 00:00:00.123' + INTERVAL seq MINUTE FROM trade.seq_1_to_50; \
         CREATE USER 'remed'@'127.0.0.1' IDENTIFIED BY 'pw'; GRANT SELECT ON trade.* TO 'remed'@'127.0.0.1';",
    );
    let pg = Postgres::start();
    for db in ["trade_ix", "admin"] {
        pg.create_db(db);
        pg.connect(db)
            .batch_execute(
                "CREATE TABLE t_order (source text, id bigint, user_id bigint, amount numeric(12,2), note character varying(64), \
                   raw bytea, ratio double precision, created_at timestamp(3), PRIMARY KEY (source, id)); \
                 INSERT INTO t_order SELECT 'ix_trade', n, n % 7, n * 1.5, CASE WHEN n % 5 = 0 THEN NULL ELSE 'n' || n END, '\\x00ff', n / 3.0, \
                   timestamp '2026-12-01 00:00:00.123' + n * interval '1 minute' FROM generate_series(1, 50) n; \
                 INSERT INTO t_order VALUES ('ix_other', 3, 0, 0, 'another source''s row', NULL, NULL, now());",
            )
            .unwrap();
    }
    let extra = format!(
        "\n[mysql.ix_trade]\nhost = \"127.0.0.1\"\nport = {mp}\nuser = \"remed\"\npassword_file = \"mysql.pw\"\nschemas = [\"trade\"]\n\
         \n[postgres.trade_ix]\nhost = \"127.0.0.1\"\nport = {pp}\nuser = \"postgres\"\ndbname = \"trade_ix\"\n\
         \n[postgres.admin]\nhost = \"127.0.0.1\"\nport = {pp}\nuser = \"postgres\"\ndbname = \"admin\"\n\
         \n[reconcile]\nrecheck_after_secs = 0\n[reconcile.tables.t_order]\nsource_column = \"source\"\n",
        mp = mysql.port,
        pp = pg.port,
    );
    let host = Host::new(Options {
        dry_run,
        approvers: vec!["dba@example.com", "lead@example.com"],
        extra,
        ..Options::default()
    });
    std::fs::write(host.path("mysql.pw"), "pw\n").unwrap();
    Setup { host, mysql, pg }
}

impl Setup {
    fn reconcile(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(common::BIN)
            .args(["reconcile", "--config", self.host.config().to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), said)
    }

    fn rows(&self, db: &str) -> Vec<String> {
        self.pg
            .connect(db)
            .query("SELECT id::text || ' ' || amount::text || ' ' || coalesce(note, 'NULL') FROM t_order WHERE source = 'ix_trade' ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    fn amount(&self, db: &str, id: i64) -> Option<String> {
        self.pg
            .connect(db)
            .query_opt("SELECT amount::text FROM t_order WHERE source = 'ix_trade' AND id = $1", &[&id])
            .unwrap()
            .map(|r| r.get(0))
    }
}

fn break_the_targets(s: &Setup) {
    s.pg.connect("trade_ix")
        .batch_execute(
            "DELETE FROM t_order WHERE source = 'ix_trade' AND id IN (3, 17); \
             UPDATE t_order SET amount = 0, note = 'stale' WHERE source = 'ix_trade' AND id = 5; \
             INSERT INTO t_order VALUES ('ix_trade', 999, 1, 1, 'extra', NULL, NULL, now());",
        )
        .unwrap();
    s.pg.connect("admin").batch_execute("DELETE FROM t_order WHERE source = 'ix_trade' AND id = 40").unwrap();
}

#[test]
fn a_repair_restores_lost_rows_with_one_approver_and_deletes_need_two() {
    let mut s = setup(false);
    let expected = s.rows("trade_ix");
    break_the_targets(&s);
    s.host.start_agent();

    let (code, said) = s.reconcile(&["--repair"]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("repair of t_order:") && said.contains("AwaitingApproval"), "{said}");
    let mails = s.host.wait_mails(2);
    let mail = mails.iter().find(|m| m.to == ["dba@example.com"]).unwrap();
    assert!(
        mail.text
            .contains("[ix_trade] trade.t_order → [trade_ix] public.t_order: upsert 3 row(s) (2 missing, 1 differing)"),
        "{}",
        mail.text
    );
    assert!(mail.text.contains("missing: (id=3), (id=17)") && mail.text.contains("differing: (id=5)"), "{}", mail.text);
    assert!(mail.text.contains("extra, left as they are") && mail.text.contains("(id=999)"), "{}", mail.text);
    assert!(mail.text.contains("→ [admin] public.t_order: upsert 1 row(s) (1 missing, 0 differing)"), "{}", mail.text);

    // Changed in the source after the mail (the pipeline carries it to
    // admin, which has the row): written as it is now.
    s.mysql.sql("UPDATE trade.t_order SET amount = 4242.00 WHERE id = 17");
    s.pg.connect("admin")
        .batch_execute("UPDATE t_order SET amount = 4242.00 WHERE source = 'ix_trade' AND id = 17")
        .unwrap();
    s.host.approve(mail);
    let d = s.host.wait_decision("playbook:reconcile-repair", 2);
    assert_eq!(d["decision"], "applied", "{d:#}");
    let result = d["steps"][0]["result"].as_str().unwrap();
    assert!(result.contains("[ix_trade] → [trade_ix]: 3 row(s) upserted"), "{result}");
    assert!(result.contains("repaired row(s) equal the source"), "{result}");
    assert_eq!(s.amount("trade_ix", 17).as_deref(), Some("4242.00"));
    assert_eq!(s.amount("trade_ix", 5).as_deref(), Some("7.50"));
    assert_eq!(s.amount("admin", 40).as_deref(), Some("60.00"));
    let pg_other: i64 =
        s.pg.connect("trade_ix")
            .query_one("SELECT count(*) FROM t_order WHERE source = 'ix_other'", &[])
            .unwrap()
            .get(0);
    assert_eq!(pg_other, 1, "another source's rows are not touched");

    // The rows the repair replaced are kept.
    let backups: Vec<String> = std::fs::read_dir(s.host.path("state/backups"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .filter(|t| t.contains("\"old_rows\""))
        .collect();
    assert!(backups.iter().any(|b| b.contains("\"stale\"")), "{backups:?}");

    // Only the extra row is left; deleting it is data loss: two approvers.
    let (code, said) = s.reconcile(&["--recheck-after", "0"]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("[trade_ix]: DIFFER: 0 missing in the target, 1 extra in the target, 0 differing"), "{said}");
    assert!(said.contains("t_order [ix_trade] → [admin]: equal"), "{said}");
    let (code, said) = s.reconcile(&["--repair", "--deletes"]);
    assert_eq!(code, 1, "{said}");
    let mails = s.host.wait_mails(4);
    let new: Vec<_> = mails[2..].iter().collect();
    assert!(new.iter().all(|m| m.text.contains("DELETE 1 extra row(s)")), "{}", new[0].text);
    let by = |who: &str| *new.iter().find(|m| m.to == [who.to_string()]).unwrap();
    let said = s.host.approve(by("dba@example.com"));
    assert!(said.contains("needs 2 different approvers; 1 so far"), "{said}");
    assert!(s.amount("trade_ix", 999).is_some(), "one approver is not enough to delete");
    s.host.approve(by("lead@example.com"));
    let d = s.host.wait_decision("playbook:reconcile-repair", 4);
    assert_eq!(d["decision"], "applied", "{d:#}");
    assert!(s.amount("trade_ix", 999).is_none());

    let (code, said) = s.reconcile(&["--recheck-after", "0"]);
    assert_eq!(code, 0, "{said}");
    let mut now = s.rows("trade_ix");
    now.retain(|r| !r.starts_with("17 "));
    let mut want = expected;
    want.retain(|r| !r.starts_with("17 "));
    assert_eq!(now, want);
    s.host.stop_agent();
}

#[test]
fn in_dry_run_the_repair_is_shown_and_nothing_is_written() {
    let mut s = setup(true);
    break_the_targets(&s);
    s.host.start_agent();
    let before = (s.rows("trade_ix"), s.rows("admin"));
    let (code, said) = s.reconcile(&["--repair"]);
    assert_eq!(code, 1, "{said}");
    let mails = s.host.wait_mails(2);
    assert!(mails[0].text.contains("upsert 3 row(s)"), "{}", mails[0].text);
    s.host.approve(&mails[0]);
    let d = s.host.wait_decision("playbook:reconcile-repair", 2);
    assert_eq!(d["decision"], "dry-run", "{d:#}");
    assert_eq!((s.rows("trade_ix"), s.rows("admin")), before, "nothing written");
    s.host.stop_agent();
}

#[test]
fn on_its_schedule_the_agent_reconciles_and_proposes_the_repair() {
    let mut s = setup(false);
    s.host
        .edit_config("[reconcile]\nrecheck_after_secs = 0\n", "[reconcile]\nrecheck_after_secs = 0\nevery_secs = 2\n");
    // A schedule of seconds, not hours: the cooldown must not hold the next run back.
    s.host.edit_config("cooldown_secs = 600", "cooldown_secs = 1");
    break_the_targets(&s);
    s.host.start_agent();
    // The scheduled reconcile runs in the background, keeps its report and
    // makes the repair plan: the targets also have a row the source does
    // not, so it deletes too, a data-loss plan for two approvers.
    let d = s.host.wait_decision_where(std::time::Duration::from_secs(120), |d| {
        d["rule"] == "reconcile_after_fixes" && d["decision"] == "awaiting-approval"
    });
    assert_eq!(d["risk"], "data-loss", "{d:#}");
    assert!(
        d["summary"].as_str().unwrap().contains("t_order differs from the MySQL sources: upsert 4 row(s) and delete 1"),
        "{d:#}"
    );
    let mut repair = Vec::new();
    s.host.wait_until("both approvers' mails", || {
        repair = s.host.mails().into_iter().filter(|m| m.text.contains("repair of t_order")).collect();
        repair.len() >= 2
    });
    for m in &repair[..2] {
        s.host.approve(m);
    }
    let d = s.host.wait_decision_where(std::time::Duration::from_secs(120), |d| {
        d["rule"] == "reconcile_after_fixes" && d["decision"] == "applied" && d["steps"][0]["action"] == "postgres"
    });
    assert!(d["steps"][0]["result"].as_str().unwrap().contains("1 deleted"), "{d:#}");
    assert_eq!(s.amount("trade_ix", 5).as_deref(), Some("7.50"));
    assert!(s.amount("trade_ix", 999).is_none());
    // The next scheduled reconcile finds the tables equal.
    s.host.wait_decision_where(std::time::Duration::from_secs(120), |d| {
        d["rule"] == "reconcile_after_fixes" && d["decision"] == "applied" && d["steps"][0]["action"] == "reconcile"
    });
    s.host.wait_until("a report with every pair equal", || {
        let saved: serde_json::Value =
            serde_json::from_str(&s.host.read("state/reconcile/t_order.json")).unwrap_or_default();
        saved["pairs"].as_array().is_some_and(|p| {
            p.iter().all(|t| t["counts"] == serde_json::json!({"missing": 0, "extra": 0, "differing": 0}))
        })
    });
    s.host.stop_agent();
}

#[test]
fn a_batch_that_fails_is_rolled_back_and_the_batches_before_it_stay_written_and_named() {
    let mut s = setup(false);
    // 1200 rows the targets never got, and one of trade_ix's rows that
    // differs and is locked by somebody else while the repair runs: the
    // third batch of trade_ix waits past lock_timeout.
    s.mysql.sql(
        "INSERT INTO trade.t_order SELECT seq, 1, 1.00, 'late', NULL, NULL, '2026-12-02 00:00:00' FROM trade.seq_51_to_1250; \
         UPDATE trade.t_order SET amount = 99 WHERE id = 30;",
    );
    s.pg.connect("admin")
        .batch_execute("UPDATE t_order SET amount = 99 WHERE source = 'ix_trade' AND id = 30")
        .unwrap();
    s.host.edit_config("dbname = \"trade_ix\"\n", "dbname = \"trade_ix\"\nlock_timeout_ms = 300\n");
    s.host.start_agent();
    let (code, said) = s.reconcile(&["--repair"]);
    assert_eq!(code, 1, "{said}");
    let mail = s.host.wait_mails(1).into_iter().find(|m| m.to == ["dba@example.com"]).unwrap();
    assert!(mail.text.contains("upsert 1201 row(s) (1200 missing, 1 differing)"), "{}", mail.text);

    let mut locker = s.pg.connect("trade_ix");
    let mut tx = locker.transaction().unwrap();
    tx.execute("SELECT 1 FROM t_order WHERE source = 'ix_trade' AND id = 30 FOR UPDATE", &[]).unwrap();
    s.host.approve(&mail);
    let d = s.host.wait_decision("playbook:reconcile-repair", 2);
    tx.rollback().unwrap();
    assert_eq!(d["decision"], "failed", "{d:#}");
    let result = d["steps"][0]["result"].as_str().unwrap();
    assert!(result.contains("[ix_trade] → [admin]: 1200 row(s) upserted"), "the pair done before is named: {result}");
    assert!(
        result.contains(
            "[ix_trade] → [trade_ix]: 1000 row(s) upserted in 2 batch(es); then batch 3 FAILED and was rolled back"
        ),
        "{result}"
    );
    assert!(result.contains("55P03") || result.contains("lock timeout"), "{result}");
    let count = |db: &str| -> i64 {
        s.pg.connect(db).query_one("SELECT count(*) FROM t_order WHERE source = 'ix_trade'", &[]).unwrap().get(0)
    };
    assert_eq!(count("admin"), 1250);
    assert_eq!(count("trade_ix"), 50 + 1000, "two whole batches, nothing of the third");
    assert_eq!(s.amount("trade_ix", 30).as_deref(), Some("45.00"), "the locked row was not written");
    s.host.stop_agent();
}

#[test]
fn a_repair_is_undone_from_its_backups_as_the_operations_guide_says() {
    let mut s = setup(false);
    break_the_targets(&s);
    let broken = (s.rows("trade_ix"), s.rows("admin"));
    s.host.start_agent();
    let (code, said) = s.reconcile(&["--repair", "--deletes"]);
    assert_eq!(code, 1, "{said}");
    let mails = s.host.wait_mails(2);
    for m in &mails {
        s.host.approve(m);
    }
    let d = s.host.wait_decision("playbook:reconcile-repair", 2);
    assert_eq!(d["decision"], "applied", "{d:#}");
    s.host.stop_agent();
    assert_ne!((s.rows("trade_ix"), s.rows("admin")), broken);

    // docs/operations.md, "Undo a repair by hand": per batch file, delete its
    // keys and put its old rows back, in one transaction.
    let mut files = 0;
    for entry in std::fs::read_dir(s.host.path("state/backups")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.split("-reconcile-t_order-ix_trade-").nth(1) else { continue };
        let db = rest.split('-').next().unwrap();
        let batch: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(entry.path()).unwrap()).unwrap();
        let table = batch["target_table"].as_str().unwrap();
        let key = batch["key"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect::<Vec<_>>().join(", ");
        let mut client = s.pg.connect(db);
        let mut tx = client.transaction().unwrap();
        tx.execute(
            &format!("DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM json_populate_recordset(NULL::{table}, $1::text::json))"),
            &[&batch["keys"].to_string()],
        )
        .unwrap();
        tx.execute(
            &format!("INSERT INTO {table} SELECT * FROM json_populate_recordset(NULL::{table}, $1::text::json)"),
            &[&batch["old_rows"].to_string()],
        )
        .unwrap();
        tx.commit().unwrap();
        files += 1;
    }
    assert!(files >= 3, "an upsert batch per target and trade_ix's delete batch: {files}");
    assert_eq!((s.rows("trade_ix"), s.rows("admin")), broken, "every target as it was before the repair");
}
