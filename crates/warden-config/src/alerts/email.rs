//! Email receivers (`warden.alerts.emails`): `{name, smtp: "host:port" | host + port, from,
//! to, username, password, tls: starttls|tls|none, min_severity, send_resolved, timeout}`. The
//! password is a secret (`${env:X}`): never shown, never logged.
//!
//! Addresses are parsed here with lettre's own parser, the one delivery uses: an address this
//! accepts is one every send can use, so a typo is a load error with its path instead of a
//! notification retried until it expires. (Only lettre's parser is used: no I/O.)

use crate::fields::expand_field;
use crate::model::Secret;
use crate::walk::{type_name, Diags, Obj};
use serde_json::Value;

use super::compile::receiver_common;
use super::*;

/// Why `s` is not an address delivery can use: lettre refuses it (`Name <local@domain>` or a
/// bare address), or its domain has no dot and is not `localhost` (most likely a typo).
fn address_error(s: &str) -> Option<String> {
    match s.parse::<lettre::message::Mailbox>() {
        // lettre says only "invalid input" for a mailbox; its address parser says more.
        Err(e) => {
            let bare = s.rsplit_once('<').map_or(s, |(_, a)| a.trim_end_matches('>'));
            Some(match bare.trim().parse::<lettre::Address>() {
                Err(a) => a.to_string().to_lowercase(),
                Ok(_) if bare.len() < s.len() && s.trim_end().ends_with('>') => {
                    "a name with `,` `;` `<` or `\"` in it goes in double quotes".to_owned()
                }
                Ok(_) => e.to_string().to_lowercase(),
            })
        }
        Ok(m) => {
            let domain = m.email.domain();
            (!domain.contains('.') && domain != "localhost")
                .then(|| format!("the domain {domain:?} has no dot"))
        }
    }
}

/// The SMTP server: `smtp: "host:port"`, or `host` with an optional `port` (by default 587 for
/// starttls, 465 for tls, 25 for none).
fn server(o: &mut Obj<'_>, tls: SmtpTls, d: &mut Diags) -> Option<(String, u16)> {
    let spath = o.path_of("smtp");
    let smtp = o.str("smtp", d);
    let host = o.str("host", d);
    let port = o.uint("port", 1, u64::from(u16::MAX), d).map(|p| p as u16);
    match (smtp, host) {
        (Some(_), Some(_)) => {
            d.error(&spath, "give `smtp` (\"host:port\") or `host` + `port`, not both");
            None
        }
        (None, Some(h)) => {
            let bare = h.trim_start_matches('[').trim_end_matches(']');
            if bare.parse::<std::net::Ipv6Addr>().is_ok()
                || (!bare.is_empty()
                    && !bare.contains([':', '/'])
                    && !bare.contains(char::is_whitespace))
            {
                Some((bare.to_owned(), port.unwrap_or(tls.default_port())))
            } else {
                d.error(
                    &o.path_of("host"),
                    format!("{h:?} is not a host name (the port goes in `port`)"),
                );
                None
            }
        }
        (Some(smtp), None) => {
            if o.has("port") {
                d.error(&o.path_of("port"), "goes with `host`: `smtp` already names the port");
            }
            match smtp.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() => match p.parse::<u16>() {
                    Ok(p) if p > 0 => {
                        Some((h.trim_start_matches('[').trim_end_matches(']').to_owned(), p))
                    }
                    _ => {
                        d.error(&spath, format!("{p:?} is not a port"));
                        None
                    }
                },
                _ => {
                    d.error(&spath, "must be \"host:port\" (587 for starttls, 465 for tls)");
                    None
                }
            }
        }
        (None, None) => {
            if !o.has("smtp") && !o.has("host") {
                d.error(
                    &spath,
                    "is missing: an email receiver needs its SMTP server (\"host:port\", or `host` and `port`)",
                );
            }
            None
        }
    }
}

pub(super) fn compile_email(
    mut o: Obj<'_>,
    index: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    d: &mut Diags,
) -> Option<Receiver> {
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
    let server = server(&mut o, tls, d);
    let fpath = o.path_of("from");
    let from = o.str("from", d).map(str::to_owned);
    if from.is_none() && !o.has("from") {
        d.error(&fpath, "is missing: the sender's address");
    }
    if let Some((f, why)) = from.as_deref().and_then(|f| Some((f, address_error(f)?))) {
        d.error(&fpath, format!("{f:?} is not an email address: {why}"));
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
        if let Some(why) = address_error(a) {
            d.error(path, format!("{a:?} is not an email address: {why}"));
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
    let (host, port) = server?;
    let loopback =
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if tls == SmtpTls::None && password.is_some() && !loopback {
        d.warn(&ppath, format!("is sent to {host} unencrypted (tls \"none\")"));
    }
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
    use super::address_error;

    #[test]
    fn addresses_are_what_lettre_sends_to() {
        for ok in ["a@b.c", "ops@localhost", "Warden <warden@example.org>", "\"Doe, J\" <j@x.org>"]
        {
            assert_eq!(address_error(ok), None, "{ok}");
        }
        // The last three passed a looser check once, and then failed every delivery.
        for bad in [
            "",
            "a",
            "@b.c",
            "a@",
            "a b@c.d",
            "a@b@c.d",
            "a@b",
            "a..b@c.d",
            "Doe, J <j@x.org>",
            "a@-b.c",
        ] {
            assert!(address_error(bad).is_some(), "{bad}");
        }
    }
}
