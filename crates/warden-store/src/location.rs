//! Where the database lives: `sqlite://PATH`, a plain path, `sqlite::memory:`, or a
//! PostgreSQL URL (`postgres://…` or `postgresql://…`) that several replicas share.

use std::fmt;
use std::path::PathBuf;

use crate::StoreError;

#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Memory,
    /// The URL as given (password included): shown only through [`Location`]'s `Display`,
    /// which leaves the password out.
    Postgres(String),
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
        if t.starts_with("postgres://") || t.starts_with("postgresql://") {
            let url = url_of(t)?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(StoreError::BadUrl {
                    url: redact(t),
                    reason: "no host (postgres://USER:PASSWORD@HOST:PORT/DATABASE)".into(),
                });
            }
            return Ok(Self::Postgres(t.to_owned()));
        }
        if t.contains("://") {
            return Err(StoreError::Unsupported(
                t.split("://").next().unwrap_or(t).to_owned() + "://…",
            ));
        }
        Ok(Self::Sqlite(PathBuf::from(t)))
    }

    /// Where this Warden keeps its local files (the event log, the disk checks): the SQLite
    /// file's directory; for PostgreSQL the default state directory (each replica has its
    /// own); none for an in-memory database.
    pub fn local_dir(&self) -> Option<PathBuf> {
        match self {
            Self::Sqlite(p) => Some(
                p.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."))
                    .to_owned(),
            ),
            Self::Memory => None,
            Self::Postgres(_) => default_path().parent().map(Into::into),
        }
    }

    /// Several Warden replicas can share this database.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }
}

fn url_of(t: &str) -> Result<url::Url, StoreError> {
    url::Url::parse(t).map_err(|e| StoreError::BadUrl { url: redact(t), reason: e.to_string() })
}

/// The URL without its password (and without query parameters, which may hold one).
pub(crate) fn redact(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        // Unparsable: keep the scheme only, the rest may be a secret.
        Err(_) => text.split("://").next().unwrap_or("").to_owned() + "://…",
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            Self::Memory => f.write_str("sqlite::memory:"),
            Self::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

// Debug shows what Display shows: a Location is logged, and its URL may hold a password.
impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            Self::Memory => f.write_str("Memory"),
            Self::Postgres(_) => f.debug_tuple("Postgres").field(&self.to_string()).finish(),
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
