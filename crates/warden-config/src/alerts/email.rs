//! Email receivers (`warden.alerts.emails`): `{name, smtp: "host:port", from, to, username,
//! password, tls: starttls|tls|none, min_severity, send_resolved, timeout}`. The password is a
//! secret (`${env:X}`): never shown, never logged.

use crate::fields::expand_field;
use crate::model::Secret;
use crate::walk::{type_name, Diags, Obj};
use serde_json::Value;

use super::compile::receiver_common;
use super::*;

/// A plausible address: `local@domain`, no spaces, or `Name <local@domain>`.
fn address(s: &str) -> bool {
    let inner = match (s.find('<'), s.strip_suffix('>')) {
        (Some(i), Some(rest)) => &rest[i + 1..],
        _ => s,
    };
    match inner.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && (domain.contains('.') || domain == "localhost")
                && !inner.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

pub(super) fn compile_email(
    mut o: Obj<'_>,
    index: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> Option<Receiver> {
    let spath = o.path_of("smtp");
    let smtp = o.str("smtp", d);
    if smtp.is_none() && !o.has("smtp") {
        d.error(&spath, "is missing: an email receiver needs its SMTP server (\"host:port\")");
    }
    let tls = match o.str("tls", d) {
        None | Some("starttls") => SmtpTls::StartTls,
        Some("tls") => SmtpTls::Tls,
        Some("none") => SmtpTls::None,
        Some(other) => {
            d.error(
                &o.path_of("tls"),
                format!("{other:?} is not a TLS mode (use \"starttls\", \"tls\" or \"none\")"),
            );
            SmtpTls::StartTls
        }
    };
    let fpath = o.path_of("from");
    let from = o.str("from", d).map(str::to_owned);
    if from.is_none() && !o.has("from") {
        d.error(&fpath, "is missing: the sender's address");
    }
    if let Some(f) = from.as_deref().filter(|f| !address(f)) {
        d.error(&fpath, format!("{f:?} is not an email address"));
    }
    let tpath = o.path_of("to");
    let mut to = Vec::new();
    match o.get("to") {
        None => d.error(&tpath, "is missing: one address or a list of them"),
        Some(Value::String(s)) => to.push((tpath.clone(), s.clone())),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => to.push((format!("{tpath}[{i}]"), s.clone())),
                    other => d.error(
                        &format!("{tpath}[{i}]"),
                        format!("must be an email address, not {}", type_name(other)),
                    ),
                }
            }
            if items.is_empty() {
                d.error(&tpath, "is empty: name at least one address");
            }
        }
        Some(other) => d.error(
            &tpath,
            format!("must be an address or a list of them, not {}", type_name(other)),
        ),
    }
    for (path, a) in &to {
        if !address(a) {
            d.error(path, format!("{a:?} is not an email address"));
        }
    }
    let username = o.str("username", d).map(str::to_owned);
    let ppath = o.path_of("password");
    let password = o.str("password", d);
    let name = o.str("name", d).map(str::to_owned).unwrap_or_else(|| format!("email-{index}"));
    let common = receiver_common(&mut o, d);
    o.finish(&[], d);
    let password = match password {
        Some(p) => Some(Secret::new(expand_field(&ppath, p, lookup, d)?.0)),
        None => None,
    };
    if password.is_some() != username.is_some() {
        d.error(&ppath, "username and password go together");
        return None;
    }
    let (host, port) = match smtp?.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => match p.parse::<u16>() {
            Ok(p) if p > 0 => (h.trim_start_matches('[').trim_end_matches(']').to_owned(), p),
            _ => {
                d.error(&spath, format!("{p:?} is not a port"));
                return None;
            }
        },
        _ => {
            d.error(&spath, "must be \"host:port\" (587 for starttls, 465 for tls)");
            return None;
        }
    };
    Some(Receiver {
        name,
        kind: ReceiverKind::Email {
            host,
            port,
            tls,
            from: from?,
            to: to.into_iter().map(|(_, a)| a).collect(),
            username,
            password,
        },
        send_resolved: common.0,
        min_severity: common.1,
        timeout: common.2,
    })
}

#[cfg(test)]
mod tests {
    use super::address;

    #[test]
    fn addresses() {
        for ok in ["a@b.c", "ops@localhost", "Warden <warden@example.org>"] {
            assert!(address(ok), "{ok}");
        }
        for bad in ["", "a", "@b.c", "a@", "a b@c.d", "a@b@c.d", "a@b"] {
            assert!(!address(bad), "{bad}");
        }
    }
}
