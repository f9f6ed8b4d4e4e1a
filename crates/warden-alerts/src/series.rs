//! The numbers user rules can watch: every sample of Warden's own Prometheus exposition, read
//! back from its text, plus the per-instance signals the app adds.

use crate::Labels;

/// One sample: a metric name, its labels and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

impl Series {
    /// Whether every matcher label has exactly this value.
    pub fn matches(&self, matchers: &Labels) -> bool {
        matchers.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

/// Parses Prometheus / OpenMetrics text: `name{a="b",c="d"} value [timestamp]` lines, the
/// samples of the metrics `wanted` names only (the others' labels are not read: an exposition
/// of 100 instances is ~1 MB and ~10k samples); comments and lines that do not parse are
/// skipped.
pub fn parse_exposition(text: &str, wanted: impl Fn(&str) -> bool) -> Vec<Series> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| line(l, &wanted))
        .collect()
}

fn line(l: &str, wanted: impl Fn(&str) -> bool) -> Option<Series> {
    let (name, rest) = match l.find(['{', ' ']) {
        Some(i) => (&l[..i], &l[i..]),
        None => return None,
    };
    if !wanted(name) {
        return None;
    }
    let (labels, rest) =
        if let Some(body) = rest.strip_prefix('{') { labels(body)? } else { (Labels::new(), rest) };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Series { name: name.to_owned(), labels, value })
}

/// Reads `a="b",c="d"}` and returns the labels and what follows the brace.
fn labels(mut s: &str) -> Option<(Labels, &str)> {
    let mut out = Labels::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((out, rest));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        let mut chars = s[eq + 1..].char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in chars {
            match (escaped, c) {
                (true, 'n') => (value.push('\n'), escaped = false).1,
                (true, c) => (value.push(c), escaped = false).1,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                (false, c) => value.push(c),
            }
        }
        s = &s[end?..];
        out.insert(key, value);
    }
}
