//! The SMTP client's line channel, plain or TLS. TLS works without an async
//! TLS crate: a [`rustls::Connection`] driven by hand over a tokio
//! [`TcpStream`] (ciphertext moves between the socket and rustls' buffers;
//! plaintext is read and written through rustls' reader and writer), which
//! also lets a channel switch to TLS mid-session for STARTTLS.
//!
//! Certificates are verified against the CA bundle named by the connection
//! (`config.caFile`), `$SSL_CERT_FILE`, or the system bundle; nothing here
//! ever disables verification.

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{self, Read as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Where CA bundles usually live (Debian/Ubuntu/Alpine, RHEL/Fedora, others).
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub(super) enum TlsError {
    /// No CA bundle could be found or read.
    #[error("failed to load CA certificates from {path}: {message}")]
    Roots { path: String, message: String },
    /// The host is not a valid TLS server name.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    /// rustls refused the configuration.
    #[error("failed to configure TLS: {0}")]
    Config(#[from] rustls::Error),
    /// The handshake failed (certificate, protocol, or the peer went away).
    #[error("TLS handshake failed: {0}")]
    Handshake(io::Error),
}

/// A client configuration trusting the CAs in `ca_file`, else in
/// `$SSL_CERT_FILE`, else in the first system bundle found.
pub(super) fn client_config(ca_file: Option<&str>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let path: PathBuf = match ca_file {
        Some(path) => PathBuf::from(path),
        None => std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .or_else(|| {
                SYSTEM_BUNDLES
                    .iter()
                    .map(PathBuf::from)
                    .find(|path| path.exists())
            })
            .ok_or_else(|| TlsError::Roots {
                path: SYSTEM_BUNDLES.join(", "),
                message: "none exists: install ca-certificates or set config.caFile".to_owned(),
            })?,
    };
    let roots_error = |message: String| TlsError::Roots {
        path: path.display().to_string(),
        message,
    };
    let certificates = CertificateDer::pem_file_iter(&path)
        .map_err(|e| roots_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| roots_error(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(roots_error("it holds no usable certificate".to_owned()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client connection for `host`, verifying its certificate with `config`.
pub(super) fn client_connection(
    config: Arc<rustls::ClientConfig>,
    host: &str,
) -> Result<rustls::Connection, TlsError> {
    let server_name =
        ServerName::try_from(host.to_owned()).map_err(|_| TlsError::ServerName(host.to_owned()))?;
    Ok(rustls::ClientConnection::new(config, server_name)?.into())
}

/// Lines in and bytes out over TCP, in clear or through TLS.
pub(super) struct Channel {
    transport: Transport,
    /// Bytes read but not yet returned as a line.
    pending: Vec<u8>,
}

enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
    /// Only while switching to TLS failed half-way.
    Closed,
}

impl Channel {
    /// A channel in clear over `tcp`.
    pub(super) fn plain(tcp: TcpStream) -> Self {
        Self {
            transport: Transport::Plain(tcp),
            pending: Vec::new(),
        }
    }

    /// Switches to TLS with `connection` (client or server side). Fails if
    /// the peer already sent data past the point of switching, which would
    /// otherwise be read as if it had come through TLS.
    pub(super) async fn start_tls(
        &mut self,
        connection: rustls::Connection,
    ) -> Result<(), TlsError> {
        if !self.pending.is_empty() {
            return Err(TlsError::Handshake(io::Error::new(
                io::ErrorKind::InvalidData,
                "the peer sent data before the TLS handshake",
            )));
        }
        let Transport::Plain(tcp) = std::mem::replace(&mut self.transport, Transport::Closed)
        else {
            return Err(TlsError::Handshake(io::Error::other(
                "the channel is not in clear",
            )));
        };
        self.transport = Transport::Tls(Box::new(TlsStream::handshake(tcp, connection).await?));
        Ok(())
    }

    /// The next line without its line end; `None` at end of stream. Lines
    /// longer than `max` bytes are an error.
    pub(super) async fn read_line(&mut self, max: usize) -> io::Result<Option<String>> {
        loop {
            if let Some(end) = self.pending.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                return Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()));
            }
            if self.pending.len() > max {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            let mut buffer = [0_u8; 4096];
            let read = match &mut self.transport {
                Transport::Plain(tcp) => tcp.read(&mut buffer).await?,
                Transport::Tls(tls) => tls.read(&mut buffer).await?,
                Transport::Closed => 0,
            };
            if read == 0 {
                return Ok(None);
            }
            self.pending.extend_from_slice(&buffer[..read]);
        }
    }

    /// Writes all of `data`.
    pub(super) async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.transport {
            Transport::Plain(tcp) => tcp.write_all(data).await,
            Transport::Tls(tls) => tls.write_all(data).await,
            Transport::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

/// A TLS session over a TCP stream.
struct TlsStream {
    tcp: TcpStream,
    connection: rustls::Connection,
}

impl TlsStream {
    /// Completes the handshake of `connection` (client or server side) on `tcp`.
    async fn handshake(tcp: TcpStream, connection: rustls::Connection) -> Result<Self, TlsError> {
        let mut stream = Self { tcp, connection };
        while stream.connection.is_handshaking() {
            stream.flush().await.map_err(TlsError::Handshake)?;
            if stream.connection.wants_read()
                && stream.receive().await.map_err(TlsError::Handshake)? == 0
            {
                return Err(TlsError::Handshake(io::ErrorKind::UnexpectedEof.into()));
            }
        }
        stream.flush().await.map_err(TlsError::Handshake)?;
        Ok(stream)
    }

    /// Reads plaintext into `buffer`; 0 means the peer closed the session.
    async fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.connection.reader().read(buffer) {
                Ok(read) => return Ok(read),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.flush().await?;
                    if self.receive().await? == 0 {
                        return Ok(0);
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Writes all of `data` as plaintext.
    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.connection.writer().write_all(data)?;
        self.flush().await
    }

    /// Sends whatever ciphertext rustls has queued.
    async fn flush(&mut self) -> io::Result<()> {
        while self.connection.wants_write() {
            let mut ciphertext = Vec::new();
            self.connection.write_tls(&mut ciphertext)?;
            self.tcp.write_all(&ciphertext).await?;
        }
        Ok(())
    }

    /// Feeds ciphertext from the socket to rustls; 0 at end of stream.
    async fn receive(&mut self) -> io::Result<usize> {
        let mut buffer = [0_u8; 16 * 1024];
        let read = self.tcp.read(&mut buffer).await?;
        let mut ciphertext = &buffer[..read];
        while !ciphertext.is_empty() {
            self.connection.read_tls(&mut ciphertext)?;
            self.connection
                .process_new_packets()
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        }
        Ok(read)
    }
}
