//! A coordinator process for the cluster tests, restartable on the same
//! port with its log appended across restarts, and the worker command line
//! they share.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::bin;

/// A coordinator on a Redis store, its data in `data`.
pub struct Coordinator {
    pub port: u16,
    pub redis: String,
    pub data: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    token: String,
    /// `RUST_LOG` of the process (`None`: its default, info).
    rust_log: Option<&'static str>,
}

impl Coordinator {
    /// Starts one on a free port (lease TTL 2 s, reclaim every 0.5 s) and
    /// waits until it listens.
    pub fn start(
        redis_url: &str,
        data: &Path,
        log: &Path,
        token: &str,
        rust_log: Option<&'static str>,
    ) -> Coordinator {
        let mut c = Coordinator {
            port: moralsweep_testsupport::free_port(),
            redis: redis_url.to_string(),
            data: data.to_path_buf(),
            log: log.to_path_buf(),
            child: None,
            token: token.to_string(),
            rust_log,
        };
        c.spawn();
        c
    }

    /// Starts the process (again) on its port; waits until it listens.
    pub fn spawn(&mut self) {
        std::fs::create_dir_all(&self.data).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(bin());
        cmd.args([
            "coordinator",
            "--listen",
            &format!("127.0.0.1:{}", self.port),
            "--redis",
            &self.redis,
            "--data-dir",
            self.data.to_str().unwrap(),
            "--lease-ttl",
            "2",
            "--reclaim-every",
            "0.5",
        ])
        .env("MORALSWEEP_TOKEN", &self.token)
        .stdout(Stdio::null())
        .stderr(log);
        if let Some(filter) = self.rust_log {
            cmd.env("RUST_LOG", filter);
        }
        self.child = Some(cmd.spawn().unwrap());
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the coordinator did not listen within 60 s of its start: {}",
                tail(&self.log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the process at once (SIGKILL) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The last 15 lines of a log file.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A worker of the cluster tests named `name` on the coordinator at `url`
/// (concurrency 8, leases of 40, reports of 32, extended every 0.5 s, 5 s
/// to drain); the caller adds the provider's key and the output.
pub fn worker_command(url: &str, name: &str, token: &str) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args([
        "worker",
        "--coordinator",
        url,
        "--name",
        name,
        "--concurrency",
        "8",
        "--lease-batch",
        "40",
        "--report-batch",
        "32",
        "--extend-every",
        "0.5",
        "--drain-timeout",
        "5",
    ])
    .env("MORALSWEEP_TOKEN", token);
    cmd
}
