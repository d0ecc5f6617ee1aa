//! A throwaway PostgreSQL cluster of a test's own, which the test may stop, start and cut off
//! without disturbing any other test, and which is always stopped and removed on drop (also when
//! the test fails).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Whether the tests run under CI, where a missing PostgreSQL is a failure, not a skip.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The PostgreSQL programs: `$TESSERA_PG_BIN` (exported by `.ci/postgres-up`), else the newest
/// `/usr/lib/postgresql/*/bin`.
fn bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TESSERA_PG_BIN") {
        let dir = PathBuf::from(dir);
        if dir.join("pg_ctl").exists() {
            return Some(dir);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").exists())
        .collect();
    found.sort_by_key(|d| {
        d.parent()
            .and_then(Path::file_name)
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A PostgreSQL server of the test's own.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    root: bool,
    port: u16,
}

impl Cluster {
    /// Create and start one; `None` (test skipped, said on stdout) when PostgreSQL is not
    /// installed, unless under CI, where that fails the test.
    pub fn start() -> Option<Self> {
        let Some(bin) = bin() else {
            assert!(
                !ci(),
                "CI=true but no PostgreSQL found (TESSERA_PG_BIN or /usr/lib/postgresql/*/bin): \
                 run the tests through .ci/test, which installs it"
            );
            println!("SKIPPED: no PostgreSQL installed (see .ci/postgres-up)");
            return None;
        };
        let root = is_root();
        let dir = tempfile::Builder::new()
            .prefix("tessera-faults-pg.")
            .tempdir()
            .expect("temporary directory");
        if root {
            run(Command::new("chown").arg("postgres").arg(dir.path()));
        }
        let mut cluster = Self {
            dir,
            bin,
            root,
            port: 0,
        };
        let data = cluster.data();
        cluster.run_as_owner(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
        );
        for _ in 0..10 {
            cluster.port = free_port();
            if cluster.try_start() {
                return Some(cluster);
            }
        }
        panic!(
            "the throwaway PostgreSQL server did not start; its log:\n{}",
            cluster.log()
        );
    }

    /// The server's port.
    pub const fn port(&self) -> u16 {
        self.port
    }

    /// A URL of the `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run_as_owner(&self, program: &str, args: &[&str]) -> Output {
        run(self.command(program).args(args))
    }

    fn try_start(&self) -> bool {
        // Synchronous commit stays on: a commit acknowledged before an immediate stop must
        // survive it. Fsync off: the machine does not crash, only the server.
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        self.command("pg_ctl")
            .args([
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
            ])
            .args(["-w", "-t", "60", "-o", &opts, "start"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Run one SQL statement through `psql` as the superuser; its output, trimmed.
    pub fn sql(&self, statement: &str) -> String {
        let port = self.port.to_string();
        let out = self.run_as_owner(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-Atqc",
                statement,
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Start the server again (after [`Cluster::stop`]), waiting until it accepts connections.
    pub fn restart(&self) {
        assert!(self.try_start(), "restart failed; log:\n{}", self.log());
    }

    /// Stop the server in `mode` (`fast`: clients are disconnected, `immediate`: every process
    /// is killed, as in a crash), waiting until it is down.
    pub fn stop(&self, mode: &str) {
        let data = self.data();
        self.run_as_owner(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                mode,
                "-w",
                "-t",
                "60",
                "stop",
            ],
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Whatever state the test left it in: stopped, then the directory goes with `dir`.
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
    }
}

fn run(c: &mut Command) -> Output {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A TCP relay in front of a server, which can go silent without closing anything (a
/// half-open connection, as when a network path dies) and later cut every connection.
pub struct Relay {
    port: u16,
    frozen: Arc<AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// Relay 127.0.0.1:<new port> to 127.0.0.1:`to`.
    pub async fn start(to: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let conns: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (f, c) = (frozen.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let mut conns = c.lock().unwrap();
                conns.push(tokio::spawn(pipe(cr, sw, f.clone())));
                conns.push(tokio::spawn(pipe(sr, cw, f.clone())));
            }
        });
        Self {
            port,
            frozen,
            conns,
            accept,
        }
    }

    /// The relay's port.
    pub const fn port(&self) -> u16 {
        self.port
    }

    /// Stop passing bytes either way, closing nothing.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Close every connection relayed so far, and relay new ones normally again.
    pub fn cut_and_thaw(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
        self.frozen.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just as the relay froze are held until it thaws (or is cut).
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
