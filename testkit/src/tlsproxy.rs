//! A TLS front for the Temporal dev server (which speaks only plaintext gRPC): certificates of a
//! throwaway CA made by openssl, a rustls server that requires a client certificate of that CA
//! (mTLS) and offers HTTP/2, each connection's bytes passed on to the server. What the worker
//! and the CLI meet in production (a TLS endpoint with a private CA and client certificates).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

pub struct TlsProxy {
    /// `127.0.0.1:PORT`.
    pub address: String,
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A certificate of another CA (refused).
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A P-256 key, `<name>.key`.
fn ec_key(dir: &Path, name: &str) {
    let out = format!("{name}.key");
    let args = [
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &out,
    ];
    openssl(dir, &args);
}

/// A key and a certificate for `cn` signed by `ca` (its files `<ca>.pem`, `<ca>.key`).
fn issue(dir: &Path, ca: &str, name: &str, cn: &str, ext: &str) {
    ec_key(dir, name);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &format!("/CN={cn}"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

fn new_ca(dir: &Path, name: &str) {
    ec_key(dir, name);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

impl TlsProxy {
    /// A TLS (mTLS) endpoint on 127.0.0.1 in front of `upstream` (host:port, plaintext).
    pub fn start(dir: &Path, upstream: &str) -> Self {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let dir = dir.join("tls");
        std::fs::create_dir_all(&dir).unwrap();
        new_ca(&dir, "ca");
        new_ca(&dir, "other-ca");
        issue(
            &dir,
            "ca",
            "server",
            "temporal.test",
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:temporal.test\nextendedKeyUsage=serverAuth\n",
        );
        issue(
            &dir,
            "ca",
            "client",
            "cutover-worker",
            "extendedKeyUsage=clientAuth\n",
        );
        issue(
            &dir,
            "other-ca",
            "stranger",
            "cutover-worker",
            "extendedKeyUsage=clientAuth\n",
        );
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap())
            .unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        let chain = vec![CertificateDer::from_pem_file(dir.join("server.pem")).unwrap()];
        let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
        let mut config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let rt = crate::blocking::rt();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let upstream = upstream.to_owned();
        let task = rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
        Self {
            address,
            ca: dir.join("ca.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            stranger_cert: dir.join("stranger.pem"),
            stranger_key: dir.join("stranger.key"),
            task,
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
