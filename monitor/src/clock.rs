//! Kernel timestamps → wall-clock RFC 3339.
//!
//! The eBPF side stamps events with `bpf_ktime_get_boot_ns()` (`CLOCK_BOOTTIME`: monotonic, counts
//! suspend). Wall time is `boottime + (realtime - boottime)`; that offset changes whenever the
//! wall clock is stepped (NTP, `date -s`), so the daemon resamples it periodically.

use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("clock_gettime({clock}) failed: {source}")]
    Gettime {
        clock: &'static str,
        source: std::io::Error,
    },
}

/// How often [`Clock::maybe_resample`] re-reads the offset.
pub const RESAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Converts `CLOCK_BOOTTIME` nanoseconds to Unix-epoch nanoseconds.
#[derive(Clone, Debug)]
pub struct Clock {
    /// `CLOCK_REALTIME` − `CLOCK_BOOTTIME`, in nanoseconds.
    offset_ns: i128,
    sampled: Instant,
}

fn gettime(clock: libc::clockid_t, name: &'static str) -> Result<i128, ClockError> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(clock, &raw mut ts) } != 0 {
        return Err(ClockError::Gettime {
            clock: name,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec))
}

/// `CLOCK_BOOTTIME` now, in nanoseconds (the kernel side's time base).
pub fn boottime_ns() -> Result<u64, ClockError> {
    let ns = gettime(libc::CLOCK_BOOTTIME, "CLOCK_BOOTTIME")?;
    Ok(u64::try_from(ns).unwrap_or(0))
}

/// Wall clock now as RFC 3339 (for records not stamped by the kernel: status, baseline).
pub fn now_rfc3339() -> String {
    let ns = gettime(libc::CLOCK_REALTIME, "CLOCK_REALTIME").unwrap_or_else(|e| {
        // clock_gettime(CLOCK_REALTIME) cannot fail with a valid pointer; keep going regardless.
        log::warn!("{e}");
        0
    });
    format_rfc3339(ns)
}

impl Clock {
    pub fn new() -> Result<Self, ClockError> {
        Ok(Self {
            offset_ns: sample_offset()?,
            sampled: Instant::now(),
        })
    }

    /// A clock with a fixed offset (tests, replay).
    pub fn with_offset(offset_ns: i128) -> Self {
        Self {
            offset_ns,
            sampled: Instant::now(),
        }
    }

    pub fn resample(&mut self) -> Result<(), ClockError> {
        self.offset_ns = sample_offset()?;
        self.sampled = Instant::now();
        Ok(())
    }

    /// Resamples when the last sample is older than [`RESAMPLE_EVERY`]; cheap enough to call
    /// once per ring-buffer batch.
    pub fn maybe_resample(&mut self) {
        if self.sampled.elapsed() >= RESAMPLE_EVERY
            && let Err(e) = self.resample()
        {
            log::warn!("keeping the previous wall-clock offset: {e}");
        }
    }

    /// Unix-epoch nanoseconds of a `CLOCK_BOOTTIME` timestamp.
    pub fn wall_ns(&self, ktime_ns: u64) -> i128 {
        i128::from(ktime_ns) + self.offset_ns
    }

    /// RFC 3339 UTC with nanoseconds of a `CLOCK_BOOTTIME` timestamp.
    pub fn rfc3339(&self, ktime_ns: u64) -> String {
        format_rfc3339(self.wall_ns(ktime_ns))
    }
}

/// Reads REALTIME between two BOOTTIME reads and keeps the tightest of a few tries, so that a
/// preemption between the reads does not skew the offset.
fn sample_offset() -> Result<i128, ClockError> {
    let mut best: Option<(i128, i128)> = None; // (window, offset)
    for _ in 0..3 {
        let b0 = gettime(libc::CLOCK_BOOTTIME, "CLOCK_BOOTTIME")?;
        let r = gettime(libc::CLOCK_REALTIME, "CLOCK_REALTIME")?;
        let b1 = gettime(libc::CLOCK_BOOTTIME, "CLOCK_BOOTTIME")?;
        let window = b1 - b0;
        let offset = r - (b0 + window / 2);
        if best.is_none_or(|(w, _)| window < w) {
            best = Some((window, offset));
        }
    }
    Ok(best.map_or(0, |(_, o)| o))
}

/// Formats Unix-epoch nanoseconds as `YYYY-MM-DDThh:mm:ss.nnnnnnnnnZ` (always 9 fractional
/// digits, UTC).
pub fn format_rfc3339(unix_ns: i128) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000);
    let nanos = unix_ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 → proleptic Gregorian (year, month, day). Howard Hinnant's
/// `civil_from_days` (<http://howardhinnant.github.io/date_algorithms.html>): eras of 400 years,
/// years starting in March so that the leap day is last.
fn civil_from_days(days: i128) -> (i128, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = 1_000_000_000;

    #[test]
    fn epoch() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(format_rfc3339(1), "1970-01-01T00:00:00.000000001Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn known_values() {
        // `date -u -d @1700000000`
        assert_eq!(
            format_rfc3339(1_700_000_000 * S),
            "2023-11-14T22:13:20.000000000Z"
        );
        // The example in the record contract.
        assert_eq!(
            format_rfc3339(1_795_410_000 * S + 123_456_789),
            "2026-11-23T05:00:00.123456789Z"
        );
        assert_eq!(
            format_rfc3339(2_147_483_647 * S),
            "2038-01-19T03:14:07.000000000Z"
        );
        assert_eq!(
            format_rfc3339(4_102_444_800 * S),
            "2100-01-01T00:00:00.000000000Z"
        );
    }

    #[test]
    fn leap_years() {
        // 2024 is a leap year: Feb 29 exists, Mar 1 follows it.
        assert_eq!(
            format_rfc3339(1_709_164_800 * S),
            "2024-02-29T00:00:00.000000000Z"
        );
        assert_eq!(
            format_rfc3339(1_709_251_200 * S),
            "2024-03-01T00:00:00.000000000Z"
        );
        // 2000 is (divisible by 400); 2100 is not (divisible by 100).
        assert_eq!(
            format_rfc3339(951_782_400 * S),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(
            format_rfc3339(4_107_456_000 * S),
            "2100-02-28T00:00:00.000000000Z"
        );
        assert_eq!(
            format_rfc3339(4_107_542_400 * S),
            "2100-03-01T00:00:00.000000000Z"
        );
        // Last second of a leap year.
        assert_eq!(
            format_rfc3339((1_735_689_600 - 1) * S),
            "2024-12-31T23:59:59.000000000Z"
        );
    }

    #[test]
    fn offset_applied() {
        let c = Clock::with_offset(1_700_000_000 * S);
        assert_eq!(
            c.rfc3339(5 * 1_000_000_000 + 42),
            "2023-11-14T22:13:25.000000042Z"
        );
    }

    #[test]
    fn live_offset_matches_realtime() {
        let c = Clock::new().unwrap();
        let boot = boottime_ns().unwrap();
        let real = gettime(libc::CLOCK_REALTIME, "CLOCK_REALTIME").unwrap();
        let diff = (c.wall_ns(boot) - real).abs();
        assert!(
            diff < 50_000_000,
            "wall clock from boottime off by {diff} ns"
        );
    }
}
