//! The audit webhook's HTTPS endpoint (`POST /audit`).
//!
//! Mutual TLS: a caller must present a client certificate signed by the
//! CA in `--sessions-client-ca` (the API server's, from its webhook
//! kubeconfig). That CA should sign nothing else: whoever holds one of its
//! client certificates can write `session-opened` records. A connection
//! without one never reaches HTTP, so an unauthenticated POST writes
//! nothing.
//!
//! Answers: 200 once every session in the body is in the ledger (the
//! records are written before the answer); 503 with `Retry-After` when this
//! process is not leading (the API server tries again, on a new
//! connection, which a Service may send to the leader); 500 when the
//! ledger or the API could not be written or read (retried by the API
//! server); 400 for a body that is not an audit event list (not retried).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::LedgerSlot;
use super::events::{self, Owner, Session};

/// The path the webhook kubeconfig's server URL names.
pub const PATH: &str = "/audit";

/// Largest body taken: a batch of the API server's (400 events by
/// default) at Metadata level is far below it.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A TLS handshake must finish in this time.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Where the listener's certificates are (PEM files).
#[derive(Debug, Clone)]
pub struct Tls {
    /// The serving certificate (chain) and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA whose client certificates may post.
    pub client_ca: PathBuf,
}

fn read(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {what} {}: {e}", path.display()))
}

/// The TLS configuration: ring's provider, client certificates required.
pub fn server_config(tls: &Tls) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_slice_iter(&read(&tls.cert, "the serving certificate")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("serving certificate {}: {e}", tls.cert.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&read(&tls.key, "the serving key")?)
        .map_err(|e| anyhow::anyhow!("serving key {}: {e}", tls.key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&read(&tls.client_ca, "the client CA")?) {
        let ca = ca.map_err(|e| anyhow::anyhow!("client CA {}: {e}", tls.client_ca.display()))?;
        roots.add(ca)?;
    }
    if roots.is_empty() {
        anyhow::bail!(
            "no certificate in the client CA {}",
            tls.client_ca.display()
        );
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// Binds `addr` (port 0: any free port).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {addr} for the audit webhook (--sessions-addr): {e}")
    })?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// What each request needs.
#[derive(Clone)]
pub struct State {
    pub client: Client,
    pub ledger: LedgerSlot,
}

/// Serves the webhook on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, config: Arc<ServerConfig>, state: State) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, path = PATH, "serving the audit webhook (sessions) over mutual TLS");
    }
    let acceptor = TlsAcceptor::from(config);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!(error = %e, "accepting a connection");
                continue;
            }
        };
        let (acceptor, state) = (acceptor.clone(), state.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    warn!(%peer, error = %e, "audit webhook: refused a connection without a trusted client certificate");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "audit webhook: TLS handshake timed out");
                    return;
                }
            };
            let service = service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(req, &state).await) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                debug!(%peer, error = %e, "audit webhook: serving a connection");
            }
        });
    }
}

fn answer(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *r.status_mut() = status;
    r
}

async fn handle(req: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    if req.uri().path() != PATH {
        return answer(StatusCode::NOT_FOUND, "not found: POST /audit");
    }
    if req.method() != Method::POST {
        return answer(StatusCode::METHOD_NOT_ALLOWED, "POST only");
    }
    // Not leading: nothing could be recorded. Say so before reading the
    // body, and close the connection so that a retry may reach the leader.
    let Some(ledger) = state.ledger.get() else {
        let mut r = answer(StatusCode::SERVICE_UNAVAILABLE, "not the leader");
        r.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
        r.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
        return r;
    };
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return answer(StatusCode::BAD_REQUEST, &format!("body: {e}")),
    };
    let list = match events::parse(&body) {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "audit webhook: a body that is not an audit event list");
            return answer(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let sessions = events::sessions(&list);
    debug!(
        events = list.items.len(),
        sessions = sessions.len(),
        "audit webhook: events received"
    );
    if sessions.is_empty() {
        return answer(StatusCode::OK, "ok");
    }
    match record(&state.client, &ledger, &sessions).await {
        Ok(()) => answer(StatusCode::OK, "ok"),
        Err(e) => {
            warn!(error = %format!("{e:#}"), sessions = sessions.len(), "audit webhook: sessions not recorded yet; the API server retries");
            answer(StatusCode::INTERNAL_SERVER_ERROR, "not recorded")
        }
    }
}

/// Appends one record per session, each with its workspace's owner.
async fn record(
    client: &Client,
    ledger: &crate::audit::Ledger,
    sessions: &[Session],
) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut drafts = Vec::with_capacity(sessions.len());
    for s in sessions {
        // A namespace already gone (a session during teardown) still has
        // its scenario's name; only its uid and authorization are unknown.
        let owner = match namespaces.get_opt(&s.namespace).await? {
            Some(ns) => Owner::from_labels(&ns.metadata.labels.unwrap_or_default()),
            None => Owner::default(),
        };
        drafts.push(events::draft(s, &owner));
    }
    ledger.append(drafts).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Runs openssl (the local control plane needs it too).
    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A CA `name` and, signed by it, a certificate `name-LEAF` for `ext`.
    fn issue(dir: &Path, ca: &str, leaf: &str, ext: &str) {
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        if !dir.join(format!("{ca}.crt")).exists() {
            let (key, crt) = (format!("{ca}.key"), format!("{ca}.crt"));
            let mut args = vec!["req", "-x509", "-new"];
            args.extend(ec);
            args.extend([
                "-keyout",
                &key,
                "-out",
                &crt,
                "-subj",
                "/CN=test-ca",
                "-days",
                "2",
            ]);
            args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
            openssl(dir, &args);
        }
        std::fs::write(dir.join(format!("{leaf}.ext")), ext).expect("ext");
        let (key, csr, crt) = (
            format!("{leaf}.key"),
            format!("{leaf}.csr"),
            format!("{leaf}.crt"),
        );
        let mut args = vec!["req", "-new"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=test"]);
        openssl(dir, &args);
        let (ca_crt, ca_key, ext_file) = (
            format!("{ca}.crt"),
            format!("{ca}.key"),
            format!("{leaf}.ext"),
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_crt,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext_file,
                "-out",
                &crt,
            ],
        );
    }

    fn pki() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cleanroom-sessions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let client = "extendedKeyUsage=clientAuth";
        issue(
            &dir,
            "ca",
            "server",
            "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1",
        );
        issue(&dir, "ca", "client", client);
        issue(&dir, "other", "stranger", client);
        dir
    }

    /// POSTs `body` over TLS with the client certificate `cert`; the
    /// server's whole answer, or the error that stopped it.
    async fn post(
        addr: SocketAddr,
        dir: &Path,
        cert: Option<&str>,
        body: &str,
    ) -> Result<String, String> {
        let mut roots = rustls::RootCertStore::empty();
        let ca = std::fs::read(dir.join("ca.crt")).map_err(|e| e.to_string())?;
        for c in CertificateDer::pem_slice_iter(&ca) {
            roots
                .add(c.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let config = match cert {
            Some(name) => {
                let crt =
                    std::fs::read(dir.join(format!("{name}.crt"))).map_err(|e| e.to_string())?;
                let key =
                    std::fs::read(dir.join(format!("{name}.key"))).map_err(|e| e.to_string())?;
                let chain = CertificateDer::pem_slice_iter(&crt)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| e.to_string())?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| e.to_string())?
            }
            None => builder.with_no_client_auth(),
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let request = format!(
            "POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut reply = String::new();
        tls.read_to_string(&mut reply)
            .await
            .map_err(|e| e.to_string())?;
        Ok(reply)
    }

    #[tokio::test]
    async fn only_the_api_servers_certificate_is_answered_and_a_standby_records_nothing() {
        let dir = pki();
        let config = server_config(&Tls {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
            client_ca: dir.join("ca.crt"),
        })
        .expect("TLS configuration");
        let (listener, addr) = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        // A client that reaches no API server: a standby never calls it.
        let client = Client::try_from(kube::Config::new(
            "http://127.0.0.1:9".parse().expect("url"),
        ))
        .expect("client");
        let slot = LedgerSlot::default();
        let server = tokio::spawn(serve(
            listener,
            config,
            State {
                client,
                ledger: slot,
            },
        ));
        let body = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}"#;

        for (cert, who) in [
            (None, "no certificate"),
            (Some("stranger"), "another CA's certificate"),
        ] {
            let answer = post(addr, &dir, cert, body).await;
            assert!(
                !answer.as_ref().is_ok_and(|r| r.starts_with("HTTP/")),
                "{who}: got an HTTP answer: {answer:?}"
            );
        }
        let standby = post(addr, &dir, Some("client"), body)
            .await
            .expect("answered");
        assert!(standby.starts_with("HTTP/1.1 503"), "{standby}");
        let lower = standby.to_ascii_lowercase();
        assert!(
            lower.contains("retry-after: 1") && lower.contains("connection: close"),
            "{standby}"
        );
        server.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
