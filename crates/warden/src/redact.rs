//! Log output passes through here: every secret the config knows (values from the
//! environment, env and header values) is replaced by `***` before a byte reaches stderr or a
//! log file. This covers lines written by libraries too (rmcp logs request URLs on transport
//! errors).

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds secrets to scrub (kept longest first, so overlapping values are handled).
pub(crate) fn add(secrets: &[warden_config::Secret]) {
    let mut list = SECRETS.write().expect("not poisoned");
    list.extend(secrets.iter().map(|s| s.expose().to_owned()));
    list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    list.dedup();
}

/// Replaces every known secret in `text`.
fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// `buf` with every known secret replaced (as is when there is none).
pub(crate) fn clean(buf: &[u8]) -> Cow<'_, [u8]> {
    let secrets = SECRETS.read().expect("not poisoned");
    if secrets.is_empty() {
        return Cow::Borrowed(buf);
    }
    Cow::Owned(scrub(&String::from_utf8_lossy(buf), &secrets).into_bytes())
}

/// stderr, scrubbed. tracing-subscriber writes each event with one `write_all`.
pub(crate) struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let secrets = SECRETS.read().expect("not poisoned");
        if secrets.is_empty() {
            return io::stderr().write(buf);
        }
        let clean = scrub(&String::from_utf8_lossy(buf), &secrets);
        io::stderr().write_all(clean.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn scrubs_every_occurrence_longest_first() {
        let secrets = vec!["abcdef-123".to_owned(), "abcdef".to_owned()];
        assert_eq!(super::scrub("url?k=abcdef-123&x=abcdef", &secrets), "url?k=***&x=***");
    }
}
