//! The one way hdpflush reads and writes its JSON files, so a bench report and the evidence
//! stay alike on disk (pretty, newline-terminated) and a file that does not parse names itself.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::CliError;

/// Read `path` as JSON.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| CliError::Json {
        path: path.to_owned(),
        source,
    })
}

/// Write `value` to `path` as pretty JSON.
pub fn write<T: Serialize>(value: &T, path: &Path) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| CliError::Json {
        path: path.to_owned(),
        source,
    })?;
    std::fs::write(path, text + "\n").map_err(|e| CliError::io(path, e))
}
