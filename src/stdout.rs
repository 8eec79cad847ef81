//! Where every command's output goes.

use crate::error::CliError;

/// Write `text` to stdout. A closed pipe (`hdpflush bench | head`) means the reader is done,
/// not that the command failed.
pub fn emit(text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::io("<stdout>", e)),
        _ => Ok(()),
    }
}
