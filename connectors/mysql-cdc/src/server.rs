//! A private MariaDB server with the binlog on, in a temporary directory on
//! a free loopback port: what the CDC tests, `rill bench cdc` and the
//! examples run against, since the machine's shared server keeps its binlog
//! off. It owns the server process and its data directory, nothing else;
//! both go when the value is dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// A MariaDB server of our own (see the module docs).
#[derive(Debug)]
pub struct LocalMariaDb {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

/// Where the server binaries are looked for, besides `PATH`.
const SBIN: &[&str] = &["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"];

fn find(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(SBIN.iter().map(PathBuf::from)).map(|d| d.join(binary)).find(|p| p.is_file())
}

/// Whether this machine can start a MariaDB server (`mariadbd` and `mariadb-install-db` are installed).
pub fn available() -> bool {
    find("mariadbd").is_some() && find("mariadb-install-db").is_some()
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Server(format!("no free port: {e}")))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| Error::Server(e.to_string()))
}

impl LocalMariaDb {
    /// Installs a fresh data directory and starts the server with the row-based binlog on.
    pub fn start() -> Result<Self> {
        let install = find("mariadb-install-db")
            .ok_or_else(|| Error::Server("mariadb-install-db is not installed (Debian: mariadb-server)".into()))?;
        let dir = tempfile::Builder::new()
            .prefix("rill-mariadb-")
            .tempdir()
            .map_err(|e| Error::Server(format!("cannot make a data directory: {e}")))?;
        let data = dir.path().join("data");
        // A temp dir of its own: servers bootstrapping at once in a shared /tmp trip over each other's files.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| Error::Server(format!("cannot make {}: {e}", tmp.display())))?;
        let output = Command::new(install)
            .arg("--no-defaults")
            .arg("--user=root")
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Server(format!("mariadb-install-db: {e}")))?;
        if !output.status.success() {
            return Err(Error::Server(format!(
                "mariadb-install-db failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let mut server = Self { dir, port: free_port()?, child: None };
        server.launch()?;
        Ok(server)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mysql://root@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{database}", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("mysqld.sock")
    }

    fn launch(&mut self) -> Result<()> {
        let mariadbd = find("mariadbd")
            .ok_or_else(|| Error::Server("mariadbd is not installed (Debian: mariadb-server)".into()))?;
        let log = std::fs::File::create(self.dir.path().join("server.log"))
            .map_err(|e| Error::Server(format!("cannot open the server log: {e}")))?;
        let child = Command::new(mariadbd)
            .arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--datadir={}", self.data().display()))
            .arg(format!("--tmpdir={}", self.dir.path().join("tmp").display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--pid-file={}", self.dir.path().join("mysqld.pid").display()))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--port={}", self.port))
            .arg("--log-bin=binlog")
            .arg("--binlog-format=ROW")
            .arg("--binlog-row-image=FULL")
            .arg("--binlog-row-metadata=FULL")
            .arg("--server-id=1")
            .arg("--skip-name-resolve")
            .arg("--innodb-buffer-pool-size=64M")
            .arg("--innodb-flush-log-at-trx-commit=2")
            .arg("--character-set-server=utf8mb4")
            .arg("--collation-server=utf8mb4_general_ci")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| Error::Server(format!("cannot start mariadbd: {e}")))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits for the server to take connections (it says so in its log).
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(Error::Server(format!("mariadbd exited ({status}): {}", self.log_tail())));
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return self.prepare();
            }
            if Instant::now() > deadline {
                return Err(Error::Server(format!("mariadbd did not start in 30 s: {}", self.log_tail())));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Drops the anonymous users the installer makes (they shadow root over
    /// TCP) and makes the `test` database.
    /// (On a thread of its own, so it works from inside an async runtime too.)
    fn prepare(&self) -> Result<()> {
        let url = self.url("mysql");
        let work = move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Server(e.to_string()))?;
            runtime.block_on(async move {
                use mysql_async::prelude::Queryable;
                let mut conn = mysql_async::Conn::from_url(url.as_str()).await?;
                conn.query_drop("DELETE FROM mysql.global_priv WHERE User = ''").await?;
                conn.query_drop("FLUSH PRIVILEGES").await?;
                conn.query_drop("CREATE DATABASE IF NOT EXISTS test").await?;
                conn.disconnect().await
            })?;
            Ok(())
        };
        std::thread::spawn(work).join().map_err(|_| Error::Server("preparing the server panicked".into()))?
    }

    /// Stops the server (a clean shutdown) and starts it again on the same data and port.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.launch()
    }

    /// Stops the server (a clean shutdown); [`LocalMariaDb::start_again`] brings it back.
    pub fn shut_down(&mut self) {
        self.stop();
    }

    /// Starts a stopped server again on the same data and port.
    pub fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        self.launch()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM is a clean shutdown for mariadbd.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// The data directory (for a look after a failure).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for LocalMariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}
