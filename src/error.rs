//! The crate's error type and its single exit-code policy.
//!
//! Exit codes: 0 the run succeeded; 1 the run failed or was aborted (or lifeboat itself hit an
//! I/O problem); 2 bad input (a runbook that does not compile, a missing or invalid parameter,
//! an unknown run id, a store that is locked, damaged or too new); 3 the run is paused waiting
//! for a person (an approval with `--no-wait`, or a step in doubt after a crash); 4 the run
//! succeeded, partial (its runbook declared something not recovered, or a warning).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] crate::engine::Error),
    #[error(transparent)]
    Journal(#[from] crate::journal::Error),
    #[error(transparent)]
    Control(#[from] crate::control::Error),
    #[error(transparent)]
    Web(#[from] crate::web::Error),
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Engine(e) => e.exit_code(),
            Error::Journal(e) => e.exit_code(),
            Error::Control(e) => e.exit_code(),
            Error::Web(e) => e.exit_code(),
            Error::Usage(_) | Error::File { .. } => 2,
        }
    }
}
