//! Rate groups: the requests-per-minute and tokens-per-minute limits of each
//! provider account, enforced centrally by the coordinator so that they hold
//! however many workers run. Workers obtain a permit for every request they
//! send: one per slot with each lease grant, more for retries.
//!
//! Each group holds two `governor` GCRA limiters, one counting requests and
//! one counting tokens. A GCRA limiter lets through at most `burst + rate * T`
//! cells in any window of length `T`, so the limiters run at 99% of the
//! limit ([`HEADROOM`]) with a burst of half a per cent of a minute's quota:
//! no 60-second window can then exceed 99.5% of the provider's per-minute
//! limit, which leaves room for the jitter between a permit's grant and its
//! request's arrival, while the steady rate stays at 99% of the limit.
//!
//! Tokens are paced with an estimate made before the call; once the provider
//! reports the real usage, [`RateGroups::record_usage`] corrects the account:
//! an underestimate becomes a debt paid to the token limiter before anything
//! else is granted, an overestimate a small credit spent before the limiter
//! is asked again.
//!
//! A 429 from the provider ([`RateGroups::throttled`]) pauses the whole group
//! for the `Retry-After` the provider sent (one second if it sent none), then
//! lets it recover gradually: the group restarts at [`RECOVERY_START`] of its
//! rate and climbs back to the full limit over [`RECOVERY`]; another 429
//! during the climb cuts the rate again by the same factor. 429s arriving while the group is
//! already paused (the other requests that were in flight) do not cut the
//! rate again.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// Limits of one rate group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
}

/// How long a throttled group takes to climb from its reduced rate back to
/// the full limit once its pause is over.
pub const RECOVERY: Duration = Duration::from_secs(20);

/// The rate (as a fraction of the limit) a group restarts at after a 429.
pub const RECOVERY_START: f64 = 0.8;

/// The fraction of a limit the limiters pace at (see the module docs).
pub const HEADROOM: f64 = 0.99;

/// The recovery limiter is rebuilt each time the allowed fraction has grown
/// by this much (a rebuilt limiter starts with a fresh, small burst).
const RECOVERY_STEP: f64 = 0.05;

/// Pause applied when a 429 carries no `Retry-After`.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

/// A 429 that arrives within this time after the group's last pause ended is
/// an echo of the same overload, not a new one: it does not cut the rate again.
const ECHO_WINDOW: Duration = Duration::from_secs(2);

type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The burst of a limiter allowing `per_minute` cells a minute: half a per
/// cent of the minute's quota, at least one cell.
fn burst_of(per_minute: u64) -> u32 {
    (per_minute / 200).clamp(1, u32::MAX as u64) as u32
}

/// A limiter letting `per_minute * fraction` cells a minute through, with
/// bursts of `burst` cells.
fn limiter<C: Clock + Clone>(per_minute: u64, fraction: f64, burst: u32, clock: &C) -> Limiter<C> {
    let rate = (per_minute as f64 * fraction * HEADROOM).max(1e-3);
    let period = Duration::from_secs_f64(60.0 / rate).max(Duration::from_nanos(1));
    let quota = Quota::with_period(period)
        .expect("a period of at least one nanosecond")
        .allow_burst(NonZeroU32::new(burst.max(1)).expect("burst >= 1"));
    RateLimiter::direct_with_clock(quota, clock.clone())
}

/// Outcome of asking one limiter for `n` cells.
enum Check {
    Granted,
    /// Not now; try again after this long.
    Wait(Duration),
}

fn check<C: Clock>(l: &Limiter<C>, n: u32, clock: &C) -> Check {
    let Some(n) = NonZeroU32::new(n) else {
        return Check::Granted;
    };
    match l.check_n(n) {
        Ok(Ok(())) => Check::Granted,
        Ok(Err(not_until)) => Check::Wait(not_until.wait_time_from(clock.now())),
        // More than the burst can ever hold: callers clamp `n`, so this is
        // only reached with a burst of 1 and is treated as "wait a period".
        Err(_) => Check::Wait(Duration::from_millis(10)),
    }
}

/// The gradual return to the full rate after a pause.
struct Recovery<C: Clock> {
    /// Fraction of the limits currently allowed.
    fraction: f64,
    /// When the recovery began (the end of the pause), since the group start.
    began: Duration,
    /// Caps requests at `fraction` of the rpm limit.
    requests: Option<Limiter<C>>,
    /// Caps tokens at `fraction` of the tpm limit.
    tokens: Option<Limiter<C>>,
}

struct Group<C: Clock> {
    limits: Limits,
    /// Requests per minute (`None` when the group has no rpm limit).
    requests: Option<Limiter<C>>,
    /// Tokens per minute (`None` when the group has no tpm limit).
    tokens: Option<Limiter<C>>,
    request_burst: u32,
    token_burst: u32,
    /// Tokens the limiter already counted but nobody used: overestimates
    /// reported by `record_usage` and grants that fell through. Spent before
    /// the limiter is asked; capped at one burst so it cannot build a surge.
    token_credit: u64,
    /// Tokens used beyond their estimates, to be paid before the next grant.
    token_debt: u64,
    /// No permit before this time (since the group start).
    paused_until: Duration,
    /// Set while the group climbs back to its full rate after a pause.
    recovery: Option<Recovery<C>>,
    /// Earliest time a permit may next be available, as last computed.
    ready_at: Duration,
    granted_requests: u64,
    granted_tokens: u64,
    throttles: u64,
}

/// What the coordinator can report about one group (progress, telemetry).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupStatus {
    pub limits: Limits,
    /// Requests granted since the group was configured.
    pub granted_requests: u64,
    /// Estimated tokens granted (corrected by reported usage).
    pub granted_tokens: u64,
    /// 429s reported for the group.
    pub throttles: u64,
    /// Time left in the current pause (zero when not paused).
    pub paused_for: Duration,
    /// Fraction of the limits currently allowed (1 outside a recovery).
    pub rate_fraction: f64,
}

/// All rate groups known to the coordinator.
pub struct RateGroups<C: Clock = DefaultClock> {
    clock: C,
    start: C::Instant,
    groups: Mutex<HashMap<String, Group<C>>>,
}

impl<C: Clock> fmt::Debug for RateGroups<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let mut d = f.debug_map();
        for (name, group) in g.iter() {
            d.entry(name, &group.limits);
        }
        d.finish()
    }
}

impl Default for RateGroups<DefaultClock> {
    fn default() -> Self {
        Self::with_clock(DefaultClock::default())
    }
}

impl RateGroups<DefaultClock> {
    pub fn new() -> Self {
        Self::default()
    }
}

impl<C: Clock + Clone> RateGroups<C> {
    /// Rate groups timed by `clock` (tests use a fake clock).
    pub fn with_clock(clock: C) -> Self {
        let start = clock.now();
        RateGroups {
            clock,
            start,
            groups: Mutex::new(HashMap::new()),
        }
    }

    fn now(&self) -> Duration {
        self.clock.now().duration_since(self.start).into()
    }

    /// Sets (or changes) a group's limits. Changing the limits starts fresh
    /// limiters; a pause in progress stays.
    pub fn configure(&self, group: &str, limits: Limits) {
        let mut g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if g.get(group).is_some_and(|b| b.limits == limits) {
            return;
        }
        let request_burst = limits.rpm.map(|r| burst_of(r as u64)).unwrap_or(1);
        // A token burst must hold at least one whole request's estimate.
        let token_burst = limits
            .tpm
            .map(|t| burst_of(t).max(t.min(8192) as u32))
            .unwrap_or(1);
        let fresh = Group {
            limits,
            requests: limits
                .rpm
                .map(|r| limiter(r as u64, 1.0, request_burst, &self.clock)),
            tokens: limits
                .tpm
                .map(|t| limiter(t, 1.0, token_burst, &self.clock)),
            request_burst,
            token_burst,
            token_credit: 0,
            token_debt: 0,
            paused_until: Duration::ZERO,
            recovery: None,
            ready_at: Duration::ZERO,
            granted_requests: 0,
            granted_tokens: 0,
            throttles: 0,
        };
        match g.get_mut(group) {
            Some(b) => {
                let (paused_until, granted_requests, granted_tokens, throttles) = (
                    b.paused_until,
                    b.granted_requests,
                    b.granted_tokens,
                    b.throttles,
                );
                *b = Group {
                    paused_until,
                    granted_requests,
                    granted_tokens,
                    throttles,
                    ..fresh
                };
            }
            None => {
                g.insert(group.to_string(), fresh);
            }
        }
    }

    /// Takes permits for up to `wanted` requests of about `tokens_each`
    /// tokens; returns how many may start now (0..=wanted). A group that was
    /// never configured has no limits.
    pub fn take(&self, group: &str, wanted: u32, tokens_each: u64) -> u32 {
        let now = self.now();
        let mut g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let Some(b) = g.get_mut(group) else {
            return wanted;
        };
        if wanted == 0 {
            return 0;
        }
        if now < b.paused_until {
            b.ready_at = b.paused_until;
            return 0;
        }
        self.advance_recovery(b, now);
        // Tokens used beyond their estimates are paid first.
        if let Some(tokens) = &b.tokens {
            while b.token_debt > 0 {
                let part = b.token_debt.min(b.token_burst as u64) as u32;
                match check(tokens, part, &self.clock) {
                    Check::Granted => b.token_debt -= part as u64,
                    Check::Wait(w) => {
                        b.ready_at = now + w;
                        return 0;
                    }
                }
            }
        }
        let tokens_each = if b.tokens.is_some() {
            tokens_each.clamp(1, b.token_burst as u64)
        } else {
            tokens_each
        };
        let mut granted = 0u32;
        let mut chunk = wanted
            .min(b.request_burst.max(1))
            .min(if b.tokens.is_some() {
                (b.token_burst as u64 / tokens_each).max(1) as u32
            } else {
                u32::MAX
            });
        let mut wait = Duration::ZERO;
        while granted < wanted && chunk > 0 {
            match self.try_chunk(b, chunk, tokens_each) {
                Ok(()) => {
                    granted += chunk;
                    chunk = chunk.min(wanted - granted);
                }
                Err(w) => {
                    wait = w;
                    chunk /= 2;
                }
            }
        }
        // Saturating: a worker's numbers are not trusted to be sane.
        b.granted_requests = b.granted_requests.saturating_add(granted as u64);
        b.granted_tokens = b
            .granted_tokens
            .saturating_add((granted as u64).saturating_mul(tokens_each));
        b.ready_at = if granted < wanted { now + wait } else { now };
        granted
    }

    /// Asks every limiter of the group for `n` requests of `tokens_each`
    /// tokens: all of them or none.
    fn try_chunk(&self, b: &mut Group<C>, n: u32, tokens_each: u64) -> Result<(), Duration> {
        let tokens = (n as u64).saturating_mul(tokens_each).min(u32::MAX as u64) as u32;
        // The recovery caps first: failing them consumes nothing else.
        if let Some(r) = &b.recovery {
            if let Some(l) = &r.requests {
                if let Check::Wait(w) = check(l, n, &self.clock) {
                    return Err(w);
                }
            }
            if let Some(l) = &r.tokens {
                if let Check::Wait(w) = check(l, tokens.min(b.token_burst), &self.clock) {
                    return Err(w);
                }
            }
        }
        let mut from_credit = 0u64;
        if let Some(l) = &b.tokens {
            if b.token_credit >= tokens as u64 {
                from_credit = tokens as u64;
                b.token_credit -= from_credit;
            } else if let Check::Wait(w) = check(l, tokens, &self.clock) {
                return Err(w);
            }
        }
        if let Some(l) = &b.requests {
            if let Check::Wait(w) = check(l, n, &self.clock) {
                // The tokens were counted but will not be used: keep them.
                if b.tokens.is_some() {
                    let back = if from_credit > 0 {
                        from_credit
                    } else {
                        tokens as u64
                    };
                    b.token_credit = (b.token_credit + back).min(b.token_burst as u64);
                }
                return Err(w);
            }
        }
        Ok(())
    }

    /// Raises a recovering group's allowed fraction with the time since its
    /// pause ended; ends the recovery at the full rate.
    fn advance_recovery(&self, b: &mut Group<C>, now: Duration) {
        let Some(r) = &mut b.recovery else {
            return;
        };
        let elapsed = now.saturating_sub(r.began).as_secs_f64();
        let target = RECOVERY_START + (1.0 - RECOVERY_START) * elapsed / RECOVERY.as_secs_f64();
        if target >= 1.0 {
            b.recovery = None;
            return;
        }
        if target - r.fraction >= RECOVERY_STEP {
            r.fraction = target;
            r.requests = b
                .limits
                .rpm
                .map(|x| limiter(x as u64, target, b.request_burst, &self.clock));
            r.tokens = b
                .limits
                .tpm
                .map(|x| limiter(x, target, b.token_burst, &self.clock));
        }
    }

    /// How long until a permit of `group` may be available.
    pub fn next_ready(&self, group: &str) -> Duration {
        let now = self.now();
        let g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        match g.get(group) {
            Some(b) => b.ready_at.max(b.paused_until).saturating_sub(now),
            None => Duration::ZERO,
        }
    }

    /// The provider answered 429: pause the group (for `retry_after` if
    /// given, else one second), then let it recover gradually.
    pub fn throttled(&self, group: &str, retry_after: Option<Duration>) {
        let now = self.now();
        let mut g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let Some(b) = g.get_mut(group) else {
            return;
        };
        b.throttles += 1;
        let pause = retry_after.unwrap_or(DEFAULT_PAUSE);
        let echo = now < b.paused_until + ECHO_WINDOW && b.paused_until > Duration::ZERO;
        b.paused_until = b.paused_until.max(now + pause);
        if echo && b.recovery.is_some() {
            // The same overload reported by another in-flight request.
            if let Some(r) = &mut b.recovery {
                r.began = b.paused_until;
            }
            return;
        }
        let fraction = match &b.recovery {
            // Throttled again while still recovering: start lower.
            Some(r) => (r.fraction * RECOVERY_START).max(0.05),
            None => RECOVERY_START,
        };
        b.recovery = Some(Recovery {
            fraction,
            began: b.paused_until,
            requests: b
                .limits
                .rpm
                .map(|x| limiter(x as u64, fraction, b.request_burst, &self.clock)),
            tokens: b
                .limits
                .tpm
                .map(|x| limiter(x, fraction, b.token_burst, &self.clock)),
        });
        tracing::info!(
            group,
            pause_ms = pause.as_millis() as u64,
            fraction,
            "rate group throttled by the provider"
        );
    }

    /// Corrects the token account once a request's real usage is known.
    pub fn record_usage(&self, group: &str, estimated_tokens: u64, actual_tokens: u64) {
        let mut g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let Some(b) = g.get_mut(group) else {
            return;
        };
        if b.tokens.is_none() {
            return;
        }
        b.granted_tokens = b
            .granted_tokens
            .saturating_add(actual_tokens)
            .saturating_sub(estimated_tokens);
        if actual_tokens > estimated_tokens {
            let mut extra = actual_tokens - estimated_tokens;
            let from_credit = extra.min(b.token_credit);
            b.token_credit -= from_credit;
            extra -= from_credit;
            b.token_debt = b.token_debt.saturating_add(extra);
        } else {
            let mut spare = estimated_tokens - actual_tokens;
            let paid = spare.min(b.token_debt);
            b.token_debt -= paid;
            spare -= paid;
            b.token_credit = b
                .token_credit
                .saturating_add(spare)
                .min(b.token_burst as u64);
        }
    }

    /// The state of one group, `None` if it was never configured.
    pub fn status(&self, group: &str) -> Option<GroupStatus> {
        let now = self.now();
        let g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        g.get(group).map(|b| GroupStatus {
            limits: b.limits,
            granted_requests: b.granted_requests,
            granted_tokens: b.granted_tokens,
            throttles: b.throttles,
            paused_for: b.paused_until.saturating_sub(now),
            rate_fraction: b.recovery.as_ref().map(|r| r.fraction).unwrap_or(1.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn groups() -> (RateGroups<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (RateGroups::with_clock(clock.clone()), clock)
    }

    /// Drives a group with greedy askers for `secs` seconds in steps of
    /// `step`; returns the number granted in each whole second.
    fn drive(
        rg: &RateGroups<FakeRelativeClock>,
        clock: &FakeRelativeClock,
        group: &str,
        secs: u64,
        step: Duration,
        wanted: u32,
        tokens_each: u64,
    ) -> Vec<u64> {
        let mut per_second = vec![0u64; secs as usize];
        let steps = (secs as u128 * 1_000_000_000 / step.as_nanos()) as u64;
        for i in 0..steps {
            let second = (i as u128 * step.as_nanos() / 1_000_000_000) as usize;
            per_second[second] += rg.take(group, wanted, tokens_each) as u64;
            clock.advance(step);
        }
        per_second
    }

    fn max_window(per_second: &[u64], width: usize) -> u64 {
        per_second
            .windows(width)
            .map(|w| w.iter().sum::<u64>())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn unknown_group_is_unlimited() {
        let (rg, _) = groups();
        assert_eq!(rg.take("nobody", 17, 100), 17);
        assert_eq!(rg.next_ready("nobody"), Duration::ZERO);
    }

    #[test]
    fn rpm_holds_in_every_minute_and_runs_at_the_limit() {
        let (rg, clock) = groups();
        rg.configure(
            "g",
            Limits {
                rpm: Some(30_000),
                tpm: None,
            },
        );
        let per_second = drive(&rg, &clock, "g", 180, Duration::from_millis(7), 64, 200);
        let worst = max_window(&per_second, 60);
        // Never over the limit in any minute, with room for send jitter.
        assert!(worst <= 29_900, "a minute saw {worst}");
        let total: u64 = per_second.iter().sum();
        assert!(
            total as f64 >= 30_000.0 * 3.0 * 0.99,
            "only {total} in 3 min"
        );
        let s = rg.status("g").unwrap();
        assert_eq!(s.granted_requests, total);
    }

    #[test]
    fn small_rpm_grants_one_at_a_time() {
        let (rg, clock) = groups();
        rg.configure(
            "g",
            Limits {
                rpm: Some(60),
                tpm: None,
            },
        );
        assert_eq!(rg.take("g", 5, 10), 1);
        assert_eq!(rg.take("g", 5, 10), 0);
        let wait = rg.next_ready("g");
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_millis(1020),
            "{wait:?}"
        );
        clock.advance(wait);
        assert_eq!(rg.take("g", 5, 10), 1);
    }

    #[test]
    fn tpm_limits_when_tokens_bind() {
        let (rg, clock) = groups();
        // 100,000 tokens a minute at 250 tokens a request: 400 requests a minute.
        rg.configure(
            "g",
            Limits {
                rpm: Some(10_000),
                tpm: Some(100_000),
            },
        );
        let per_second = drive(&rg, &clock, "g", 120, Duration::from_millis(10), 8, 250);
        let worst = max_window(&per_second, 60);
        assert!(worst as f64 * 250.0 <= 100_000.0 * 1.01 + 8192.0, "{worst}");
        let total: u64 = per_second.iter().sum();
        assert!(total >= 780, "{total}");
    }

    #[test]
    fn underestimated_usage_is_paid_back() {
        let (rg, clock) = groups();
        rg.configure(
            "g",
            Limits {
                rpm: None,
                tpm: Some(60_000),
            },
        );
        // Each request estimated at 100 tokens really used 300.
        let mut granted = 0;
        for _ in 0..6000 {
            let n = rg.take("g", 4, 100);
            for _ in 0..n {
                rg.record_usage("g", 100, 300);
            }
            granted += n as u64;
            clock.advance(Duration::from_millis(10));
        }
        // 60 s at 60,000 tokens a minute: about 200 requests of 300 tokens.
        assert!(
            (180..=260).contains(&granted),
            "granted {granted} requests of 300 tokens in a minute"
        );
    }

    #[test]
    fn a_429_pauses_then_recovers_gradually() {
        let (rg, clock) = groups();
        rg.configure(
            "g",
            Limits {
                rpm: Some(6_000),
                tpm: None,
            },
        );
        drive(&rg, &clock, "g", 5, Duration::from_millis(5), 10, 1);
        rg.throttled("g", Some(Duration::from_secs(3)));
        // The other in-flight requests report the same 429: no deeper cut.
        rg.throttled("g", Some(Duration::from_secs(3)));
        assert_eq!(rg.status("g").unwrap().rate_fraction, RECOVERY_START);
        assert_eq!(rg.take("g", 10, 1), 0);
        let wait = rg.next_ready("g");
        assert!(wait > Duration::from_millis(2900), "{wait:?}");
        let per_second = drive(&rg, &clock, "g", 40, Duration::from_millis(5), 10, 1);
        assert!(per_second[..2].iter().all(|&n| n == 0), "{per_second:?}");
        // Right after the pause: a reduced rate (99/s -> about 80/s).
        assert!((70..=90).contains(&per_second[4]), "{per_second:?}");
        // Later: back at the full rate.
        assert!((95..=101).contains(&per_second[38]), "{per_second:?}");
        assert_eq!(rg.status("g").unwrap().rate_fraction, 1.0);
        assert!(per_second[10] < per_second[25], "{per_second:?}");
    }

    #[test]
    fn reconfigure_changes_the_limit() {
        let (rg, clock) = groups();
        rg.configure(
            "g",
            Limits {
                rpm: Some(600),
                tpm: None,
            },
        );
        let a: u64 = drive(&rg, &clock, "g", 10, Duration::from_millis(10), 4, 1)
            .iter()
            .sum();
        rg.configure(
            "g",
            Limits {
                rpm: Some(1200),
                tpm: None,
            },
        );
        let b: u64 = drive(&rg, &clock, "g", 10, Duration::from_millis(10), 4, 1)
            .iter()
            .sum();
        assert!((95..=110).contains(&a), "{a}");
        assert!((190..=215).contains(&b), "{b}");
    }
}
