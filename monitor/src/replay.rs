//! `monitor replay FILE.jsonl [--policy FILE] [--format F]`: feeds recorded `--events` output
//! through the same detection code as the live daemon and prints the alerts it would have raised,
//! one line each in the daemon's output formats, like testing a Panther rule against sample logs.
//!
//! Input lines: `{"type":"event",...}` records are judged; `"alert"` and `"status"` records are
//! skipped, except that a status record's top-level `drops` (the daemon's cumulative kernel
//! drop count) feeds `events_lost` as it did live, to the resolution of the status interval. Blank lines are skipped. Anything else
//! is bad input: a [`ReplayError`] naming the file and line, which `main` maps to exit code 2.

use std::{
    fs::File,
    io::{self, BufRead, BufReader},
    path::Path,
    sync::Arc,
};

use crate::{
    detect::Detector,
    output::{Format, Output, OutputError},
    policy::{Policy, PolicyError},
    record::{AlertRecord, Record, Recorded},
};

/// Bad input: an unreadable or malformed events file, or a bad policy. The daemon exits 2 on
/// these (`err.downcast_ref::<ReplayError>()`); other errors (writing stdout) are not input errors.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: cannot read events: {source}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}:{line}: {message}")]
    BadLine {
        path: String,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// Feeds a recorded `--events` JSONL file through the detection code and prints the alerts in
/// `format`. Errors for bad input name the file and line.
pub fn run(events: &Path, policy: Option<&Path>, format: Format) -> anyhow::Result<()> {
    let policy = match policy {
        Some(path) => Policy::from_file(path).map_err(ReplayError::from)?,
        None => Policy::embedded_default(),
    };
    let mut out = Output::with_format(io::stdout().lock(), format.encoder());
    let mut write_error: Option<OutputError> = None;
    replay_file(events, Arc::new(policy), |alert| {
        // Keep the first write failure (a closed pipe) and stop printing.
        if write_error.is_none()
            && let Err(e) = out.write(&Record::Alert(alert))
        {
            write_error = Some(e);
        }
    })?;
    write_error
        .map_or_else(|| out.flush(), Err)
        .map_err(|e| anyhow::Error::new(e).context("writing alerts to stdout"))
}

/// Every alert a file raises under `policy`, in order.
pub fn alerts_from_file(
    events: &Path,
    policy: Arc<Policy>,
) -> Result<Vec<AlertRecord>, ReplayError> {
    let mut alerts = Vec::new();
    replay_file(events, policy, |a| alerts.push(a))?;
    Ok(alerts)
}

/// Streams a file through a fresh [`Detector`], handing each alert to `emit`.
pub fn replay_file(
    events: &Path,
    policy: Arc<Policy>,
    emit: impl FnMut(AlertRecord),
) -> Result<(), ReplayError> {
    let name = events.display().to_string();
    let file = File::open(events).map_err(|source| ReplayError::Open {
        path: name.clone(),
        source,
    })?;
    replay_reader(&name, BufReader::new(file), policy, emit)
}

/// Streams JSON lines from `input` (called `name` in errors) through a fresh [`Detector`].
pub fn replay_reader(
    name: &str,
    input: impl BufRead,
    policy: Arc<Policy>,
    mut emit: impl FnMut(AlertRecord),
) -> Result<(), ReplayError> {
    let mut detector = Detector::new(policy);
    let mut drops_total = 0u64;
    for (index, line) in input.lines().enumerate() {
        let line_no = index + 1;
        let bad = |message: String| ReplayError::BadLine {
            path: name.to_owned(),
            line: line_no,
            message,
        };
        let line = line.map_err(|e| bad(format!("cannot read: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let event = match Recorded::parse(&line).map_err(|e| bad(e.to_string()))? {
            Recorded::Event(event) => event,
            Recorded::Status { drops } => {
                if let Some(drops) = drops {
                    drops_total = drops;
                }
                continue;
            }
            Recorded::Alert => continue,
        };
        // The detector dedups on event time: a replay with unusable times would not be the
        // same replay twice.
        event
            .time
            .parse::<jiff::Timestamp>()
            .map_err(|e| bad(format!("time `{}` is not RFC 3339: {e}", event.time)))?;
        for alert in detector.on_event(&event, drops_total) {
            emit(alert);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHELL_EVENT: &str = r#"{"type":"event","event":"exec","time":"2026-11-23T05:00:00.5Z","host":"web1","process":{"pid":4100,"ppid":901,"uid":33,"gid":33,"user":"www-data","comm":"sh","exe":"/usr/bin/dash","argv":["sh","-c","--","id"],"cgroup_id":1},"filename":"/bin/sh","socket":null,"ancestry":[{"pid":901,"exe":"/usr/sbin/php-fpm8.2","comm":"php-fpm8.2","argv":["php-fpm: pool www"]}]}"#;

    fn replay(text: &str) -> Result<Vec<AlertRecord>, ReplayError> {
        let mut alerts = Vec::new();
        replay_reader(
            "events.jsonl",
            text.as_bytes(),
            Arc::new(Policy::embedded_default()),
            |a| alerts.push(a),
        )?;
        Ok(alerts)
    }

    #[test]
    fn events_judged_other_records_skipped_drops_from_status() {
        let text = format!(
            "{{\"type\":\"status\",\"drops\":3}}\n\n{{\"type\":\"alert\",\"rule\":\"x\"}}\n{SHELL_EVENT}\n"
        );
        let alerts = replay(&text).expect("valid input");
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].events_lost, 3);
        assert_eq!(alerts[0].process.argv, ["sh", "-c", "--", "id"]);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let cases = [
            (
                format!("{SHELL_EVENT}\n{{oops\n"),
                "events.jsonl:2: not a JSON record",
            ),
            (
                "\n\n{\"event\":\"exec\"}\n".to_owned(),
                "events.jsonl:3: record has no string `type`",
            ),
            (
                "{\"type\":\"bogus\"}\n".to_owned(),
                "events.jsonl:1: unknown record type `bogus`",
            ),
            (
                "{\"type\":\"event\",\"event\":\"exec\"}\n".to_owned(),
                "events.jsonl:1: not an event record",
            ),
            (
                SHELL_EVENT.replace("2026-11-23T05:00:00.5Z", "yesterday"),
                "events.jsonl:1: time `yesterday` is not RFC 3339",
            ),
        ];
        for (text, expected) in cases {
            let err = replay(&text).expect_err(expected);
            assert!(matches!(err, ReplayError::BadLine { .. }));
            assert!(err.to_string().starts_with(expected), "{err} vs {expected}");
        }
    }

    #[test]
    fn missing_file_and_bad_policy_are_replay_errors() {
        let err = run(Path::new("/nonexistent/events.jsonl"), None, Format::Native)
            .expect_err("missing file");
        assert!(
            matches!(
                err.downcast_ref::<ReplayError>(),
                Some(ReplayError::Open { .. })
            ),
            "{err}"
        );
        let err = run(
            Path::new("/nonexistent/events.jsonl"),
            Some(Path::new("/nonexistent/policy.toml")),
            Format::Native,
        )
        .expect_err("missing policy");
        assert!(
            matches!(
                err.downcast_ref::<ReplayError>(),
                Some(ReplayError::Policy(_))
            ),
            "{err}"
        );
    }
}
