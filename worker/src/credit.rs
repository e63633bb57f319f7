//! Permits already paid for. Every slot of a lease comes with one permit of
//! its rate group (the coordinator takes it when it grants the slot), so the
//! first request of a slot needs no extra call; only retries and fallbacks
//! ask the coordinator for more. This wrapper keeps that credit per group and
//! spends it before asking the inner [`Permits`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::permits::Permits;

/// A [`Permits`] that spends prepaid credit first.
pub struct CreditPermits {
    inner: Arc<dyn Permits>,
    credit: Mutex<HashMap<String, u64>>,
}

impl CreditPermits {
    pub fn new(inner: Arc<dyn Permits>) -> Self {
        CreditPermits {
            inner,
            credit: Mutex::new(HashMap::new()),
        }
    }

    /// Adds `n` prepaid permits of `group` (one per leased slot).
    pub fn add(&self, group: &str, n: u64) {
        *self
            .credit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(group.to_string())
            .or_default() += n;
    }

    /// Prepaid permits of `group` not spent yet.
    pub fn available(&self, group: &str) -> u64 {
        self.credit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait]
impl Permits for CreditPermits {
    async fn acquire(&self, group: &str, n: u32, tokens_each: u64) {
        let from_credit = {
            let mut c = self.credit.lock().unwrap_or_else(|e| e.into_inner());
            let have = c.entry(group.to_string()).or_default();
            let take = (*have).min(n as u64);
            *have -= take;
            take as u32
        };
        if from_credit < n {
            self.inner
                .acquire(group, n - from_credit, tokens_each)
                .await;
        }
    }

    async fn throttled(&self, group: &str, retry_after: Option<Duration>) {
        self.inner.throttled(group, retry_after).await;
    }

    async fn usage(&self, group: &str, estimated_tokens: u64, actual_tokens: u64) {
        self.inner
            .usage(group, estimated_tokens, actual_tokens)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Counting(AtomicU32);

    #[async_trait]
    impl Permits for Counting {
        async fn acquire(&self, _g: &str, n: u32, _t: u64) {
            self.0.fetch_add(n, Ordering::SeqCst);
        }
        async fn throttled(&self, _g: &str, _r: Option<Duration>) {}
        async fn usage(&self, _g: &str, _e: u64, _a: u64) {}
    }

    #[tokio::test]
    async fn credit_is_spent_before_asking() {
        let inner = Arc::new(Counting(AtomicU32::new(0)));
        let c = CreditPermits::new(inner.clone());
        c.add("g", 3);
        c.acquire("g", 2, 10).await;
        assert_eq!(inner.0.load(Ordering::SeqCst), 0);
        c.acquire("g", 2, 10).await;
        assert_eq!(inner.0.load(Ordering::SeqCst), 1);
        c.acquire("h", 1, 10).await;
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
        assert_eq!(c.available("g"), 0);
    }
}
