//! Rate groups: the requests-per-minute and tokens-per-minute limits of each
//! provider account, enforced centrally by the coordinator so that they hold
//! however many workers run. Workers obtain a permit for every request they
//! send: one per slot with each lease grant, more for retries.
//!
//! (Placeholder implementation with the final interface; the providers issue
//! replaces the internals with `governor` and 429 back-off.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limits of one rate group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
}

#[derive(Debug)]
struct Bucket {
    limits: Limits,
    requests: f64,
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
}

/// All rate groups known to the coordinator.
#[derive(Debug, Default)]
pub struct RateGroups {
    groups: Mutex<HashMap<String, Bucket>>,
}

impl RateGroups {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or changes) a group's limits.
    pub fn configure(&self, group: &str, limits: Limits) {
        let mut g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        g.entry(group.to_string())
            .and_modify(|b| b.limits = limits)
            .or_insert(Bucket {
                limits,
                requests: 0.0,
                tokens: 0.0,
                last: now,
                paused_until: None,
            });
    }

    /// Takes permits for up to `wanted` requests of about `tokens_each`
    /// tokens; returns how many may start now (0..=wanted).
    pub fn take(&self, group: &str, wanted: u32, tokens_each: u64) -> u32 {
        let mut g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let Some(b) = g.get_mut(group) else {
            return wanted;
        };
        let now = Instant::now();
        if b.paused_until.is_some_and(|t| now < t) {
            return 0;
        }
        let dt = now.duration_since(b.last).as_secs_f64();
        b.last = now;
        let mut n = wanted as f64;
        if let Some(rpm) = b.limits.rpm {
            let rate = rpm as f64 / 60.0;
            b.requests = (b.requests + dt * rate).min(rate.max(1.0));
            n = n.min(b.requests.floor());
        }
        if let Some(tpm) = b.limits.tpm {
            let rate = tpm as f64 / 60.0;
            b.tokens = (b.tokens + dt * rate).min(rate.max(tokens_each as f64));
            n = n.min((b.tokens / tokens_each.max(1) as f64).floor());
        }
        let n = n.max(0.0) as u32;
        if b.limits.rpm.is_some() {
            b.requests -= n as f64;
        }
        if b.limits.tpm.is_some() {
            b.tokens -= (n as u64 * tokens_each) as f64;
        }
        n
    }

    /// How long until a permit of `group` may be available.
    pub fn next_ready(&self, group: &str) -> Duration {
        let g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        match g.get(group) {
            Some(b) => {
                if let Some(t) = b.paused_until {
                    let now = Instant::now();
                    if t > now {
                        return t - now;
                    }
                }
                match b.limits.rpm {
                    Some(rpm) => Duration::from_secs_f64(60.0 / rpm as f64),
                    None => Duration::ZERO,
                }
            }
            None => Duration::ZERO,
        }
    }

    /// The provider answered 429: pause the group (for `retry_after` if
    /// given) before it recovers.
    pub fn throttled(&self, group: &str, retry_after: Option<Duration>) {
        let mut g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = g.get_mut(group) {
            b.paused_until = Some(Instant::now() + retry_after.unwrap_or(Duration::from_secs(1)));
        }
    }

    /// Corrects the token account once a request's real usage is known.
    pub fn record_usage(&self, group: &str, estimated_tokens: u64, actual_tokens: u64) {
        let mut g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = g.get_mut(group) {
            if b.limits.tpm.is_some() {
                b.tokens -= actual_tokens as f64 - estimated_tokens as f64;
            }
        }
    }
}
