//! `notify` tests for email, against an SMTP server written here (plain,
//! STARTTLS and implicit TLS) on 127.0.0.1.

use super::NotifyNode;
use super::smtp::{build_message, dot_stuff};
use super::tls::Channel;
use crate::node::{Node, NodeContext, NodeError};
use crate::nodes::http::testing::{
    RecordedLogs, TestConnections, attempt, closed_port_url, connections, context,
};
use base64::Engine as _;
use serde_json::{Value, json};
use sluice_crds::ConnectionType;
use std::sync::{Arc, Mutex};

async fn run(context: &NodeContext, params: Value) -> Result<Value, NodeError> {
    NotifyNode.execute(params, &attempt(), context).await
}

/// How the test SMTP server behaves.
#[derive(Clone, Default)]
struct SmtpBehaviour {
    /// Mechanisms advertised in EHLO, e.g. "PLAIN LOGIN"; none when empty.
    auth: &'static str,
    /// The credentials it accepts.
    credentials: Option<(&'static str, &'static str)>,
    /// Recipients refused, with the reply.
    refuse: Option<(&'static str, &'static str)>,
    /// TLS the server speaks.
    tls: ServerTls,
}

#[derive(Clone, Copy, Default, PartialEq)]
enum ServerTls {
    #[default]
    None,
    /// Offers STARTTLS.
    StartTls,
    /// TLS from the first byte.
    Implicit,
}

/// A test CA (valid 2000–2100) and a certificate it issued for localhost
/// and 127.0.0.1, with its key: test material only.
const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBZjCCAQugAwIBAgIBATAKBggqhkjOPQQDAjAZMRcwFQYDVQQDDA5TbHVpY2Ug
VGVzdCBDQTAgFw0wMDAxMDEwMDAwMDBaGA8yMTAwMDEwMTAwMDAwMFowGTEXMBUG
A1UEAwwOU2x1aWNlIFRlc3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARr
o/l64leXwLhzFtpOM5fbkkl1EDjBpOSLGL7RN7ikhkqbZ5bYI+gUuKehI626V4RN
SJV1G2GgwSEmMWFpHU8do0IwQDAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQE
AwICBDAdBgNVHQ4EFgQUOylB9zhF7gwzyin+f/VYQrlbpIIwCgYIKoZIzj0EAwID
SQAwRgIhANkAi3bmzm73SHc4kRFp51fSLzOPaOX+PEi8abFtzwuwAiEA2AA8EXLg
Lq0Q1O0N8o2e6NVokRFKIZ25vO58amli5bk=
-----END CERTIFICATE-----";
const TEST_SERVER_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBsjCCAVegAwIBAgIBAjAKBggqhkjOPQQDAjAZMRcwFQYDVQQDDA5TbHVpY2Ug
VGVzdCBDQTAgFw0wMDAxMDEwMDAwMDBaGA8yMTAwMDEwMTAwMDAwMFowFDESMBAG
A1UEAwwJbG9jYWxob3N0MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEng5/JFHh
uI3BLKV//ajuMFyxYrVuXOcRR2g6pxctsUQfvJ7FStFvOsLG+qgTAgNqs6J67q/O
ojRIZCg8i9QjaKOBkjCBjzAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwDAYD
VR0TAQH/BAIwADAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUHAwEw
HQYDVR0OBBYEFIJtH1Rs33XQ5wv0RiQVT9BkJsDFMB8GA1UdIwQYMBaAFDspQfc4
Re4MM8op/n/1WEK5W6SCMAoGCCqGSM49BAMCA0kAMEYCIQDhO99vrlsjzYOWinT7
X12sy07GXTJFmhssB2GP+HAsUgIhAOOYtqVhJ1T+b9dQYx0iPylZDBTKmFT+SfZV
Mgd7Wb4p
-----END CERTIFICATE-----";
const TEST_SERVER_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQggg+cMdlKnL0uYjHK
h/x/QBUG8dT3/tk/KROlYD7lqCKhRANCAASeDn8kUeG4jcEspX/9qO4wXLFitW5c
5xFHaDqnFy2xRB+8nsVK0W86wsb6qBMCA2qzonrur86iNEhkKDyL1CNo
-----END PRIVATE KEY-----";

fn server_tls() -> rustls::Connection {
    use rustls::pki_types::pem::PemObject as _;
    let certificate =
        rustls::pki_types::CertificateDer::from_pem_slice(TEST_SERVER_CERT.as_bytes()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(TEST_SERVER_KEY.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certificate], key)
    .unwrap();
    rustls::ServerConnection::new(Arc::new(config))
        .unwrap()
        .into()
}

/// A temporary file holding the test CA, for `config.caFile`.
fn test_ca_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), TEST_CA).unwrap();
    file
}

/// What one SMTP session sent.
#[derive(Debug, Default, Clone)]
struct Session {
    commands: Vec<String>,
    /// The DATA section exactly as received, dot-stuffing included.
    data: String,
    /// Whether the message came through TLS.
    tls: bool,
}

async fn smtp_server(behaviour: SmtpBehaviour) -> (u16, Arc<Mutex<Vec<Session>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sessions: Arc<Mutex<Vec<Session>>> = Arc::default();
    let recorded = Arc::clone(&sessions);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let behaviour = behaviour.clone();
            let recorded = Arc::clone(&recorded);
            tokio::spawn(async move {
                let session = serve_smtp(stream, behaviour).await;
                recorded.lock().unwrap().push(session);
            });
        }
    });
    (port, sessions)
}

async fn serve_smtp(stream: tokio::net::TcpStream, behaviour: SmtpBehaviour) -> Session {
    let mut channel = Channel::plain(stream);
    let mut session = Session::default();
    if behaviour.tls == ServerTls::Implicit {
        channel.start_tls(server_tls()).await.unwrap();
        session.tls = true;
    }
    let decode = |text: &str| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .unwrap(),
        )
        .unwrap()
    };
    let mut authenticated = behaviour.credentials.is_none();
    channel
        .write_all(b"220 test.local ESMTP ready\r\n")
        .await
        .unwrap();
    while let Ok(Some(line)) = channel.read_line(1 << 20).await {
        session.commands.push(line.clone());
        let upper = line.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            let mut reply = "250-test.local\r\n".to_owned();
            if behaviour.tls == ServerTls::StartTls && !session.tls {
                reply.push_str("250-STARTTLS\r\n");
            }
            if !behaviour.auth.is_empty() {
                reply.push_str(&format!("250-AUTH {}\r\n", behaviour.auth));
            }
            reply + "250 8BITMIME"
        } else if upper == "STARTTLS" {
            channel.write_all(b"220 2.0.0 go ahead\r\n").await.unwrap();
            channel.start_tls(server_tls()).await.unwrap();
            session.tls = true;
            continue;
        } else if let Some(encoded) = line.strip_prefix("AUTH PLAIN ") {
            let (user, password) = behaviour.credentials.unwrap();
            authenticated = decode(encoded) == format!("\0{user}\0{password}");
            if authenticated {
                "235 2.7.0 ok"
            } else {
                "535 5.7.8 bad credentials"
            }
            .to_owned()
        } else if upper == "AUTH LOGIN" {
            let (user, password) = behaviour.credentials.unwrap();
            channel.write_all(b"334 VXNlcm5hbWU6\r\n").await.unwrap();
            let given_user = decode(&channel.read_line(1 << 20).await.unwrap().unwrap());
            channel.write_all(b"334 UGFzc3dvcmQ6\r\n").await.unwrap();
            let given_password = decode(&channel.read_line(1 << 20).await.unwrap().unwrap());
            authenticated = given_user == user && given_password == password;
            if authenticated {
                "235 2.7.0 ok"
            } else {
                "535 5.7.8 bad credentials"
            }
            .to_owned()
        } else if upper.starts_with("MAIL FROM:") {
            if authenticated {
                "250 2.1.0 ok"
            } else {
                "530 5.7.0 authentication required"
            }
            .to_owned()
        } else if upper.starts_with("RCPT TO:") {
            match behaviour.refuse {
                Some((address, reply)) if line.contains(address) => reply.to_owned(),
                _ => "250 2.1.5 ok".to_owned(),
            }
        } else if upper == "DATA" {
            channel
                .write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                .await
                .unwrap();
            while let Ok(Some(data_line)) = channel.read_line(1 << 20).await {
                if data_line == "." {
                    break;
                }
                session.data.push_str(&data_line);
                session.data.push_str("\r\n");
            }
            "250 2.0.0 Ok: queued as 4F2A".to_owned()
        } else if upper == "QUIT" {
            channel.write_all(b"221 2.0.0 bye\r\n").await.unwrap();
            break;
        } else {
            "502 5.5.2 unknown command".to_owned()
        };
        channel
            .write_all(format!("{reply}\r\n").as_bytes())
            .await
            .unwrap();
    }
    session
}

fn smtp_connections(
    port: u16,
    extra: &[(&str, &str)],
    secrets: &[(&str, &str)],
) -> TestConnections {
    let port = port.to_string();
    let mut config = vec![
        ("host", "127.0.0.1"),
        ("port", port.as_str()),
        ("from", "Sluice <sluice@example.com>"),
    ];
    config.extend_from_slice(extra);
    connections(&[("mail", ConnectionType::Smtp, &config, secrets)])
}

/// The message's headers (by name) and its body, un-stuffed.
fn parse_message(data: &str) -> (std::collections::BTreeMap<String, String>, String) {
    let unstuffed: Vec<&str> = data
        .trim_end_matches("\r\n")
        .split("\r\n")
        .map(|line| line.strip_prefix('.').unwrap_or(line))
        .collect();
    let blank = unstuffed.iter().position(|line| line.is_empty()).unwrap();
    let headers = unstuffed[..blank]
        .iter()
        .map(|line| {
            let (name, value) = line.split_once(": ").unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect();
    (headers, unstuffed[blank + 1..].join("\n"))
}

#[tokio::test]
async fn smtp_delivers_a_dot_stuffed_message_to_every_recipient() {
    let (port, sessions) = smtp_server(SmtpBehaviour::default()).await;
    let connections = smtp_connections(
        port,
        &[("to", "ops@example.com, Oncall <oncall@example.com>")],
        &[],
    );
    let context = context(&connections, Arc::default());
    let text = "Disk full on node-1.\n.hidden line\n..two dots\n.\nend";
    let output = run(
        &context,
        json!({"connection": "mail", "text": text, "subject": "Disk\r\nBcc: evil@example.com"}),
    )
    .await
    .unwrap();
    assert_eq!(output["delivered"], true);
    assert_eq!(
        output["recipients"],
        json!(["ops@example.com", "oncall@example.com"])
    );
    assert_eq!(output["reply"], "250 2.0.0 Ok: queued as 4F2A");

    let session = sessions.lock().unwrap()[0].clone();
    let commands: Vec<&str> = session.commands.iter().map(String::as_str).collect();
    assert!(commands[0].starts_with("EHLO "));
    assert_eq!(
        commands[1..],
        [
            "MAIL FROM:<sluice@example.com>",
            "RCPT TO:<ops@example.com>",
            "RCPT TO:<oncall@example.com>",
            "DATA",
            "QUIT"
        ]
    );
    assert!(
        session
            .data
            .contains("\r\n..hidden line\r\n...two dots\r\n..\r\nend\r\n"),
        "{:?}",
        session.data
    );
    let (headers, body) = parse_message(&session.data);
    assert_eq!(body, text);
    assert_eq!(headers["From"], "Sluice <sluice@example.com>");
    assert_eq!(
        headers["To"],
        "ops@example.com, Oncall <oncall@example.com>"
    );
    assert_eq!(
        headers["Subject"], "Disk  Bcc: evil@example.com",
        "line breaks cannot inject headers"
    );
    assert_eq!(headers["Message-ID"], output["messageId"].as_str().unwrap());
    assert!(headers["Message-ID"].ends_with("@example.com>"));
    assert_eq!(headers["MIME-Version"], "1.0");
    assert_eq!(headers["Content-Type"], "text/plain; charset=utf-8");
    assert!(chrono::DateTime::parse_from_rfc2822(&headers["Date"]).is_ok());
}

#[tokio::test]
async fn smtp_authenticates_with_plain_or_login() {
    for mechanisms in ["PLAIN LOGIN", "LOGIN"] {
        let (port, sessions) = smtp_server(SmtpBehaviour {
            auth: mechanisms,
            credentials: Some(("mailer", "CANARY-smtp-pass")),
            ..SmtpBehaviour::default()
        })
        .await;
        let credentials = [("username", "mailer"), ("password", "CANARY-smtp-pass")];
        let connections = smtp_connections(port, &[], &credentials);
        let logs = Arc::new(RecordedLogs::default());
        let context = context(&connections, Arc::clone(&logs));
        let output = run(
            &context,
            json!({"connection": "mail", "text": "hi", "to": ["a@example.com"]}),
        )
        .await;
        assert_eq!(output.unwrap()["delivered"], true, "{mechanisms}");
        let commands = sessions.lock().unwrap()[0].commands.join("\n");
        assert!(
            commands.contains(&format!("AUTH {}", mechanisms.split(' ').next().unwrap())),
            "{commands}"
        );
        assert!(
            logs.0
                .lock()
                .unwrap()
                .iter()
                .any(|line| line.contains("without TLS"))
        );

        let wrong = smtp_connections(
            port,
            &[],
            &[("username", "mailer"), ("password", "CANARY-wrong")],
        );
        let context = self::context(&wrong, Arc::default());
        let error = run(
            &context,
            json!({"connection": "mail", "text": "hi", "to": ["a@example.com"]}),
        )
        .await
        .unwrap_err();
        assert!(!error.retryable, "{error:?}");
        assert!(
            error.message.contains("535") && error.message.contains("password keys"),
            "{}",
            error.message
        );
        assert!(!error.message.contains("CANARY"), "{}", error.message);
    }
}

#[tokio::test]
async fn smtp_refusals_and_unreachable_servers_are_classified() {
    for (reply, retryable) in [
        ("550 5.1.1 no such user", false),
        ("451 4.3.0 try later", true),
    ] {
        let (port, _) = smtp_server(SmtpBehaviour {
            refuse: Some(("gone@example.com", reply)),
            ..SmtpBehaviour::default()
        })
        .await;
        let connections = smtp_connections(port, &[], &[]);
        let context = context(&connections, Arc::default());
        let error = run(&context, json!({"connection": "mail", "text": "hi", "to": ["ok@example.com", "gone@example.com"]}))
            .await
            .unwrap_err();
        assert_eq!(error.retryable, retryable, "{error:?}");
        assert!(
            error.message.contains("gone@example.com") && error.message.contains(reply),
            "{}",
            error.message
        );
    }
    let port = closed_port_url()
        .await
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let connections = smtp_connections(port, &[("to", "a@example.com")], &[]);
    let context = context(&connections, Arc::default());
    assert!(
        run(&context, json!({"connection": "mail", "text": "hi"}))
            .await
            .unwrap_err()
            .retryable
    );
}

#[tokio::test]
async fn smtp_configuration_mistakes_are_permanent() {
    let (port, _) = smtp_server(SmtpBehaviour::default()).await;
    for (extra, params, expected) in [
        (
            vec![("tls", "ssl")],
            json!({"to": ["a@example.com"]}),
            "use none, starttls or tls",
        ),
        (
            vec![("tls", "starttls")],
            json!({"to": ["a@example.com"]}),
            "does not offer STARTTLS",
        ),
        (
            vec![("tls", "tls"), ("caFile", "/nonexistent/ca.pem")],
            json!({"to": ["a@example.com"]}),
            "failed to load CA certificates",
        ),
        (vec![], json!({}), "no recipients"),
        (
            vec![],
            json!({"to": ["not-an-address"]}),
            "not an email address",
        ),
        (
            vec![],
            json!({"to": ["a@example.com>\r\nRCPT TO:<b@example.com"]}),
            "not an email address",
        ),
    ] {
        let connections = smtp_connections(port, &extra, &[]);
        let context = context(&connections, Arc::default());
        let mut params = params;
        params["connection"] = json!("mail");
        params["text"] = json!("hi");
        let error = run(&context, params).await.unwrap_err();
        assert!(
            !error.retryable && error.message.contains(expected),
            "{expected}: {error:?}"
        );
    }
    let (port, _) = smtp_server(SmtpBehaviour::default()).await;
    let connections = smtp_connections(
        port,
        &[("to", "a@example.com")],
        &[("username", "only-user")],
    );
    let context = context(&connections, Arc::default());
    let error = run(&context, json!({"connection": "mail", "text": "hi"}))
        .await
        .unwrap_err();
    assert!(error.message.contains("only one of"), "{error:?}");
}

#[test]
fn non_ascii_and_long_lines_are_base64_and_subjects_encoded() {
    let message = build_message(
        "a@example.com",
        &["b@example.com".to_owned()],
        "Grüße",
        "<id@example.com>",
        "Grüße\nzweite",
    );
    assert!(
        message.contains("Subject: =?utf-8?B?R3LDvMOfZQ==?=\r\n"),
        "{message}"
    );
    assert!(message.contains("Content-Transfer-Encoding: base64\r\n"));
    let body = message
        .split("\r\n\r\n")
        .nth(1)
        .unwrap()
        .replace("\r\n", "");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), "Grüße\r\nzweite");

    let long = "x".repeat(1200);
    assert!(build_message("a@example.com", &[], "s", "<i@e>", &long).contains("base64"));
    assert_eq!(dot_stuff("a\r\n.b\r\n"), "a\r\n..b\r\n.\r\n");
}

#[tokio::test]
async fn smtp_starttls_and_implicit_tls_verify_the_server_and_protect_auth() {
    let ca_file = test_ca_file();
    let ca_path = ca_file.path().to_str().unwrap().to_owned();
    for (server_tls, mode) in [
        (ServerTls::StartTls, "starttls"),
        (ServerTls::Implicit, "tls"),
    ] {
        let (port, sessions) = smtp_server(SmtpBehaviour {
            auth: "PLAIN",
            credentials: Some(("mailer", "CANARY-tls-pass")),
            tls: server_tls,
            ..SmtpBehaviour::default()
        })
        .await;
        let config = [
            ("tls", mode),
            ("caFile", ca_path.as_str()),
            ("to", "a@example.com"),
        ];
        let credentials = [("username", "mailer"), ("password", "CANARY-tls-pass")];
        let connections = smtp_connections(port, &config, &credentials);
        let logs = Arc::new(RecordedLogs::default());
        let context = context(&connections, Arc::clone(&logs));
        let output = run(&context, json!({"connection": "mail", "text": "over TLS"}))
            .await
            .unwrap();
        assert_eq!(output["delivered"], true, "{mode}");
        let session = sessions.lock().unwrap()[0].clone();
        assert!(session.tls, "{mode}: the message went through TLS");
        assert!(session.data.contains("over TLS"));
        if server_tls == ServerTls::StartTls {
            let commands: Vec<&str> = session
                .commands
                .iter()
                .map(|c| c.split(' ').next().unwrap())
                .collect();
            assert_eq!(
                commands[..4],
                ["EHLO", "STARTTLS", "EHLO", "AUTH"],
                "AUTH only after STARTTLS"
            );
        }
        assert!(
            !logs
                .0
                .lock()
                .unwrap()
                .iter()
                .any(|line| line.contains("without TLS"))
        );
    }

    // A server whose certificate the connection does not trust: no fallback to clear text.
    let other_ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(other_ca.path(), TEST_SERVER_CERT).unwrap();
    let (port, sessions) = smtp_server(SmtpBehaviour {
        tls: ServerTls::StartTls,
        ..SmtpBehaviour::default()
    })
    .await;
    let config = [
        ("tls", "starttls"),
        ("caFile", other_ca.path().to_str().unwrap()),
        ("to", "a@example.com"),
    ];
    let connections = smtp_connections(port, &config, &[]);
    let context = context(&connections, Arc::default());
    let error = run(&context, json!({"connection": "mail", "text": "secret"}))
        .await
        .unwrap_err();
    assert!(
        !error.retryable && error.message.contains("TLS handshake failed"),
        "{error:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        sessions
            .lock()
            .unwrap()
            .iter()
            .all(|session| session.data.is_empty())
    );
}
