//! The categories tools are sorted into, and the static classifier: the config's word first,
//! then the tool's name, then BM25 of its name and description against each category's
//! description.

use std::collections::BTreeMap;

use super::bm25::{tokens, Bm25};

/// The categories Warden ships, each described in the words its tools use.
pub(crate) const BUILTIN: [(&str, &str); 14] = [
    ("files", "file files directory directories folder folders path read write save edit move copy rename delete filesystem disk document text content tree open"),
    ("web", "web fetch url http https page pages website site browse download html markdown scrape crawl link online internet request"),
    ("search", "search find query lookup index results discover match grep locate"),
    ("database", "database sql query table row column record postgres postgresql mysql sqlite schema insert select"),
    ("memory", "memory remember forget knowledge graph entity entities relation relations observation observations note fact facts recall know person people"),
    ("code", "code git github repository repo commit branch pull request issue diff build compile lint function source"),
    ("communication", "message send email mail slack chat notify notification channel post reply"),
    ("math", "add sum plus total calculate calculation number numbers arithmetic compute math multiply divide subtract count"),
    ("time", "time date clock timezone schedule calendar now today duration"),
    ("system", "shell command process run execute system environment variable variables env os terminal"),
    ("media", "image images picture pictures photo screenshot audio video sound media render draw icon logo"),
    ("monitoring", "health status monitor monitoring metrics performance failover recovery alert uptime latency integration optimizer benchmark"),
    ("testing", "test debug echo sample demo example ping sleep wait pause error fail failing trigger long running operation progress annotated structured simulate"),
    ("ai", "sampling llm model prompt completion generate elicitation elicit ask research"),
];

/// Words in a tool's name that settle its category before any scoring.
const NAME_RULES: [(&str, &str); 18] = [
    ("file", "files"),
    ("directory", "files"),
    ("dir", "files"),
    ("fetch", "web"),
    ("url", "web"),
    ("browse", "web"),
    ("search", "search"),
    ("sql", "database"),
    ("query", "database"),
    ("entity", "memory"),
    ("entities", "memory"),
    ("relation", "memory"),
    ("git", "code"),
    ("commit", "code"),
    ("email", "communication"),
    ("image", "media"),
    ("echo", "testing"),
    ("time", "time"),
];

/// The category descriptions in force (built-in, then the config's) and an index over them.
pub(crate) struct Categories {
    pub(crate) names: Vec<String>,
    pub(crate) descriptions: Vec<String>,
    index: Bm25,
}

impl Categories {
    pub(crate) fn new(extra: &BTreeMap<String, String>) -> Self {
        let mut all: BTreeMap<String, String> =
            BUILTIN.iter().map(|(n, d)| ((*n).to_owned(), (*d).to_owned())).collect();
        for (n, d) in extra {
            all.insert(n.clone(), d.clone());
        }
        let (names, descriptions): (Vec<String>, Vec<String>) = all.into_iter().unzip();
        let docs: Vec<Vec<String>> =
            names.iter().zip(&descriptions).map(|(n, d)| tokens(&format!("{n} {d}"))).collect();
        Self { names, descriptions, index: Bm25::new(&docs) }
    }

    /// The description of category `name`, if it is one.
    pub(crate) fn description(&self, name: &str) -> Option<&str> {
        self.names.iter().position(|n| n == name).map(|i| self.descriptions[i].as_str())
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// Each category's score for `terms`.
    pub(crate) fn scores(&self, terms: &[String]) -> Vec<f64> {
        self.index.scores(terms)
    }

    /// A tool's categories when the config says nothing: a name rule, else the best-scoring
    /// category of its name (counted twice) and description, and a second one close behind.
    pub(crate) fn classify(&self, name: &str, description: &str) -> Vec<String> {
        let name_terms = tokens(name);
        for (word, cat) in NAME_RULES {
            if name_terms.iter().any(|t| t == word) && self.contains(cat) {
                return vec![cat.to_owned()];
            }
        }
        let mut terms = name_terms.clone();
        terms.extend(name_terms);
        terms.extend(tokens(description));
        let scores = self.scores(&terms);
        let mut ranked: Vec<(usize, f64)> =
            scores.into_iter().enumerate().filter(|(_, s)| *s > 0.0).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        match ranked.as_slice() {
            [] => vec!["other".to_owned()],
            [(best, top), rest @ ..] => {
                let mut out = vec![self.names[*best].clone()];
                if let Some((second, _)) = rest.first().filter(|(_, s)| *s >= 0.75 * top) {
                    out.push(self.names[*second].clone());
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_fall_into_the_categories_their_words_say() {
        let c = Categories::new(&BTreeMap::new());
        assert_eq!(c.classify("read_text_file", "Read the complete contents of a file"), ["files"]);
        assert_eq!(c.classify("fetch", "Fetches a URL from the internet"), ["web"]);
        assert_eq!(
            c.classify("create_entities", "Create multiple new entities in the knowledge graph"),
            ["memory"]
        );
        assert_eq!(c.classify("add", "Adds two numbers")[0], "math");
        assert_eq!(c.classify("xyzzy", "Plugh"), ["other"]);
        let extra = BTreeMap::from([(
            "weather".to_owned(),
            "weather forecast temperature rain".to_owned(),
        )]);
        let c = Categories::new(&extra);
        assert_eq!(c.classify("get_forecast", "Temperature and rain for a city")[0], "weather");
    }
}
