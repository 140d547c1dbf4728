//! A minimal SMTP client for `notify` through a `smtp` Connection: EHLO,
//! STARTTLS when `config.tls: starttls`, optional AUTH PLAIN/LOGIN, MAIL
//! FROM, RCPT TO per recipient, DATA with dot-stuffing, QUIT — over TCP,
//! TLS from the start with `config.tls: tls`, or in clear with `none`.
//!
//! It builds one `text/plain; charset=utf-8` message per node and must not
//! let a parameter inject headers (line breaks in header values are
//! rejected or folded away), nor fall back to clear text when TLS was asked
//! for. Replies 4xx are retryable, 5xx permanent; credentials never appear
//! in errors or logs.

use super::tls::{self, Channel, TlsError};
use crate::connections::ResolvedConnection;
use crate::node::{Attempt, LogLevel, NodeContext, NodeError};
use base64::Engine as _;
use serde_json::{Value, json};
use sluice_crds::nodes::NotifyNode;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long to wait for the connection and for each reply.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Longest reply line read (RFC 5321 allows 512; be lenient).
const MAX_LINE: usize = 8192;
/// Longest body line sent as is; longer ones force base64 (RFC 5322: 998).
const MAX_TEXT_LINE: usize = 998;

/// How the session is protected (`config.tls`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    /// In clear.
    None,
    /// In clear, then STARTTLS before anything else (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
}

/// What the connection says about the server and the sender.
struct Settings {
    host: String,
    port: u16,
    tls: TlsMode,
    /// The CA bundle to trust (`config.caFile`), else the system's.
    ca_file: Option<String>,
    from: String,
    from_address: String,
    credentials: Option<(String, String)>,
}

/// Sends `params.text` by email; returns `{delivered, channel, messageId, recipients, reply}`.
pub(super) async fn send(
    params: &NotifyNode,
    connection: &ResolvedConnection<'_>,
    attempt: &Attempt,
    context: &NodeContext,
) -> Result<Value, NodeError> {
    let settings = settings(connection)?;
    if settings.credentials.is_some() && settings.tls == TlsMode::None {
        context.logs.log(
            &attempt.node,
            LogLevel::Warn,
            "sending SMTP credentials without TLS: use a server on a network you trust",
        );
    }
    let recipients = recipients(params, connection)?;
    let addresses: Vec<String> = recipients
        .iter()
        .map(|recipient| address_of(recipient))
        .collect::<Result<_, _>>()?;
    let domain = settings
        .from_address
        .rsplit_once('@')
        .map_or("sluice.local", |(_, domain)| domain);
    let message_id = format!("<{}@{domain}>", unique_id());
    let subject = params
        .subject
        .clone()
        .unwrap_or_else(|| match context.run.workflow.as_str() {
            "" => "Message from Sluice".to_owned(),
            workflow => format!("Message from Sluice workflow {workflow}"),
        });
    let message = build_message(
        &settings.from,
        &recipients,
        &subject,
        &message_id,
        &params.text,
    );

    let redactor = connection.redactor();
    let server = format!("{}:{}", settings.host, settings.port);
    let fail = |mut error: NodeError| {
        error.message = redactor.redact(&format!("smtp server {server}: {}", error.message));
        error
    };
    let stream = tokio::time::timeout(
        TIMEOUT,
        TcpStream::connect((settings.host.as_str(), settings.port)),
    )
    .await
    .map_err(|_| NodeError::retryable("timed out connecting"))
    .and_then(|result| result.map_err(|e| NodeError::retryable(format!("failed to connect: {e}"))))
    .map_err(fail)?;
    let tls_config = match settings.tls {
        TlsMode::None => None,
        _ => Some(tls::client_config(settings.ca_file.as_deref()).map_err(|e| fail(tls_error(e)))?),
    };
    let mut session = Session {
        channel: Channel::plain(stream),
        tls_config,
        host: settings.host.clone(),
    };
    if settings.tls == TlsMode::Implicit {
        session.start_tls().await.map_err(fail)?;
    }
    let reply = session
        .deliver(&settings, &addresses, &message)
        .await
        .map_err(fail)?;
    Ok(json!({
        "delivered": true,
        "channel": "smtp",
        "messageId": message_id,
        "recipients": addresses,
        "reply": redactor.redact(&reply),
    }))
}

fn settings(connection: &ResolvedConnection<'_>) -> Result<Settings, NodeError> {
    let name = connection.name;
    let (tls, default_port) = match connection.config("tls").unwrap_or("none") {
        "none" => (TlsMode::None, 25),
        "starttls" => (TlsMode::StartTls, 587),
        "tls" => (TlsMode::Implicit, 465),
        other => {
            return Err(NodeError::permanent(format!(
                "connection {name:?} has an invalid config.tls {other:?}: use none, starttls or tls"
            )));
        }
    };
    let host = connection.config("host").ok_or_else(|| {
        NodeError::permanent(format!(
            "connection {name:?} has no config.host: set the SMTP server's host name"
        ))
    })?;
    let port = match connection.config("port") {
        Some(port) => port.parse().map_err(|_| {
            NodeError::permanent(format!("connection {name:?} has an invalid config.port {port:?}: use a number such as 25 or 587"))
        })?,
        None => default_port,
    };
    let from = connection.config("from").ok_or_else(|| {
        NodeError::permanent(format!(
            "connection {name:?} has no config.from: set the sender address"
        ))
    })?;
    let from_address = address_of(from)?;
    let credentials = match (
        connection.optional_secret("username"),
        connection.optional_secret("password"),
    ) {
        (Some(username), Some(password)) => Some((username, password)),
        (None, None) => None,
        _ => {
            return Err(NodeError::permanent(format!(
                "connection {name:?} has only one of the secret keys username and password: set both, or neither"
            )));
        }
    };
    Ok(Settings {
        host: host.to_owned(),
        port,
        tls,
        ca_file: connection.config("caFile").map(str::to_owned),
        from: from.to_owned(),
        from_address,
        credentials,
    })
}

/// `params.to`, else the connection's comma-separated `config.to`.
fn recipients(
    params: &NotifyNode,
    connection: &ResolvedConnection<'_>,
) -> Result<Vec<String>, NodeError> {
    let recipients: Vec<String> = if params.to.is_empty() {
        connection
            .config("to")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|recipient| !recipient.is_empty())
            .map(str::to_owned)
            .collect()
    } else {
        params
            .to
            .iter()
            .map(|recipient| recipient.trim().to_owned())
            .collect()
    };
    if recipients.is_empty() {
        return Err(NodeError::permanent(format!(
            "no recipients: set `to` on the node or config.to on connection {:?}",
            connection.name
        )));
    }
    Ok(recipients)
}

/// The bare address of `Name <user@host>` or `user@host`.
fn address_of(mailbox: &str) -> Result<String, NodeError> {
    let address = match (mailbox.rfind('<'), mailbox.rfind('>')) {
        (Some(open), Some(close)) if open < close => &mailbox[open + 1..close],
        _ => mailbox,
    }
    .trim();
    let valid = address.contains('@')
        && !address.starts_with('@')
        && !address.ends_with('@')
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
        && !mailbox.contains(['\r', '\n']);
    if valid {
        Ok(address.to_owned())
    } else {
        Err(NodeError::permanent(format!(
            "{mailbox:?} is not an email address: write user@example.com or Name <user@example.com>"
        )))
    }
}

fn unique_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!(
        "{nanos:x}.{:x}.{}.sluice",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The message as sent in DATA, with CRLF line ends, before dot-stuffing.
pub(super) fn build_message(
    from: &str,
    to: &[String],
    subject: &str,
    message_id: &str,
    text: &str,
) -> String {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .collect();
    let plain = text.is_ascii() && lines.iter().all(|line| line.len() <= MAX_TEXT_LINE);
    let (encoding, body) = if plain {
        ("7bit", lines.join("\r\n"))
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(lines.join("\r\n"));
        let wrapped: Vec<&str> = encoded
            .as_bytes()
            .chunks(76)
            .map(|chunk| std::str::from_utf8(chunk).unwrap_or_default())
            .collect();
        ("base64", wrapped.join("\r\n"))
    };
    let date = chrono::Utc::now().to_rfc2822();
    format!(
        "From: {from}\r\nTo: {}\r\nSubject: {}\r\nDate: {date}\r\nMessage-ID: {message_id}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n{body}\r\n",
        to.join(", "),
        encode_header(subject),
    )
}

/// A header value on one line: line breaks become spaces; non-ASCII text
/// becomes RFC 2047 encoded words.
fn encode_header(value: &str) -> String {
    let value: String = value
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    if value.is_ascii() {
        return value;
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in value.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    words.push(chunk);
    words
        .iter()
        .map(|word| {
            format!(
                "=?utf-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(word)
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// `message` dot-stuffed (RFC 5321 §4.5.2) and terminated with `CRLF.CRLF`.
pub(super) fn dot_stuff(message: &str) -> String {
    let mut stuffed = String::with_capacity(message.len() + 8);
    for line in message
        .strip_suffix("\r\n")
        .unwrap_or(message)
        .split("\r\n")
    {
        if line.starts_with('.') {
            stuffed.push('.');
        }
        stuffed.push_str(line);
        stuffed.push_str("\r\n");
    }
    stuffed.push_str(".\r\n");
    stuffed
}

struct Session {
    channel: Channel,
    /// Set when the connection asks for TLS.
    tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
    host: String,
}

/// A server reply: its code and its lines' text.
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" / "))
    }
}

impl Session {
    async fn deliver(
        &mut self,
        settings: &Settings,
        addresses: &[String],
        message: &str,
    ) -> Result<String, NodeError> {
        self.expect("the greeting", 220).await?;
        let helo_name = std::env::var("HOSTNAME")
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        let mut ehlo = self.send_and_read(&format!("EHLO {helo_name}\r\n")).await?;
        if settings.tls == TlsMode::StartTls {
            let offered = ehlo
                .lines
                .iter()
                .any(|line| line.eq_ignore_ascii_case("STARTTLS"));
            if ehlo.code != 250 || !offered {
                return Err(NodeError::permanent(
                    "the server does not offer STARTTLS: use config.tls tls (port 465) if it speaks TLS from the start",
                ));
            }
            self.command("STARTTLS\r\n", "STARTTLS", 220).await?;
            self.start_tls().await?;
            ehlo = self.send_and_read(&format!("EHLO {helo_name}\r\n")).await?;
        }
        if ehlo.code != 250 {
            self.command(&format!("HELO {helo_name}\r\n"), "HELO", 250)
                .await?;
        }
        if let Some((username, password)) = &settings.credentials {
            self.authenticate(&ehlo, username, password).await?;
        }
        self.command(
            &format!("MAIL FROM:<{}>\r\n", settings.from_address),
            "MAIL FROM",
            250,
        )
        .await?;
        for address in addresses {
            let reply = self
                .send_and_read(&format!("RCPT TO:<{address}>\r\n"))
                .await?;
            if !matches!(reply.code, 250 | 251) {
                return Err(reply_error(&format!("recipient {address}"), &reply));
            }
        }
        self.command("DATA\r\n", "DATA", 354).await?;
        self.write(&dot_stuff(message)).await?;
        let accepted = self.expect("the message", 250).await?;
        // The message is accepted; a failed QUIT changes nothing.
        let _ = self.send_and_read("QUIT\r\n").await;
        Ok(accepted.text())
    }

    async fn authenticate(
        &mut self,
        ehlo: &Reply,
        username: &str,
        password: &str,
    ) -> Result<(), NodeError> {
        let mechanisms: Vec<String> = ehlo
            .lines
            .iter()
            .filter_map(|line| {
                let upper = line.to_ascii_uppercase();
                upper
                    .strip_prefix("AUTH")
                    .map(|rest| rest.trim_start_matches(['=', ' ']).to_owned())
            })
            .flat_map(|rest| {
                rest.split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        let reply = if mechanisms.iter().any(|m| m == "PLAIN") {
            self.send_and_read(&format!(
                "AUTH PLAIN {}\r\n",
                encode(&format!("\0{username}\0{password}"))
            ))
            .await?
        } else if mechanisms.iter().any(|m| m == "LOGIN") {
            self.command("AUTH LOGIN\r\n", "AUTH LOGIN", 334).await?;
            self.command(
                &format!("{}\r\n", encode(username)),
                "the AUTH LOGIN username",
                334,
            )
            .await?;
            self.send_and_read(&format!("{}\r\n", encode(password)))
                .await?
        } else {
            return Err(NodeError::permanent(
                "the connection has a username and password, but the server offers no AUTH PLAIN or LOGIN (servers often offer AUTH only over TLS, which is not supported yet)",
            ));
        };
        if reply.code == 235 {
            return Ok(());
        }
        let mut error = reply_error("authentication", &reply);
        if reply.code == 535 || reply.code == 534 {
            error
                .message
                .push_str(": check the Secret's username and password keys");
        }
        Err(error)
    }

    async fn command(&mut self, line: &str, step: &str, expected: u16) -> Result<Reply, NodeError> {
        self.write(line).await?;
        self.expect(step, expected).await
    }

    async fn send_and_read(&mut self, line: &str) -> Result<Reply, NodeError> {
        self.write(line).await?;
        self.read_reply().await
    }

    async fn expect(&mut self, step: &str, expected: u16) -> Result<Reply, NodeError> {
        let reply = self.read_reply().await?;
        if reply.code == expected {
            Ok(reply)
        } else {
            Err(reply_error(step, &reply))
        }
    }

    async fn start_tls(&mut self) -> Result<(), NodeError> {
        let config = self
            .tls_config
            .clone()
            .ok_or_else(|| NodeError::permanent("TLS is not configured"))?;
        let connection = tls::client_connection(config, &self.host).map_err(tls_error)?;
        tokio::time::timeout(TIMEOUT, self.channel.start_tls(connection))
            .await
            .map_err(|_| NodeError::retryable("timed out in the TLS handshake"))?
            .map_err(tls_error)
    }

    async fn write(&mut self, data: &str) -> Result<(), NodeError> {
        tokio::time::timeout(TIMEOUT, self.channel.write_all(data.as_bytes()))
            .await
            .map_err(|_| NodeError::retryable("timed out sending"))?
            .map_err(|e| NodeError::retryable(format!("failed to send: {e}")))
    }

    /// Reads one reply, following `250-` continuation lines.
    async fn read_reply(&mut self) -> Result<Reply, NodeError> {
        let mut lines = Vec::new();
        loop {
            let line = tokio::time::timeout(TIMEOUT, self.channel.read_line(MAX_LINE))
                .await
                .map_err(|_| NodeError::retryable("timed out waiting for a reply"))?
                .map_err(|e| NodeError::retryable(format!("failed to read a reply: {e}")))?
                .ok_or_else(|| NodeError::retryable("the server closed the connection"))?;
            let code = line
                .get(..3)
                .and_then(|code| code.parse::<u16>().ok())
                .ok_or_else(|| {
                    NodeError::permanent(format!(
                        "the server answered something that is not SMTP: {line:?}"
                    ))
                })?;
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or_default().to_owned());
            if last {
                return Ok(Reply { code, lines });
            }
        }
    }
}

/// Certificate and configuration problems are permanent; a handshake cut
/// short by the network is retryable.
fn tls_error(error: TlsError) -> NodeError {
    let message = match &error {
        TlsError::Handshake(_) => {
            format!("{error}: check config.host, config.tls and config.caFile")
        }
        _ => error.to_string(),
    };
    match &error {
        TlsError::Handshake(io_error)
            if !matches!(
                io_error.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::Other
            ) =>
        {
            NodeError::retryable(message)
        }
        _ => NodeError::permanent(message),
    }
}

/// 4xx replies are retryable, anything else permanent.
fn reply_error(step: &str, reply: &Reply) -> NodeError {
    let message = format!("{step} was refused: {}", reply.text());
    if (400..500).contains(&reply.code) {
        NodeError::retryable(message)
    } else {
        NodeError::permanent(message)
    }
}
