//! Per-key rate limits as a provider enforces them: at most `rpm` requests
//! and `tpm` tokens in any sliding 60-second window, counted in 100 ms
//! buckets. A request over a limit is refused with the time after which
//! enough of the window will have slid past for it to fit.

use std::collections::VecDeque;
use std::time::Duration;

const BUCKET_MS: u64 = 100;
const WINDOW_BUCKETS: u64 = 60_000 / BUCKET_MS;

/// Counts of one quantity (requests or tokens) over the last minute.
#[derive(Debug, Default)]
pub struct Window {
    /// (bucket index, amount), oldest first.
    buckets: VecDeque<(u64, u64)>,
    sum: u64,
}

impl Window {
    fn evict(&mut self, bucket: u64) {
        while let Some(&(b, n)) = self.buckets.front() {
            if b + WINDOW_BUCKETS <= bucket {
                self.sum -= n;
                self.buckets.pop_front();
            } else {
                break;
            }
        }
    }

    /// The amount counted in the window ending at `now`.
    pub fn used(&mut self, now: Duration) -> u64 {
        self.evict(now.as_millis() as u64 / BUCKET_MS);
        self.sum
    }

    /// How long from `now` until `amount` more fits under `limit`.
    fn wait_for(&self, now: Duration, amount: u64, limit: u64) -> Duration {
        let mut excess = (self.sum + amount).saturating_sub(limit);
        for &(b, n) in &self.buckets {
            if excess == 0 {
                break;
            }
            excess = excess.saturating_sub(n);
            if excess == 0 {
                let free_at = Duration::from_millis((b + WINDOW_BUCKETS) * BUCKET_MS);
                return free_at.saturating_sub(now).max(Duration::from_millis(1));
            }
        }
        // More than a whole window's limit: the window must empty entirely.
        Duration::from_secs(60)
    }

    fn add(&mut self, now: Duration, amount: u64) {
        let bucket = now.as_millis() as u64 / BUCKET_MS;
        match self.buckets.back_mut() {
            Some((b, n)) if *b == bucket => *n += amount,
            _ => self.buckets.push_back((bucket, amount)),
        }
        self.sum += amount;
    }
}

/// The limits of one key, and what has been used of them.
#[derive(Debug, Default)]
pub struct KeyLimits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    requests: Window,
    tokens: Window,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Requests,
    Tokens,
}

/// The state of a key's limits, for the rate-limit response headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateInfo {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub requests_remaining: u64,
    pub tokens_remaining: u64,
    /// Until the request window is whole again.
    pub requests_reset: Duration,
    pub tokens_reset: Duration,
}

/// A refused request.
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    pub which: Which,
    pub retry_after: Duration,
    pub info: RateInfo,
}

impl KeyLimits {
    pub fn new(rpm: Option<u64>, tpm: Option<u64>) -> Self {
        KeyLimits {
            rpm,
            tpm,
            ..Default::default()
        }
    }

    fn info(&mut self, now: Duration) -> RateInfo {
        let ru = self.requests.used(now);
        let tu = self.tokens.used(now);
        let reset = |w: &Window| {
            w.buckets
                .front()
                .map(|(b, _)| {
                    Duration::from_millis((b + WINDOW_BUCKETS) * BUCKET_MS).saturating_sub(now)
                })
                .unwrap_or(Duration::ZERO)
        };
        RateInfo {
            rpm: self.rpm,
            tpm: self.tpm,
            requests_remaining: self.rpm.map(|l| l.saturating_sub(ru)).unwrap_or(u64::MAX),
            tokens_remaining: self.tpm.map(|l| l.saturating_sub(tu)).unwrap_or(u64::MAX),
            requests_reset: reset(&self.requests),
            tokens_reset: reset(&self.tokens),
        }
    }

    /// Counts a request of `tokens` tokens at `now` if it fits under both
    /// limits; otherwise refuses it (and counts nothing).
    pub fn admit(&mut self, now: Duration, tokens: u64) -> Result<RateInfo, Refusal> {
        let ru = self.requests.used(now);
        let tu = self.tokens.used(now);
        if let Some(l) = self.rpm {
            if ru + 1 > l {
                let retry_after = self.requests.wait_for(now, 1, l);
                return Err(Refusal {
                    which: Which::Requests,
                    retry_after,
                    info: self.info(now),
                });
            }
        }
        if let Some(l) = self.tpm {
            if tu + tokens > l {
                let retry_after = self.tokens.wait_for(now, tokens, l);
                return Err(Refusal {
                    which: Which::Tokens,
                    retry_after,
                    info: self.info(now),
                });
            }
        }
        self.requests.add(now, 1);
        self.tokens.add(now, tokens);
        Ok(self.info(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_minute_and_says_when() {
        let mut k = KeyLimits::new(Some(10), None);
        for i in 0..10 {
            assert!(k.admit(Duration::from_millis(i * 1000), 5).is_ok());
        }
        let r = k.admit(Duration::from_millis(30_000), 5).unwrap_err();
        assert_eq!(r.which, Which::Requests);
        // The first request (t=0) leaves the window at t=60 s.
        assert_eq!(r.retry_after, Duration::from_secs(30));
        assert!(k.admit(Duration::from_millis(60_000), 5).is_ok());
    }

    #[test]
    fn tokens_limit() {
        let mut k = KeyLimits::new(None, Some(1000));
        assert!(k.admit(Duration::ZERO, 600).is_ok());
        let r = k.admit(Duration::from_secs(1), 600).unwrap_err();
        assert_eq!(r.which, Which::Tokens);
        assert_eq!(r.info.tokens_remaining, 400);
        assert_eq!(r.retry_after, Duration::from_secs(59));
    }
}
