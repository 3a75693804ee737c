//! Dedup: the first alert of a key is printed; repeats within the window after it are counted
//! and reported as `suppressed` on the next printed alert of that key (or in the status record).
//!
//! The window runs from the last *printed* alert of a key, not from the last repeat: a steady
//! storm still prints one alert per window, each saying how many it stood for. Times are the
//! events' own times, so a replay dedups exactly like the live daemon did.

use std::{collections::HashMap, time::Duration};

use jiff::{SignedDuration, Timestamp};

/// Keys kept before the first sweep for expired, fully reported keys.
const PRUNE_ABOVE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Print the alert; `suppressed` repeats of its key were held back since the last one.
    Print { suppressed: u64 },
    /// A repeat within the window: counted, not printed.
    Suppress,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    last_printed: Timestamp,
    pending: u64,
}

#[derive(Debug)]
pub struct Dedup {
    window: SignedDuration,
    entries: HashMap<String, Entry>,
    suppressed_total: u64,
    /// Sweep when the map reaches this size; doubles with the live keys so that a burst of
    /// distinct keys costs amortized O(1) per key, not a full sweep per key.
    prune_at: usize,
}

impl Dedup {
    pub fn new(window: Duration) -> Self {
        Self {
            // Windows beyond SignedDuration's ~292 billion years are the same as forever.
            window: SignedDuration::try_from(window).unwrap_or(SignedDuration::MAX),
            entries: HashMap::new(),
            suppressed_total: 0,
            prune_at: PRUNE_ABOVE,
        }
    }

    /// A new window (policy reload), for the keys held too.
    pub fn set_window(&mut self, window: Duration) {
        self.window = SignedDuration::try_from(window).unwrap_or(SignedDuration::MAX);
    }

    pub fn check(&mut self, key: &str, now: Timestamp) -> Verdict {
        if let Some(entry) = self.entries.get_mut(key) {
            // An event older than the last printed one (clock step, baseline scan) is a repeat.
            if now.duration_since(entry.last_printed) < self.window {
                entry.pending += 1;
                self.suppressed_total += 1;
                return Verdict::Suppress;
            }
            let suppressed = entry.pending;
            *entry = Entry {
                last_printed: now,
                pending: 0,
            };
            return Verdict::Print { suppressed };
        }
        if self.entries.len() >= self.prune_at {
            self.prune(now);
            self.prune_at = PRUNE_ABOVE.max(self.entries.len() * 2);
        }
        self.entries.insert(
            key.to_owned(),
            Entry {
                last_printed: now,
                pending: 0,
            },
        );
        Verdict::Print { suppressed: 0 }
    }

    /// Forgets keys whose window has passed and that owe no count: their next alert prints
    /// with `suppressed: 0` either way.
    fn prune(&mut self, now: Timestamp) {
        let window = self.window;
        self.entries
            .retain(|_, e| e.pending > 0 || now.duration_since(e.last_printed) < window);
    }

    /// All repeats ever held back.
    pub fn suppressed_total(&self) -> u64 {
        self.suppressed_total
    }

    /// Keys with repeats held back and not yet reported on a printed alert.
    pub fn pending(&self) -> impl Iterator<Item = (&str, u64)> {
        self.entries
            .iter()
            .filter(|(_, e)| e.pending > 0)
            .map(|(k, e)| (k.as_str(), e.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn repeats_within_window_are_counted_then_reported() {
        let mut d = Dedup::new(Duration::from_hours(1));
        assert_eq!(
            d.check("k", t("2026-11-23T05:00:00Z")),
            Verdict::Print { suppressed: 0 }
        );
        assert_eq!(d.check("k", t("2026-11-23T05:00:01Z")), Verdict::Suppress);
        assert_eq!(
            d.check("k", t("2026-11-23T05:59:59.999999999Z")),
            Verdict::Suppress
        );
        assert_eq!(d.pending().collect::<Vec<_>>(), [("k", 2)]);
        // Exactly one window after the printed alert: printed again, carrying the count.
        assert_eq!(
            d.check("k", t("2026-11-23T06:00:00Z")),
            Verdict::Print { suppressed: 2 }
        );
        assert_eq!(d.pending().count(), 0);
        assert_eq!(d.check("k", t("2026-11-23T06:30:00Z")), Verdict::Suppress);
        assert_eq!(
            d.check("k", t("2026-11-23T08:00:00Z")),
            Verdict::Print { suppressed: 1 }
        );
        assert_eq!(d.suppressed_total(), 3);
    }

    #[test]
    fn keys_are_independent_and_storms_print_once_per_window() {
        let mut d = Dedup::new(Duration::from_mins(1));
        let start = t("2026-11-23T05:00:00Z");
        let mut printed = 0;
        for second in 0..180 {
            let now = start + SignedDuration::from_secs(second);
            if matches!(d.check("storm", now), Verdict::Print { .. }) {
                printed += 1;
            }
        }
        assert_eq!(printed, 3, "one per 60 s window over 180 s");
        assert_eq!(d.check("other", start), Verdict::Print { suppressed: 0 });
    }

    #[test]
    fn earlier_time_counts_as_repeat_and_zero_window_never_suppresses() {
        let mut d = Dedup::new(Duration::from_mins(1));
        assert_eq!(
            d.check("k", t("2026-11-23T05:00:00Z")),
            Verdict::Print { suppressed: 0 }
        );
        assert_eq!(d.check("k", t("2026-11-23T04:00:00Z")), Verdict::Suppress);
        let mut none = Dedup::new(Duration::ZERO);
        for _ in 0..3 {
            assert_eq!(
                none.check("k", t("2026-11-23T05:00:00Z")),
                Verdict::Print { suppressed: 0 }
            );
        }
    }

    #[test]
    fn prune_keeps_keys_that_owe_a_count() {
        let mut d = Dedup::new(Duration::from_secs(1));
        let start = t("2026-11-23T05:00:00Z");
        assert_eq!(d.check("owed", start), Verdict::Print { suppressed: 0 });
        assert_eq!(d.check("owed", start), Verdict::Suppress);
        // One key short of the sweep size: the next new key triggers the first sweep.
        for i in 0..PRUNE_ABOVE - 1 {
            d.check(&format!("k{i}"), start);
        }
        let later = start + SignedDuration::from_secs(10);
        d.check("trigger", later);
        assert!(
            d.entries.len() <= 2,
            "expired keys dropped, {} left",
            d.entries.len()
        );
        assert_eq!(d.check("owed", later), Verdict::Print { suppressed: 1 });
    }

    #[test]
    fn live_keys_are_kept_and_sweeps_back_off() {
        let mut d = Dedup::new(Duration::from_hours(1));
        let start = t("2026-11-23T05:00:00Z");
        for i in 0..PRUNE_ABOVE + 10 {
            assert_eq!(
                d.check(&format!("k{i}"), start),
                Verdict::Print { suppressed: 0 }
            );
        }
        // Nothing expired: every key is still known, and the next sweep waits for twice as many.
        assert_eq!(d.entries.len(), PRUNE_ABOVE + 10);
        assert_eq!(d.prune_at, 2 * PRUNE_ABOVE);
        assert_eq!(d.check("k0", start), Verdict::Suppress);
    }
}
