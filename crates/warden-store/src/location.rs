//! Where the database lives: `sqlite://PATH`, a plain path, or `sqlite::memory:`.

use std::fmt;
use std::path::PathBuf;

use crate::StoreError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Memory,
}

impl Location {
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let t = text.trim();
        if t == "sqlite::memory:" || t == ":memory:" {
            return Ok(Self::Memory);
        }
        if let Some(rest) = t.strip_prefix("sqlite://").or_else(|| t.strip_prefix("sqlite:")) {
            let path = rest.split('?').next().unwrap_or(rest);
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if t.contains("://") {
            return Err(StoreError::Unsupported(
                t.split("://").next().unwrap_or(t).to_owned() + "://…",
            ));
        }
        Ok(Self::Sqlite(PathBuf::from(t)))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            Self::Memory => f.write_str("sqlite::memory:"),
        }
    }
}

/// `$XDG_STATE_HOME/warden/warden.db`, or `~/.local/state/warden/warden.db`.
pub fn default_path() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("state")))
        .unwrap_or_else(|| PathBuf::from("."));
    state.join("warden").join("warden.db")
}
