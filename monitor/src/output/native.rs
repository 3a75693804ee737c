//! The native format: each [`Record`] as one JSON object with its `"type"` tag
//! (docs/alerts.md, docs/alert.schema.json). The default, and what `monitor replay` reads back.

use super::{Encode, OutputError};
use crate::record::Record;

/// JSON lines exactly as `serde` serializes [`Record`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Native;

impl Encode for Native {
    fn encode(&self, record: &Record, line: &mut Vec<u8>) -> Result<(), OutputError> {
        serde_json::to_writer(&mut *line, record)?;
        Ok(())
    }
}
