//! TLS for the page server's connection (`--tls`), as CRIU does it with GnuTLS: both ends
//! show a certificate signed by the CA (`--tls-cacert`, revoked ones listed in `--tls-cacrl`
//! when that file exists), and the dump checks that the server's names the address it
//! connected to, unless `--tls-no-cn-verify`. Over rustls (its ring backend): criu keeps no
//! C TLS library.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// A connection the page server protocol runs over: plain TCP or TLS on it.
pub trait Conn: Read + Write + Send {
    /// Ends the connection both ways (TLS: its close_notify first).
    fn hang_up(&mut self);
}

impl Conn for TcpStream {
    fn hang_up(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

impl<C, D> Conn for rustls::StreamOwned<C, TcpStream>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<D>> + Send,
    D: rustls::SideData,
{
    fn hang_up(&mut self) {
        self.conn.send_close_notify();
        let _ = self.conn.complete_io(&mut self.sock);
        self.sock.hang_up();
    }
}

/// The files and checks of `--tls`.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    pub cacert: PathBuf,
    /// Used only if the file exists (as CRIU).
    pub cacrl: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `--tls-no-cn-verify`: the server's certificate need not name its address.
    pub no_cn_verify: bool,
}

impl Default for TlsOptions {
    /// CRIU's default paths.
    fn default() -> Self {
        TlsOptions {
            cacert: "/etc/pki/CA/cacert.pem".into(),
            cacrl: "/etc/pki/CA/cacrl.pem".into(),
            cert: "/etc/pki/criu/cert.pem".into(),
            key: "/etc/pki/criu/private/key.pem".into(),
            no_cn_verify: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS: cannot read {path}: {what}")]
    File { path: String, what: String },
    #[error("TLS: {0}")]
    Setup(String),
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
}

fn file_err(path: &Path) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError + '_ {
    move |e| TlsError::File {
        path: path.display().to_string(),
        what: e.to_string(),
    }
}

fn setup(e: impl std::fmt::Display) -> TlsError {
    TlsError::Setup(e.to_string())
}

/// rustls over ring, which it deprecates for lacking post-quantum key exchange: its other
/// backend (aws-lc-rs) needs cmake and a long C build on every machine that builds criu.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsOptions {
    fn roots(&self) -> Result<Arc<rustls::RootCertStore>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.cacert).map_err(file_err(&self.cacert))? {
            roots
                .add(cert.map_err(file_err(&self.cacert))?)
                .map_err(setup)?;
        }
        if roots.is_empty() {
            return Err(TlsError::File {
                path: self.cacert.display().to_string(),
                what: "no certificate in it".into(),
            });
        }
        Ok(Arc::new(roots))
    }

    fn crls(&self) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
        if !self.cacrl.exists() {
            return Ok(Vec::new());
        }
        CertificateRevocationListDer::pem_file_iter(&self.cacrl)
            .map_err(file_err(&self.cacrl))?
            .map(|c| c.map_err(file_err(&self.cacrl)))
            .collect()
    }

    fn identity(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let chain = CertificateDer::pem_file_iter(&self.cert)
            .map_err(file_err(&self.cert))?
            .map(|c| c.map_err(file_err(&self.cert)))
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(file_err(&self.key))?;
        Ok((chain, key))
    }

    /// The dump's end of a connection to the page server at `host`.
    pub fn client(&self, sock: TcpStream, host: &str) -> Result<Box<dyn Conn>, TlsError> {
        let webpki = WebPkiServerVerifier::builder_with_provider(self.roots()?, provider())
            .with_crls(self.crls()?)
            .build()
            .map_err(setup)?;
        let verifier: Arc<dyn ServerCertVerifier> = if self.no_cn_verify {
            Arc::new(AnyName(webpki))
        } else {
            webpki
        };
        let (chain, key) = self.identity()?;
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(setup)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(chain, key)
            .map_err(setup)?;
        let name = ServerName::try_from(host.to_string()).map_err(setup)?;
        let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(setup)?;
        handshake(rustls::StreamOwned::new(conn, sock))
    }

    /// The page server's end of a connection from a dump.
    pub fn server(&self, sock: TcpStream) -> Result<Box<dyn Conn>, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
            .with_crls(self.crls()?)
            .build()
            .map_err(setup)?;
        let (chain, key) = self.identity()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(setup)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(setup)?;
        // No session tickets: a session is one dump, and CRIU's client takes a ticket that
        // arrives where it waits for an answer for an error (EAGAIN).
        config.send_tls13_tickets = 0;
        let conn = rustls::ServerConnection::new(Arc::new(config)).map_err(setup)?;
        handshake(rustls::StreamOwned::new(conn, sock))
    }
}

/// Runs the handshake to its end, so that a refused certificate fails here, named.
fn handshake<C, D>(mut s: rustls::StreamOwned<C, TcpStream>) -> Result<Box<dyn Conn>, TlsError>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<D>> + Send + 'static,
    D: rustls::SideData + 'static,
    rustls::StreamOwned<C, TcpStream>: Conn,
{
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .map_err(TlsError::Handshake)?;
    }
    Ok(Box::new(s))
}

/// `--tls-no-cn-verify`: the chain is checked, the name in it is not.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
