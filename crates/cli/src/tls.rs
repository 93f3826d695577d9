//! HTTPS for `coffer serve`: the rustls server configuration read from PEM
//! files, and a listener that hands axum connections whose TLS handshake is done.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A client that has not finished its handshake by then is dropped, so slow or
/// idle connections cannot pile up before any request is read.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes cost CPU (signatures): bound how many run at once.
const HANDSHAKES_IN_FLIGHT_MAX: usize = 256;
/// Connections handshaken but not yet taken by the HTTP server.
const HANDSHAKEN_QUEUE_MAX: usize = 64;
/// After an accept error that is not the client's fault (e.g. out of file
/// descriptors), wait before trying again instead of spinning.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Why the certificate or key files cannot serve TLS. The configuration layer
/// turns each into a message naming the key that points at the bad file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate file: {0}")]
    CertificateUnreadable(rustls::pki_types::pem::Error),
    #[error("no PEM certificate (-----BEGIN CERTIFICATE-----) in the file")]
    NoCertificate,
    #[error("cannot read the private key file: {0}")]
    KeyUnreadable(rustls::pki_types::pem::Error),
    #[error("no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file")]
    NoKey,
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    #[error("the certificate and key are not usable: {0}")]
    Rejected(rustls::Error),
}

impl TlsError {
    /// Whether the fault lies in the key file rather than the certificate file.
    pub fn is_about_key(&self) -> bool {
        matches!(
            self,
            TlsError::KeyUnreadable(_) | TlsError::NoKey | TlsError::KeyMismatch
        )
    }
}

/// Reads a PEM certificate chain and its private key into a server configuration
/// (TLS 1.2 and 1.3, ring provider, HTTP/1.1 by ALPN).
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(TlsError::CertificateUnreadable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::CertificateUnreadable)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey,
        other => TlsError::KeyUnreadable(other),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rejected)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| match error {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch,
            other => TlsError::Rejected(other),
        })?;
    // axum is built without HTTP/2 here: offer only what the server speaks.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A TCP listener whose connections come out TLS-wrapped. Handshakes run in
/// their own tasks, so one slow client never holds up the others; dropping the
/// listener (axum does on graceful shutdown) closes the socket.
pub struct TlsListener {
    local_addr: SocketAddr,
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (sender, handshaken) = mpsc::channel(HANDSHAKEN_QUEUE_MAX);
        let accept_task = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), sender));
        Ok(TlsListener {
            local_addr,
            handshaken,
            accept_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(connection) => connection,
            // The accept loop only ends when this listener is dropped, so this
            // is unreachable while `self` lives; wait forever rather than panic.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    sender: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT_MAX));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(connection) => connection,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                tracing::warn!(%error, "accept failed; retrying shortly");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    // A closed channel means the server stopped accepting.
                    let _ = sender.send((tls, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Errors that concern one client only; the listener itself is fine.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
