//! The one error type of the Rust core. No PyO3 here: `rust/py/mod.rs` maps each variant to the
//! matching Python exception (FileNotFoundError, PermissionError, ValueError, ...).

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum Error {
    /// A path that does not exist (-> FileNotFoundError).
    NotFound(PathBuf),
    /// A path we may not read (-> PermissionError).
    PermissionDenied(PathBuf),
    /// Any other I/O failure on a path (-> OSError).
    Io { path: PathBuf, source: std::io::Error },
    /// A tokenizer file that does not parse or lacks what the engine needs (-> ValueError).
    InvalidTokenizer(String),
    /// An option or combination of options that cannot work (-> ValueError).
    InvalidConfig(String),
    /// Input data that cannot be used as asked, e.g. a malformed JSON line in strict mode (-> ValueError).
    InvalidInput(String),
    /// A pre-tokenized cache that is truncated, corrupt or from another configuration (-> ValueError).
    CorruptCache(String),
    /// The work was cancelled (`crate::cancel`; Ctrl-C -> KeyboardInterrupt).
    Interrupted,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Classify an `std::io::Error` on `path` into the variant Python users expect.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        match source.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(path),
            std::io::ErrorKind::PermissionDenied => Error::PermissionDenied(path),
            _ => Error::Io { path, source },
        }
    }
}

/// The message for a file that lost bytes while it was being read (another process truncated it in
/// place); `fix` says how to get a good file again.
pub fn truncated_while_read(path: &Path, fix: &str) -> String {
    format!(
        "{} was truncated while it was being read (another process shrank or rewrote it in place); stop whatever writes it, then {fix}",
        path.display())
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound(p) => write!(f, "no such file or directory: {} (check the path or glob)", p.display()),
            Error::PermissionDenied(p) => write!(f, "permission denied reading {} (fix its permissions or pass another path)", p.display()),
            Error::Io { path, source } => write!(f, "I/O error on {}: {}", path.display(), source),
            Error::InvalidTokenizer(m) => write!(f, "invalid tokenizer: {m}"),
            Error::InvalidConfig(m) => write!(f, "invalid configuration: {m}"),
            Error::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Error::CorruptCache(m) => write!(f, "corrupt or mismatched cache: {m}"),
            Error::Interrupted => write!(f, "interrupted"),
        }
    }
}

impl std::error::Error for Error {}
