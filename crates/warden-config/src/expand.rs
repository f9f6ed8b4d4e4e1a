//! `${env:VAR}`, `${VAR}` and `${VAR:-default}` expansion from the environment.

/// Expands every reference in `text`. Returns the expanded text and whether anything was
/// substituted (a substituted value is treated as a secret in every output).
pub(crate) fn expand(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, bool), String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut substituted = false;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unterminated \"${{\" in {:?}", redact_hint(text)));
        };
        let inner = &after[..end];
        let inner = inner.strip_prefix("env:").unwrap_or(inner);
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("\"${{{inner}}}\" is not a valid variable reference"));
        }
        match lookup(name).or_else(|| default.map(str::to_owned)) {
            Some(value) => out.push_str(&value),
            None => return Err(format!("environment variable {name} is not set")),
        }
        substituted = true;
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, substituted))
}

fn redact_hint(text: &str) -> String {
    text.chars().take(24).collect()
}
