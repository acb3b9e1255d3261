//! Throwaway database servers for tests: a real MariaDB (with binlog) and a
//! real PostgreSQL cluster, each in a temp directory on a free loopback port,
//! torn down on drop. A missing server binary fails the test with the
//! package to install.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

fn require(path: &str, package: &str) {
    assert!(Path::new(path).exists(), "{path} is missing: apt-get install -y {package} (./scripts/test installs it)");
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A MariaDB server with binlog on.
pub struct MariaDb {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    pub port: u16,
    child: Child,
}

impl MariaDb {
    pub fn start() -> MariaDb {
        require("/usr/sbin/mariadbd", "mariadb-server");
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let out = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--auth-root-authentication-method=normal", "--skip-test-db"])
            .arg(format!("--datadir={}", data.display()))
            // Parallel tests must not share temporary tables in /tmp.
            .arg(format!("--tmpdir={}", dir.path().display()))
            .output()
            .expect("running mariadb-install-db");
        assert!(out.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let socket = dir.path().join("mysqld.sock");
        let child = Command::new("/usr/sbin/mariadbd")
            .args(["--no-defaults", "--user=root", "--bind-address=127.0.0.1", "--skip-name-resolve", "--server-id=1"])
            .args(["--binlog-format=ROW", "--innodb-buffer-pool-size=16M"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", dir.path().display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", dir.path().join("mysqld.pid").display()))
            .arg(format!("--port={port}"))
            .arg(format!("--log-bin={}", data.join("mysql-bin").display()))
            .arg(format!("--log-error={}", dir.path().join("error.log").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mariadbd");
        let db = MariaDb { _dir: dir, socket, port, child };
        wait_for("MariaDB", || db.client(&["-e", "SELECT 1"]).status.success());
        db
    }

    fn client(&self, args: &[&str]) -> std::process::Output {
        Command::new("mariadb")
            .args(["--no-defaults", "-uroot", "--connect-timeout=10"])
            .arg(format!("--socket={}", self.socket.display()))
            .args(args)
            .output()
            .expect("running the mariadb client")
    }

    /// Runs SQL as root; panics with the server's message on error.
    /// Purges the binary logs before `to`, waiting until they are gone:
    /// MariaDB keeps a binlog it still needs for crash recovery (until its
    /// binlog checkpoint moves on, later on a busy machine) and says so only
    /// in a warning.
    pub fn purge_binlogs_to(&self, to: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.sql(&format!("PURGE BINARY LOGS TO '{to}';"));
            let out = self.client(&["-N", "-e", "SHOW BINARY LOGS"]);
            let logs = String::from_utf8_lossy(&out.stdout).into_owned();
            let first = logs.split_whitespace().next().unwrap_or("");
            if out.status.success() && first == to {
                return;
            }
            assert!(Instant::now() < deadline, "MariaDB still keeps binlogs before {to}:\n{logs}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn sql(&self, sql: &str) {
        let out = self.client(&["-e", sql]);
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // Bounded: a stuck server must not hang the test run (it is killed below).
        let _ = Command::new("mariadb-admin")
            .args(["--no-defaults", "-uroot", "--connect-timeout=5", "--shutdown-timeout=10"])
            .arg(format!("--socket={}", self.socket.display()))
            .arg("shutdown")
            .output();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL cluster made with initdb, trust authentication on loopback.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.flatten().map(|e| e.path().join("bin")).filter(|b| b.join("initdb").exists()).max())
            .unwrap_or_else(|| panic!("PostgreSQL server binaries are missing: apt-get install -y postgresql (./scripts/test installs it)"));
        let dir = tempfile::tempdir().unwrap();
        let uid = Command::new("id").args(["-u", "postgres"]).output().expect("id");
        let uid: u32 =
            String::from_utf8_lossy(&uid.stdout).trim().parse().expect("a postgres user (from the postgresql package)");
        std::os::unix::fs::chown(dir.path(), Some(uid), None).unwrap();
        let data = dir.path().join("data");
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "-D"])
            .arg(&data)
            .output()
            .expect("running initdb");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("pg.log"))
            .arg("-o")
            .arg(format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", dir.path().display()))
            .args(["-w", "start"])
            .output()
            .expect("running pg_ctl");
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
        Postgres { dir, bin, port }
    }

    pub fn connect(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(
            &format!("host=127.0.0.1 port={} user=postgres dbname={db}", self.port),
            postgres::NoTls,
        )
        .unwrap()
    }

    pub fn create_db(&self, name: &str) {
        self.connect("postgres").batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    }

    /// The column's type as `format_type` prints it, if it exists.
    pub fn column_type(&self, db: &str, table: &str, column: &str) -> Option<String> {
        self.connect(db)
            .query_opt(
                "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a JOIN pg_class c ON a.attrelid = c.oid \
                 WHERE c.relname = $1 AND a.attname = $2 AND NOT a.attisdropped",
                &[&table, &column],
            )
            .unwrap()
            .map(|r| r.get(0))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
