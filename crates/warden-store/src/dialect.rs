//! Where SQLite's and PostgreSQL's SQL differ. Everything else is written once.
//!
//! Timestamps are RFC 3339 text in both engines (`writer::ts`): PostgreSQL reads them with
//! `CAST(… AS TIMESTAMPTZ)` where arithmetic on them is needed.

use std::path::Path;

use crate::{Backend, StoreError};

impl Backend {
    /// Whole seconds since the Unix epoch of a timestamp column, as an integer, rounded down.
    /// (SQLite's `strftime('%s')` rounds to the millisecond first, so the fraction is cut off
    /// before: `…T12:00:59.9996Z` is second 59 in both engines.)
    pub(crate) fn epoch_seconds(self, column: &str) -> String {
        match self {
            Self::Sqlite => format!("CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER)"),
            Self::Postgres => {
                format!("CAST(FLOOR(EXTRACT(EPOCH FROM CAST({column} AS TIMESTAMPTZ))) AS BIGINT)")
            }
        }
    }

    /// The database's clock now, as timestamp text (UTC, RFC 3339). The fleet compares only
    /// this clock, never a replica's.
    pub(crate) fn now_text(self) -> &'static str {
        match self {
            // Six fraction digits, as the store's own timestamps (`writer::ts`) have.
            Self::Sqlite => "(strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z')",
            Self::Postgres => {
                "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
            }
        }
    }

    /// Seconds since the Unix epoch of a timestamp expression, with their fraction.
    pub(crate) fn epoch_fraction(self, expr: &str) -> String {
        match self {
            Self::Sqlite => format!("((julianday({expr}) - 2440587.5) * 86400.0)"),
            Self::Postgres => {
                format!("CAST(EXTRACT(EPOCH FROM CAST({expr} AS TIMESTAMPTZ)) AS DOUBLE PRECISION)")
            }
        }
    }

    /// Seconds from a timestamp column to the database's clock now, as a double: how long ago
    /// a replica last beat, by the only clock the fleet compares.
    pub(crate) fn seconds_since(self, column: &str) -> String {
        format!(
            "CAST({} - {} AS DOUBLE PRECISION)",
            self.epoch_fraction(self.now_text()),
            self.epoch_fraction(column)
        )
    }

    /// The UTC hour of day (0–23) of a timestamp column, as an integer.
    pub(crate) fn hour_of_day(self, column: &str) -> String {
        match self {
            Self::Sqlite => format!("CAST(strftime('%H', {column}) AS INTEGER)"),
            Self::Postgres => format!(
                "CAST(EXTRACT(HOUR FROM CAST({column} AS TIMESTAMPTZ) AT TIME ZONE 'UTC') AS BIGINT)"
            ),
        }
    }

    /// A number at `path` (keys, outermost first) in a JSON text column, as a double.
    pub(crate) fn json_number(self, column: &str, path: &[&str]) -> String {
        match self {
            Self::Sqlite => format!("CAST(json_extract({column}, '$.{}') AS REAL)", path.join(".")),
            Self::Postgres => format!(
                "CAST(CAST({column} AS JSONB) #>> '{{{}}}' AS DOUBLE PRECISION)",
                path.join(",")
            ),
        }
    }

    /// A string at `path` in a JSON text column.
    pub(crate) fn json_string(self, column: &str, path: &[&str]) -> String {
        match self {
            Self::Sqlite => format!("json_extract({column}, '$.{}')", path.join(".")),
            Self::Postgres => format!("(CAST({column} AS JSONB) #>> '{{{}}}')", path.join(",")),
        }
    }

    /// The scalar (two-argument) maximum and minimum functions.
    pub(crate) fn greatest(self) -> &'static str {
        match self {
            Self::Sqlite => "MAX",
            Self::Postgres => "GREATEST",
        }
    }

    pub(crate) fn least(self) -> &'static str {
        match self {
            Self::Sqlite => "MIN",
            Self::Postgres => "LEAST",
        }
    }

    /// `(haystack, needle)` → the 1-based position of needle, 0 when absent.
    pub(crate) fn position(self) -> &'static str {
        match self {
            Self::Sqlite => "instr",
            Self::Postgres => "strpos",
        }
    }
}

/// `sqlite:///ABSOLUTE/PATH?mode=rwc` for a file path (created when missing). sqlx reads the
/// path back percent-decoded, so `%`, `?` and `#` in it are encoded.
pub(crate) fn sqlite_url(path: &Path) -> Result<String, StoreError> {
    let absolute = std::path::absolute(path)
        .map_err(|source| StoreError::CreateDir { path: path.display().to_string(), source })?;
    let Some(text) = absolute.to_str() else {
        return Err(StoreError::BadUrl {
            url: absolute.display().to_string(),
            reason: "the database path is not valid UTF-8".into(),
        });
    };
    let mut encoded = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '%' => encoded.push_str("%25"),
            '?' => encoded.push_str("%3F"),
            '#' => encoded.push_str("%23"),
            c => encoded.push(c),
        }
    }
    Ok(format!("sqlite://{encoded}?mode=rwc"))
}
