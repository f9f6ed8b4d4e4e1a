//! Email delivery over SMTP (lettre, rustls): one message per notification, built from the
//! outbox body `{subject, text}`; the credentials are added here and never stored. Errors name
//! the server and SMTP's answer, never the password. Certificates are checked against the
//! system's roots (rustls-platform-verifier, as reqwest does for webhooks), so a relay signed by
//! the organisation's own CA works. The addresses were parsed by the same lettre parser when the
//! config loaded, so `mailbox` fails only if that changed.

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;
use warden_config::{Receiver, ReceiverKind, SmtpTls};

fn mailbox(a: &str) -> Result<Mailbox, String> {
    a.parse().map_err(|e| format!("{a:?} is not an address lettre accepts: {e}"))
}

pub(super) async fn send(r: &Receiver, body: &Value) -> Result<(), String> {
    let ReceiverKind::Email { host, port, tls, from, to, username, password } = &r.kind else {
        return Err("not an email receiver".to_owned());
    };
    let mut m = Message::builder()
        .from(mailbox(from)?)
        .subject(body["subject"].as_str().unwrap_or("Warden alert"))
        .header(ContentType::TEXT_PLAIN);
    for a in to {
        m = m.to(mailbox(a)?);
    }
    let message = m
        .body(body["text"].as_str().unwrap_or_default().to_owned())
        .map_err(|e| format!("the message could not be built: {e}"))?;
    let params =
        || TlsParameters::new(host.clone()).map_err(|e| format!("TLS for {host} failed: {e}"));
    let tls = match tls {
        SmtpTls::None => Tls::None,
        SmtpTls::StartTls => Tls::Required(params()?),
        SmtpTls::Tls => Tls::Wrapper(params()?),
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
        .port(*port)
        .tls(tls)
        .timeout(Some(r.timeout));
    if let (Some(u), Some(p)) = (username, password) {
        transport = transport.credentials(Credentials::new(u.clone(), p.expose().to_owned()));
    }
    let transport = transport.build();
    match tokio::time::timeout(r.timeout, transport.send(message)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("smtp://{host}:{port}: {e}")),
        Err(_) => Err(format!("smtp://{host}:{port} did not answer within {:?}", r.timeout)),
    }
}
