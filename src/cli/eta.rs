//! `run`'s expected duration: once the sweep has run for a while (a minute),
//! the total time it should take, extrapolated from the slots this run has
//! answered so far and the slots still to answer. Printed once; the
//! progress goes on after it.

use std::time::{Duration, Instant};

/// How long `run` watches before it predicts. Tests shorten it with the
/// (undocumented) `MORALSWEEP_ETA_AFTER_SECS`, since a test sweep does not
/// last a minute.
const DEFAULT_AFTER: Duration = Duration::from_secs(60);

pub(crate) struct Eta {
    started: Instant,
    /// Slots already recorded when this run started (resumed ones).
    done_at_start: u64,
    after: Duration,
    printed: bool,
}

impl Eta {
    pub(crate) fn new(done_at_start: u64) -> Eta {
        let after = std::env::var("MORALSWEEP_ETA_AFTER_SECS")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map_or(DEFAULT_AFTER, Duration::from_secs_f64);
        Eta {
            started: Instant::now(),
            done_at_start,
            after,
            printed: false,
        }
    }

    /// The line to print now, once: after the waiting time, when this run
    /// has answered some slots and some are left.
    pub(crate) fn due(&mut self, done: u64, total: u64) -> Option<String> {
        if self.printed {
            return None;
        }
        let elapsed = self.started.elapsed();
        if elapsed < self.after {
            return None;
        }
        let answered = done.saturating_sub(self.done_at_start);
        if answered == 0 || done >= total {
            return None;
        }
        self.printed = true;
        Some(expected_line(elapsed, answered, total - done))
    }
}

/// "expected duration: about 11 min 20 s in total, 10 min 18 s to go (612
/// slots answered in 1 min 2 s, 6,288 left)".
fn expected_line(elapsed: Duration, answered: u64, left: u64) -> String {
    let per_slot = elapsed.as_secs_f64() / answered as f64;
    let to_go = Duration::from_secs_f64(per_slot * left as f64);
    format!(
        "expected duration: about {} in total, {} to go ({answered} slots answered in {}, {left} left)",
        human(elapsed + to_go),
        human(to_go),
        human(elapsed)
    )
}

/// Whole seconds as "45 s", "3 min 05 s" or "2 h 07 min".
fn human(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600 + 30) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_extrapolated_from_this_runs_pace() {
        // 100 slots in 60 s, 900 left: 540 s to go, 600 s in total.
        let line = expected_line(Duration::from_secs(60), 100, 900);
        assert_eq!(
            line,
            "expected duration: about 10 min 00 s in total, 9 min 00 s to go (100 slots answered in 1 min 00 s, 900 left)"
        );
        assert_eq!(human(Duration::from_secs(59)), "59 s");
        assert_eq!(human(Duration::from_secs(7620)), "2 h 07 min");
    }

    #[test]
    fn printed_once_and_only_with_something_answered_and_left() {
        let mut eta = Eta {
            started: Instant::now() - Duration::from_secs(61),
            done_at_start: 50,
            after: DEFAULT_AFTER,
            printed: false,
        };
        assert_eq!(eta.due(50, 1000), None, "nothing answered by this run");
        assert_eq!(eta.due(1000, 1000), None, "nothing left");
        let line = eta.due(150, 1000).expect("due after a minute");
        assert!(line.contains("100 slots answered"), "{line}");
        assert_eq!(eta.due(200, 1000), None, "printed once");
        let mut early = Eta::new(0);
        early.after = DEFAULT_AFTER;
        assert_eq!(early.due(10, 100), None, "not before a minute");
    }
}
