//! Okapi BM25 over short texts (tool names, descriptions, parameter names; category
//! descriptions), with a tokenizer that splits `snake_case`, `camelCase` and `kebab-case`,
//! drops common English words and folds plurals and `-ing`/`-ed` endings.

use std::collections::HashMap;

const K1: f64 = 1.2;
const B: f64 = 0.75;

const STOP: [&str; 60] = [
    "a", "an", "the", "to", "of", "and", "or", "for", "in", "on", "with", "is", "it", "its",
    "this", "that", "from", "by", "as", "be", "are", "at", "me", "my", "i", "you", "your",
    "please", "can", "could", "would", "will", "what", "how", "into", "about", "some", "any",
    "all", "do", "does", "need", "want", "we", "our", "us", "if", "then", "than", "there", "here",
    "so", "up", "out", "get", "give", "which", "when", "where", "who",
];

/// Folds a lower-case word to a rough stem.
fn stem(w: &str) -> String {
    let strip = |w: &str, suffix: &str, min: usize| {
        (w.len() >= min && w.ends_with(suffix)).then(|| w[..w.len() - suffix.len()].to_owned())
    };
    strip(w, "ies", 5)
        .map(|s| s + "y")
        .or_else(|| strip(w, "ing", 6))
        .or_else(|| strip(w, "ed", 5))
        .or_else(|| if w.ends_with("ss") { None } else { strip(w, "s", 4) })
        .unwrap_or_else(|| w.to_owned())
}

/// Everyday words for what tools call otherwise, added to a query beside the word itself.
const SYNONYMS: [(&str, &[&str]); 16] = [
    ("folder", &["directory"]),
    ("picture", &["image"]),
    ("photo", &["image"]),
    ("screenshot", &["image", "media"]),
    ("plus", &["sum", "add"]),
    ("wait", &["sleep"]),
    ("pause", &["sleep"]),
    ("save", &["write", "file"]),
    ("remember", &["memory", "entity", "observation"]),
    ("forget", &["delete", "memory"]),
    ("website", &["url", "web", "fetch"]),
    ("page", &["url", "fetch"]),
    ("download", &["fetch", "url"]),
    ("show", &["read"]),
    ("open", &["read"]),
    ("print", &["read"]),
];

/// A query's terms with their synonyms.
pub(crate) fn query_terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in tokens(text) {
        if let Some((_, more)) = SYNONYMS.iter().find(|(w, _)| *w == t) {
            out.extend(more.iter().map(|m| (*m).to_owned()));
        }
        out.push(t);
    }
    out
}

/// The terms of `text`.
pub(crate) fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    let flush = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            let w = word.to_lowercase();
            if w.len() > 1 && !STOP.contains(&w.as_str()) {
                out.push(stem(&w));
            }
            word.clear();
        }
    };
    for c in text.chars() {
        if c.is_alphanumeric() {
            // camelCase: a capital after a lower-case letter starts a word.
            if c.is_uppercase() && prev_lower {
                flush(&mut word, &mut out);
            }
            prev_lower = c.is_lowercase() || c.is_ascii_digit();
            word.push(c);
        } else {
            prev_lower = false;
            flush(&mut word, &mut out);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// An index of documents given as term lists.
#[derive(Debug, Default)]
pub(crate) struct Bm25 {
    /// term → (document, term frequency)
    postings: HashMap<String, Vec<(usize, u32)>>,
    lengths: Vec<f64>,
    average: f64,
}

impl Bm25 {
    pub(crate) fn new(docs: &[Vec<String>]) -> Self {
        let mut postings: HashMap<String, Vec<(usize, u32)>> = HashMap::new();
        for (i, doc) in docs.iter().enumerate() {
            let mut tf: HashMap<&str, u32> = HashMap::new();
            for t in doc {
                *tf.entry(t).or_default() += 1;
            }
            for (t, n) in tf {
                postings.entry(t.to_owned()).or_default().push((i, n));
            }
        }
        let lengths: Vec<f64> = docs.iter().map(|d| d.len() as f64).collect();
        let average = if lengths.is_empty() {
            1.0
        } else {
            (lengths.iter().sum::<f64>() / lengths.len() as f64).max(1.0)
        };
        Self { postings, lengths, average }
    }

    /// Each document's score for `query` (terms repeated in the query count once).
    pub(crate) fn scores(&self, query: &[String]) -> Vec<f64> {
        let mut scores = vec![0.0; self.lengths.len()];
        let n = self.lengths.len() as f64;
        let mut seen: Vec<&str> = Vec::new();
        for t in query {
            if seen.contains(&t.as_str()) {
                continue;
            }
            seen.push(t);
            let Some(list) = self.postings.get(t) else { continue };
            let df = list.len() as f64;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for &(doc, tf) in list {
                let tf = f64::from(tf);
                let norm = 1.0 - B + B * self.lengths[doc] / self.average;
                scores[doc] += idf * tf * (K1 + 1.0) / (tf + K1 * norm);
            }
        }
        scores
    }

    /// The query terms that occur in the index (to say why something matched).
    pub(crate) fn known<'q>(&self, query: &'q [String]) -> Vec<&'q str> {
        let mut out: Vec<&str> = Vec::new();
        for t in query {
            if self.postings.contains_key(t) && !out.contains(&t.as_str()) {
                out.push(t);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_cases_drop_stop_words_and_fold_endings() {
        assert_eq!(tokens("read_file"), ["read", "file"]);
        assert_eq!(tokens("getTinyImage"), ["tiny", "image"]);
        assert_eq!(
            tokens("Please list the files in my directories"),
            ["list", "file", "directory"]
        );
        assert_eq!(tokens("fetching URLs, searched pages"), ["fetch", "url", "search", "page"]);
        assert_eq!(tokens("class access"), ["class", "access"]);
    }

    #[test]
    fn the_document_that_shares_rare_terms_wins() {
        let docs: Vec<Vec<String>> =
            ["read file from disk", "fetch web page url", "add two numbers"]
                .iter()
                .map(|d| tokens(d))
                .collect();
        let idx = Bm25::new(&docs);
        let s = idx.scores(&tokens("download a web page"));
        assert!(s[1] > 0.0 && s[0] == 0.0 && s[2] == 0.0, "{s:?}");
        assert_eq!(idx.known(&tokens("download a web page")), ["web", "page"]);
    }
}
