//! RFC 6570 URI template matching for resource templates: which template a `resources/read`
//! URI belongs to.
//!
//! `{var}` matches one path segment (up to the next `/`, `?` or `#`); `{+var}`, `{#var}`,
//! `{/var}`, `{?…}`, `{&…}`, `{.var}` and `{;var}` match any run of characters. Matching runs
//! over the set of positions each part of the template can end at, so it takes
//! O(template × URI) time whatever the template: a backtracking matcher took exponential time
//! on templates with several wide variables.

/// Whether `uri` matches the URI template `template`. A template with an unclosed `{` matches
/// only itself.
pub(crate) fn template_matches(template: &str, uri: &str) -> bool {
    let Some(parts) = parse(template) else { return template == uri };
    let n = uri.len();
    let bytes = uri.as_bytes();
    // next_delim[q]: where a one-segment variable starting at q must end at the latest.
    let mut next_delim = vec![n; n + 1];
    for q in (0..n).rev() {
        next_delim[q] = if matches!(bytes[q], b'/' | b'?' | b'#') { q } else { next_delim[q + 1] };
    }
    // reach[q]: the parts so far can end at byte q.
    let mut reach = vec![false; n + 1];
    reach[0] = true;
    for part in parts {
        let mut next = vec![false; n + 1];
        match part {
            Part::Lit(l) => {
                for p in (0..=n).filter(|p| reach[*p]) {
                    if uri[p..].starts_with(l) {
                        next[p + l.len()] = true;
                    }
                }
            }
            Part::Var { wide } => {
                // Every q ≥ p (wide), or p ≤ q ≤ next_delim[p] (one segment), for a reached p.
                let mut until: Option<usize> = None;
                for q in 0..=n {
                    if reach[q] {
                        let end = if wide { n } else { next_delim[q] };
                        until = Some(until.map_or(end, |u| u.max(end)));
                    }
                    next[q] = until.is_some_and(|u| q <= u) && uri.is_char_boundary(q);
                }
            }
        }
        if !next.contains(&true) {
            return false;
        }
        reach = next;
    }
    reach[n]
}

enum Part<'a> {
    Lit(&'a str),
    Var { wide: bool },
}

fn parse(template: &str) -> Option<Vec<Part<'_>>> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Lit(&rest[..open]));
        }
        let close = rest[open..].find('}')?;
        let expr = &rest[open + 1..open + close];
        parts.push(Part::Var { wide: expr.starts_with(['+', '#', '/', '?', '&', '.', ';']) });
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest));
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    use super::*;

    /// The backtracking matcher this module replaced: the meaning, without the bound.
    fn reference(template: &str, uri: &str) -> bool {
        let Some(parts) = parse(template) else { return template == uri };
        fn go(parts: &[Part<'_>], s: &str) -> bool {
            match parts.first() {
                None => s.is_empty(),
                Some(Part::Lit(l)) => s.strip_prefix(l).is_some_and(|r| go(&parts[1..], r)),
                Some(Part::Var { wide }) => {
                    let limit =
                        if *wide { s.len() } else { s.find(['/', '?', '#']).unwrap_or(s.len()) };
                    (0..=limit)
                        .rev()
                        .filter(|i| s.is_char_boundary(*i))
                        .any(|i| go(&parts[1..], &s[i..]))
                }
            }
        }
        go(&parts, uri)
    }

    #[test]
    fn uri_templates_match_like_rfc_6570() {
        assert!(template_matches("test://static/resource/{id}", "test://static/resource/12"));
        assert!(!template_matches("test://static/resource/{id}", "test://static/resource/1/2"));
        assert!(template_matches("file:///{+path}", "file:///a/b/c.txt"));
        assert!(template_matches("db://{table}/rows{?limit,offset}", "db://users/rows?limit=5"));
        assert!(template_matches("db://{table}/rows{?limit,offset}", "db://users/rows"));
        assert!(!template_matches("db://{table}/rows", "http://users/rows"));
        assert!(template_matches("plain://x", "plain://x"));
        assert!(!template_matches("plain://x", "plain://y"));
        assert!(template_matches("a://{x}é{y}", "a://éé"));
        assert!(!template_matches("a://{x", "a://b"));
    }

    #[test]
    fn many_wide_variables_against_a_long_uri_take_linear_time() {
        // The backtracking matcher needed minutes for this (every split of the URI between
        // six wide variables); here it is a few passes over 20 KB.
        let template = "x://{+a}{+b}{+c}{+d}{+e}{+f}!";
        let uri = format!("x://{}", "a".repeat(20_000));
        let start = Instant::now();
        assert!(!template_matches(template, &uri));
        assert!(template_matches(template, &format!("{uri}!")));
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    }

    fn template_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "[a-c/?#!é]{0,3}",
            Just("{x}".to_owned()),
            Just("{+x}".to_owned()),
            Just("{?q}".to_owned()),
            Just("{/p}".to_owned()),
            Just("{".to_owned()),
        ];
        prop::collection::vec(piece, 0..6).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn agrees_with_the_backtracking_reference(t in template_text(), u in "[a-c/?#!é]{0,10}") {
            prop_assert_eq!(template_matches(&t, &u), reference(&t, &u), "{} ~ {}", t, u);
        }

        #[test]
        fn any_template_against_any_long_uri_finishes_quickly(
            t in template_text(),
            u in "[a-c/?#!é]{0,40}",
            times in 1usize..400,
        ) {
            let uri = u.repeat(times);
            let start = Instant::now();
            let _ = template_matches(&t, &uri);
            prop_assert!(start.elapsed() < Duration::from_millis(200), "{:?}", start.elapsed());
        }
    }
}
