//! A cursor over one JSON object that records which keys were read, so every error carries the
//! path of its field and every unread key becomes an "unknown key" warning.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::compile::Diagnostic;
use crate::duration::parse_duration;

#[derive(Default)]
pub(crate) struct Diags {
    pub(crate) errors: Vec<Diagnostic>,
    pub(crate) warnings: Vec<Diagnostic>,
    /// The config file's directory, for relative paths in it (`envFile`); `None`: the
    /// working directory.
    pub(crate) base_dir: Option<std::path::PathBuf>,
    /// Keys of other clients that mean nothing here, and where each was found: one warning
    /// per key for the whole file (see [`Diags::flush_ignored`]).
    pub(crate) ignored: std::collections::BTreeMap<&'static str, Vec<String>>,
}

impl Diags {
    pub(crate) fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(Diagnostic { path: path.to_owned(), message: message.into() });
    }

    pub(crate) fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.warnings.push(Diagnostic { path: path.to_owned(), message: message.into() });
    }

    /// One warning per ignored foreign key, at its first place, counting the others.
    pub(crate) fn flush_ignored(&mut self) {
        for (key, paths) in std::mem::take(&mut self.ignored) {
            let why = crate::compile::IGNORED_SERVER_KEYS
                .iter()
                .find(|(k, _)| *k == key)
                .map_or("it has no meaning here", |(_, why)| why);
            let more = match paths.len() {
                1 => String::new(),
                n => format!(" (also in {} other server{})", n - 1, if n == 2 { "" } else { "s" }),
            };
            self.warn(&paths[0], format!("ignored: {why}{more}"));
        }
    }
}

pub(crate) struct Obj<'a> {
    pub(crate) path: String,
    map: &'a Map<String, Value>,
    seen: BTreeSet<&'static str>,
    /// Keys only asked about ([`Obj::has`]): known here, so a misspelling of one is suggested
    /// even when the entry lacks the key altogether.
    asked: std::cell::RefCell<BTreeSet<&'static str>>,
}

pub(crate) fn join(path: &str, key: &str) -> String {
    let simple =
        !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
    match (path.is_empty(), simple) {
        (true, true) => key.to_owned(),
        (true, false) => format!("[{key:?}]"),
        (false, true) => format!("{path}.{key}"),
        (false, false) => format!("{path}[{key:?}]"),
    }
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Obj<'a> {
    /// Wraps `value` if it is an object; otherwise records an error and returns `None`.
    pub(crate) fn new(path: String, value: &'a Value, d: &mut Diags) -> Option<Self> {
        match value {
            Value::Object(map) => {
                Some(Self { path, map, seen: BTreeSet::new(), asked: Default::default() })
            }
            other => {
                d.error(&path, format!("must be an object, not {}", type_name(other)));
                None
            }
        }
    }

    pub(crate) fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The raw value of `key` (null counts as absent), marking it read.
    pub(crate) fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.seen.insert(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn has(&self, key: &'static str) -> bool {
        self.asked.borrow_mut().insert(key);
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    pub(crate) fn str(&mut self, key: &'static str, d: &mut Diags) -> Option<&'a str> {
        match self.get(key)? {
            Value::String(s) => Some(s),
            other => {
                d.error(&self.path_of(key), format!("must be a string, not {}", type_name(other)));
                None
            }
        }
    }

    pub(crate) fn bool(&mut self, key: &'static str, d: &mut Diags) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            // Some clients write "true"/"false" as strings.
            Value::String(s) if s == "true" || s == "false" => Some(s == "true"),
            other => {
                d.error(
                    &self.path_of(key),
                    format!("must be true or false, not {}", type_name(other)),
                );
                None
            }
        }
    }

    /// A number within `min..=max` (a share, a percentage).
    pub(crate) fn ratio(
        &mut self,
        key: &'static str,
        min: f64,
        max: f64,
        d: &mut Diags,
    ) -> Option<f64> {
        let v = self.get(key)?;
        match v.as_f64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                d.error(&self.path_of(key), format!("{n} is out of range ({min} to {max})"));
                None
            }
            None => {
                d.error(&self.path_of(key), format!("must be a number, not {}", type_name(v)));
                None
            }
        }
    }

    /// A whole number within `min..=max`.
    pub(crate) fn uint(
        &mut self,
        key: &'static str,
        min: u64,
        max: u64,
        d: &mut Diags,
    ) -> Option<u64> {
        let v = self.get(key)?;
        match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                d.error(&self.path_of(key), format!("{n} is out of range ({min} to {max})"));
                None
            }
            None => {
                d.error(
                    &self.path_of(key),
                    format!("must be a whole number from {min} to {max}, not {v}"),
                );
                None
            }
        }
    }

    /// A fraction within `0.0..=max`.
    pub(crate) fn fraction(&mut self, key: &'static str, max: f64, d: &mut Diags) -> Option<f64> {
        let v = self.get(key)?;
        match v.as_f64() {
            Some(x) if (0.0..=max).contains(&x) => Some(x),
            _ => {
                d.error(&self.path_of(key), format!("must be a number from 0 to {max}, not {v}"));
                None
            }
        }
    }

    /// A duration: `"5s"`, `"500ms"`, or a number of seconds; must lie within `min..=max`.
    pub(crate) fn duration(
        &mut self,
        key: &'static str,
        min: Duration,
        max: Duration,
        d: &mut Diags,
    ) -> Option<Duration> {
        let path = self.path_of(key);
        let parsed = match self.get(key)? {
            Value::String(s) => parse_duration(s),
            Value::Number(n) => match n.as_f64() {
                // `try_from_secs_f64`: 1e308 seconds is a number but no duration.
                Some(secs) if secs >= 0.0 => Duration::try_from_secs_f64(secs)
                    .map_err(|_| format!("{n} seconds is too long to be a duration")),
                _ => Err(format!("{n} is not a duration")),
            },
            other => Err(format!("must be a duration like \"5s\", not {}", type_name(other))),
        };
        match parsed {
            Ok(dur) if dur < min || dur > max => {
                d.error(
                    &path,
                    format!(
                        "{} is out of range ({} to {})",
                        crate::format_duration(dur),
                        crate::format_duration(min),
                        crate::format_duration(max)
                    ),
                );
                None
            }
            Ok(dur) => Some(dur),
            Err(msg) => {
                d.error(&path, msg);
                None
            }
        }
    }

    pub(crate) fn obj(&mut self, key: &'static str, d: &mut Diags) -> Option<Obj<'a>> {
        let path = self.path_of(key);
        let v = self.get(key)?;
        Obj::new(path, v, d)
    }

    /// Warns about every key not read, suggesting the nearest of `known` (plus the keys read).
    /// Keys in `accepted` are known from other clients and pass silently.
    pub(crate) fn finish(self, accepted: &[&str], d: &mut Diags) {
        for key in self.map.keys() {
            if self.seen.contains(key.as_str()) || accepted.contains(&key.as_str()) {
                continue;
            }
            let asked = self.asked.borrow();
            let candidates =
                self.seen.iter().chain(asked.iter()).copied().chain(accepted.iter().copied());
            // Similar enough (Jaro-Winkler ≥ 0.8, or one edit away: on three letters
            // Jaro-Winkler misses a swap), then the fewest edits (a swap counts one: `ulr` is
            // `url`, not `urls`), then the most similar.
            let lower = key.to_lowercase();
            let best = candidates
                .map(|c| {
                    let c_lower = c.to_lowercase();
                    (
                        strsim::jaro_winkler(&lower, &c_lower),
                        strsim::osa_distance(&lower, &c_lower),
                        c,
                    )
                })
                .filter(|(score, edits, _)| *score >= 0.8 || *edits <= 1)
                .min_by(|a, b| a.1.cmp(&b.1).then(b.0.total_cmp(&a.0)));
            let msg = match best {
                Some((_, _, near)) => format!("unknown key (did you mean {near:?}?); ignored"),
                None => "unknown key; ignored".to_owned(),
            };
            d.warn(&join(&self.path, key), msg);
        }
    }
}
