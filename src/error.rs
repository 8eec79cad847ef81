//! The CLI's errors: the library's, plus files and plots.

use std::path::PathBuf;

/// Anything that ends a command with a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// From libflush; its message names the cause and the fix.
    #[error(transparent)]
    Flush(#[from] libflush::Error),
    /// Reading or writing a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A bench, evidence or criterion JSON that does not parse.
    #[error("{}: not what hdpflush wrote: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// Drawing the SVG.
    #[error("{}: cannot draw the plot: {message}", path.display())]
    Plot {
        /// The file.
        path: PathBuf,
        /// The drawing error.
        message: String,
    },
    /// No strategy could be selected (bad `HDPFLUSH_STRATEGY`, or it names one unusable here).
    #[error("{0}")]
    Selection(String),
    /// Nothing left to benchmark.
    #[error("no strategy can run here: {0}")]
    NothingToRun(String),
}

impl CliError {
    /// An [`CliError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
