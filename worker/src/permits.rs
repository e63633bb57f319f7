//! Where a worker gets permission to send a request. The rate limits of a
//! rate group hold across all workers because the coordinator hands out the
//! permits (the coordinator's `RateGroups`); a worker asks
//! through this trait, implemented by the gRPC client in the cluster and by a
//! direct call in the one-process mode.

use std::time::Duration;

use async_trait::async_trait;

/// A source of request permits for rate groups.
#[async_trait]
pub trait Permits: Send + Sync {
    /// Waits until `n` requests of about `tokens_each` tokens each may be
    /// sent to `group`, and takes the permits.
    async fn acquire(&self, group: &str, n: u32, tokens_each: u64);
    /// The provider answered 429 for `group`: slow the whole group down.
    async fn throttled(&self, group: &str, retry_after: Option<Duration>);
    /// A request's real token usage, to correct the estimate it was paced with.
    async fn usage(&self, group: &str, estimated_tokens: u64, actual_tokens: u64);
}

/// No limits at all (tests, instant providers).
pub struct Unlimited;

#[async_trait]
impl Permits for Unlimited {
    async fn acquire(&self, _group: &str, _n: u32, _tokens_each: u64) {}
    async fn throttled(&self, _group: &str, _retry_after: Option<Duration>) {}
    async fn usage(&self, _group: &str, _estimated: u64, _actual: u64) {}
}
