//! Field readers shared by every block: strings with `${env:…}`/`${secret:…}` expanded, lists
//! of strings, and maps of secrets (`env`, `headers`).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::expand::expand;
use crate::model::Secret;
use crate::walk::{join, type_name, Diags, Obj};

pub(crate) fn expand_field(
    path: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> Option<(String, bool)> {
    match expand(text, lookup) {
        Ok(r) => Some(r),
        Err(msg) => {
            d.error(path, msg);
            None
        }
    }
}

pub(crate) fn string_list<'a>(
    o: &mut Obj<'a>,
    key: &'static str,
    d: &mut Diags,
) -> Vec<(String, &'a str)> {
    let path = o.path_of(key);
    match o.get(key) {
        None => vec![],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                Value::String(s) => Some((format!("{path}[{i}]"), s.as_str())),
                other => {
                    d.error(
                        &format!("{path}[{i}]"),
                        format!("must be a string, not {}", type_name(other)),
                    );
                    None
                }
            })
            .collect(),
        Some(other) => {
            d.error(&path, format!("must be a list of strings, not {}", type_name(other)));
            vec![]
        }
    }
}

pub(crate) fn secret_map(
    o: &mut Obj<'_>,
    key: &'static str,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> BTreeMap<String, Secret> {
    let mut out = BTreeMap::new();
    let Some(map) = o.obj(key, d) else { return out };
    let base = map.path.clone();
    if let Some(Value::Object(m)) = o.get(key) {
        for (k, v) in m {
            let path = join(&base, k);
            match v {
                Value::String(s) => {
                    if let Some((value, _)) = expand_field(&path, s, lookup, d) {
                        out.insert(k.clone(), Secret::new(value));
                    }
                }
                // Numbers and booleans are common in hand-written env blocks.
                Value::Number(_) | Value::Bool(_) => {
                    out.insert(k.clone(), Secret::new(v.to_string()));
                }
                other => d.error(&path, format!("must be a string, not {}", type_name(other))),
            }
        }
    }
    out
}

/// `scheme://host[:port]` plus `/…` when there is more: credentials, path and query hidden.
pub(crate) fn origin_display(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return "…".to_owned();
    };
    let after = &url[scheme_end + 3..];
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = &after[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let more = &after[end..];
    let tail = if more.is_empty() || more == "/" { "" } else { "/…" };
    format!("{}://{host}{tail}", &url[..scheme_end])
}
