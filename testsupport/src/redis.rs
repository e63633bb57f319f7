//! Helpers for tests and benchmarks that need real components: a
//! `redis-server` process of the test's own (free port, its own data
//! directory, append-only file on) that can be killed with SIGKILL and
//! restarted on the same port and directory so it reloads its AOF.
//!
//! A dev-dependency of every crate whose tests or benches need it.
//! The binary is `redis-server` from `PATH`, or the one named by the
//! environment variable `MORALSWEEP_REDIS_SERVER`; `scripts/test` installs
//! it when missing.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How a [`RedisServer`] persists its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Append-only file, fsync after every write (`--appendfsync always`):
    /// a `kill -9` loses nothing that was acknowledged.
    AofAlways,
    /// Append-only file, fsync once a second (Redis' default AOF setting).
    AofEverySec,
    /// Nothing on disk (throughput baselines only).
    None,
}

/// A `redis-server` child process bound to 127.0.0.1 on a free port, with
/// its data in a temporary directory. Killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    /// Owns the data directory (AOF, log) across restarts; removed on drop.
    dir: tempfile::TempDir,
    persistence: Persistence,
    /// `None` while killed.
    child: Option<Child>,
}

/// How long to wait for a started server to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 to find a free port")
}

fn redis_binary() -> PathBuf {
    std::env::var_os("MORALSWEEP_REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// Whether a server on `port` answers `PING` with `+PONG` (not `-LOADING`).
fn answers_ping(port: u16) -> bool {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let Ok(mut s) = TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => buf[..n].starts_with(b"+PONG"),
        Err(_) => false,
    }
}

impl RedisServer {
    /// Starts a durable server (`--appendonly yes --appendfsync always`).
    /// Panics with a readable message when `redis-server` cannot be run.
    pub fn start() -> Self {
        Self::start_with(Persistence::AofAlways)
    }

    /// Starts a server with the given persistence; panics on failure.
    pub fn start_with(persistence: Persistence) -> Self {
        match Self::try_start(persistence) {
            Ok(s) => s,
            Err(e) => panic!("cannot start redis-server for the test: {e}"),
        }
    }

    /// Starts a server with the given persistence. Retries on a new port if
    /// the chosen one was taken in the meantime.
    pub fn try_start(persistence: Persistence) -> std::io::Result<Self> {
        let mut server = RedisServer {
            port: 0,
            dir: tempfile::Builder::new().prefix("ms-redis-").tempdir()?,
            persistence,
            child: None,
        };
        let mut last = None;
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("redis-server did not start")))
    }

    /// Spawns the process on `self.port` / `self.dir` and waits until it
    /// answers PING.
    fn spawn(&mut self) -> std::io::Result<()> {
        let mut cmd = Command::new(redis_binary());
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .arg("--save")
            .arg("")
            .arg("--daemonize")
            .arg("no");
        match self.persistence {
            Persistence::AofAlways => {
                cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
            }
            Persistence::AofEverySec => {
                cmd.args(["--appendonly", "yes", "--appendfsync", "everysec"]);
            }
            Persistence::None => {
                cmd.args(["--appendonly", "no"]);
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "running {}: {e} (install redis-server, or set MORALSWEEP_REDIS_SERVER)",
                    redis_binary().display()
                ),
            )
        })?;
        let started = Instant::now();
        loop {
            if answers_ping(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(std::io::Error::other(format!(
                    "redis-server on port {} exited with {status}: {} {}",
                    self.port,
                    err.trim(),
                    self.log_tail()
                )));
            }
            if started.elapsed() > READY_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::other(format!(
                    "redis-server on port {} did not answer within {READY_TIMEOUT:?}: {}",
                    self.port,
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (AOF and `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL, then reap. No-op when not running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory (killing it
    /// first if it runs), so it reloads its append-only file; returns once
    /// it answers PING (i.e. the AOF is loaded). Panics on failure.
    pub fn restart(&mut self) {
        self.kill9();
        // The port was ours a moment ago; give the kernel a few tries.
        let mut last = None;
        for _ in 0..20 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        panic!(
            "cannot restart redis-server on port {}: {}",
            self.port,
            last.map(|e| e.to_string()).unwrap_or_default()
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}
