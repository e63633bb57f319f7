//! Test support for every crate of the workspace, and only for tests and
//! benchmarks: it is a dev-dependency everywhere and is never published, so
//! no library ships helpers that exist for its tests.
//!
//! It owns [`redis`] (a `redis-server` process of a test's own, killable and
//! restartable, plus free ports), [`otlp`] (a real OTLP trace receiver),
//! [`reference`] (where the papers' reference data is, and the skip-or-fail
//! rule when it is absent), [`csvrows`] (CSV files read as rows of named
//! fields, for comparing metric files) and [`replay`] (a folder of recorded
//! ratings for the provider simulator). It depends on no workspace crate,
//! so any crate may use it in its tests without a cycle.

pub mod csvrows;
pub mod otlp;
pub mod redis;
pub mod reference;
pub mod replay;

pub use redis::{free_port, Persistence, RedisServer};
