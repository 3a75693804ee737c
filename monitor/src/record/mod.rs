//! Every record monitor prints, in one place: the JSON contract users, SIEM pipelines and
//! `monitor replay` rely on (docs/alerts.md, docs/alert.schema.json).
//!
//! One record per line, each with `"type"`: [`Record::Event`] (with `--events`),
//! [`Record::Alert`] and [`Record::Status`]. Records are built here (events by
//! [`EventRecord::new`], alerts by [`AlertRecord::new`]) and written only by [`crate::output`],
//! which maps this enum to an output format. Event records also deserialize, so that
//! `monitor replay` feeds recorded `--events` output through the same detection code as the live
//! daemon ([`Recorded::parse`]).

mod alert;
mod event;
mod status;

use serde::Serialize;

pub use self::{
    alert::{AlertRecord, RuleId, Severity, Verdict, WebServerVia},
    event::{
        ANCESTRY_MAX, ARGV_MAX, Ancestor, Ancestry, Classification, Endpoint, EnrichmentInfo,
        EventRecord, EventType, Family, LoginInfo, LoginMethod, MatchKind, ProcessInfo,
        ProgramIdentity, Protocol, ReputationInfo, SocketInfo, SshdPids, ToolInfo, ToolKind,
        WebServerInfo,
    },
    status::{
        AttachReport, DedupStatus, EventCounts, HookStatus, ListStatus, OutputDrops, OutputStatus,
        ProgramRuns, Refusal, ReloadError, ReloadInfo, Status, StatusRecord, TableStats,
    },
};

/// A record as printed: `{"type":"event"|"alert"|"status", ...}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Record {
    Event(EventRecord),
    Alert(AlertRecord),
    Status(StatusRecord),
}

/// One line of recorded output as `monitor replay` reads it: events in full; of a status record
/// only the kernel's cumulative drop count (it feeds `events_lost` as it did live); alerts are
/// recognised and skipped.
#[derive(Clone, Debug, PartialEq)]
pub enum Recorded {
    Event(Box<EventRecord>),
    Status { drops: Option<u64> },
    Alert,
}

/// Why a line is not a record [`Recorded::parse`] accepts.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("not a JSON record: {0}")]
    NotJson(serde_json::Error),
    #[error("record has no string `type`")]
    NoType,
    #[error("unknown record type `{0}`")]
    UnknownType(String),
    #[error("not an event record: {0}")]
    NotAnEvent(serde_json::Error),
}

impl Recorded {
    /// Parses one non-blank line.
    pub fn parse(line: &str) -> Result<Self, LineError> {
        let mut value: serde_json::Value =
            serde_json::from_str(line).map_err(LineError::NotJson)?;
        let kind = match value.get("type") {
            Some(serde_json::Value::String(kind)) => kind.as_str(),
            _ => return Err(LineError::NoType),
        };
        match kind {
            "event" => {
                // The tag is the enum's, not the struct's.
                if let Some(object) = value.as_object_mut() {
                    object.remove("type");
                }
                serde_json::from_value(value)
                    .map(|event| Self::Event(Box::new(event)))
                    .map_err(LineError::NotAnEvent)
            }
            "status" => Ok(Self::Status {
                drops: value.get("drops").and_then(serde_json::Value::as_u64),
            }),
            "alert" => Ok(Self::Alert),
            other => Err(LineError::UnknownType(other.to_owned())),
        }
    }
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn the_type_tag_comes_first_and_round_trips() {
        let event = testing::event(EventType::Exec, testing::T0, testing::python(), vec![]);
        let line = serde_json::to_string(&Record::Event(event.clone())).unwrap();
        assert!(
            line.starts_with(r#"{"type":"event","event":"exec","#),
            "{line}"
        );
        match Recorded::parse(&line).unwrap() {
            Recorded::Event(back) => assert_eq!(*back, event),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn euid_sits_beside_uid_and_older_recordings_have_none() {
        let event = testing::event(EventType::Exec, testing::T0, testing::python(), vec![]);
        let line = serde_json::to_string(&Record::Event(event)).unwrap();
        assert!(
            line.contains(r#""uid":1000,"euid":1000,"gid":1000,"#),
            "{line}"
        );
        let old = line.replace(r#""euid":1000,"#, "");
        match Recorded::parse(&old).unwrap() {
            Recorded::Event(back) => {
                assert_eq!(back.process.euid, None);
                let again = serde_json::to_string(&Record::Event(*back)).unwrap();
                assert_eq!(again, old, "no euid is written where none was read");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn status_and_alert_lines_are_recognised() {
        assert_eq!(
            Recorded::parse(r#"{"type":"status","drops":3}"#).unwrap(),
            Recorded::Status { drops: Some(3) }
        );
        assert_eq!(
            Recorded::parse(r#"{"type":"alert","rule":"x"}"#).unwrap(),
            Recorded::Alert
        );
        assert!(matches!(
            Recorded::parse(r#"{"type":7}"#),
            Err(LineError::NoType)
        ));
    }
}
