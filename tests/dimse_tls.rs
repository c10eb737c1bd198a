//! DICOM TLS with a real peer: dcmtk's `echoscu` / `storescu` (Debian's dcmtk is built
//! with OpenSSL: `+tls KEY CERT` for a client certificate, `+tla` for anonymous TLS,
//! `+cf CA` to verify the server). rcgen makes a CA, a server and two client
//! certificates in a temp dir; the node runs `[dimse.tls]` with `client_ca_file`.
//! A client with a CA-signed certificate echoes and stores over TLS; one without a
//! certificate (or with a self-signed one) is refused in the handshake; a peer pinned
//! by `tls_fingerprint` must come over TLS with exactly that certificate.

mod common;

use std::path::{Path, PathBuf};

use common::gen::{write_series, Ids};
use common::{audit_rows, dcmtk, require, run_tool, Backend, TestEnv};
use glia::config::{KnownPeers, PeerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// PEM files written for one test.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// SHA-256 hex of the client certificate's DER.
    client_fingerprint: String,
    rogue_cert: PathBuf,
    rogue_key: PathBuf,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn make_pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Glia test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let leaf = |cn: &str, sans: Vec<String>, eku: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![eku];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        (p, key)
    };
    let (sp, server_key) = leaf(
        "glia",
        vec!["localhost".into(), "127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let server = sp.signed_by(&server_key, &ca, &ca_key).unwrap();
    let (cp, client_key) = leaf("modality", vec![], ExtendedKeyUsagePurpose::ClientAuth);
    let client = cp.signed_by(&client_key, &ca, &ca_key).unwrap();
    let (rp, rogue_key) = leaf("rogue", vec![], ExtendedKeyUsagePurpose::ClientAuth);
    let rogue = rp.self_signed(&rogue_key).unwrap();

    Pki {
        ca: write(dir, "ca.pem", &ca.pem()),
        server_cert: write(dir, "server.pem", &server.pem()),
        server_key: write(dir, "server.key", &server_key.serialize_pem()),
        client_cert: write(dir, "client.pem", &client.pem()),
        client_key: write(dir, "client.key", &client_key.serialize_pem()),
        client_fingerprint: glia::dimse::tls::fingerprint(client.der()),
        rogue_cert: write(dir, "rogue.pem", &rogue.pem()),
        rogue_key: write(dir, "rogue.key", &rogue_key.serialize_pem()),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// dcmtk arguments: `auth` (TLS mode, key and certificate, calling AE...), then the
/// CA to verify the server with, the called AE and the node's TLS address.
fn tls_args<'a>(auth: &[&'a str], ca: &'a str, port: &'a str) -> Vec<&'a str> {
    let mut v = auth.to_vec();
    v.extend(["+cf", ca, "-aec", "GLIA", "127.0.0.1", port]);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcmtk_over_tls_with_client_certificates() {
    let (Some(echoscu), Some(storescu)) = (dcmtk("echoscu"), dcmtk("storescu")) else {
        require("dcmtk echoscu and storescu", false);
        return;
    };
    let mut env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let pki = make_pki(env.dir.path());
    let tls = &mut env.config.dimse.tls;
    tls.enabled = true;
    tls.port = 0;
    tls.cert_file = pki.server_cert.clone();
    tls.key_file = pki.server_key.clone();
    tls.client_ca_file = Some(pki.ca.clone());
    env.config.dimse.require_known_peers = KnownPeers::Off;
    env.config.dimse.peers = vec![PeerConfig {
        ae_title: "PINNED".into(),
        tls_fingerprint: Some(pki.client_fingerprint.to_uppercase()),
        centre_id: Some(9),
        ..Default::default()
    }];
    let node = env.start().await;
    let tls_port = node
        .dimse_tls_addr
        .expect("TLS listener up")
        .port()
        .to_string();
    let plain_port = node.dimse_addr.port().to_string();
    let key = s(&pki.client_key);
    let cert = s(&pki.client_cert);
    let ca = s(&pki.ca);

    // A CA-signed client certificate: echo and store over TLS.
    let (ok, out) = run_tool(
        &echoscu,
        &tls_args(&["+tls", key, cert, "-aet", "MODALITY"], ca, &tls_port),
    )
    .await;
    assert!(ok, "echoscu over TLS: {out}");
    let dir = env.dir.path().join("series");
    let sent = write_series(&dir, &Ids::new("TLS1"), 2, 16, 16);
    let mut args = tls_args(&["+tls", key, cert, "-aet", "PINNED", "+sd"], ca, &tls_port);
    args.push(s(&dir));
    let (ok, out) = run_tool(&storescu, &args).await;
    assert!(ok, "storescu over TLS: {out}");
    assert_eq!(node.state.repo.counts().await.unwrap().instances, 2);
    let rows = audit_rows(&node.state, "PINNED").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.action == "store"
        && r.outcome == "success"
        && r.centre_id == Some(9)
        && r.study_uid.as_deref() == Some(sent[0].study.as_str())));

    // Anonymous TLS (no client certificate): refused in the handshake.
    let (ok, out) = run_tool(
        &echoscu,
        &tls_args(&["+tla", "-aet", "ANON"], ca, &tls_port),
    )
    .await;
    assert!(!ok, "a client without a certificate must be refused: {out}");

    // A certificate from no trusted CA: refused too.
    let rogue = [s(&pki.rogue_key), s(&pki.rogue_cert)];
    let (ok, out) = run_tool(
        &echoscu,
        &tls_args(&["+tls", rogue[0], rogue[1]], ca, &tls_port),
    )
    .await;
    assert!(!ok, "an untrusted certificate must be refused: {out}");

    // The pinned peer over plain TCP: rejected at association level, audited.
    let (ok, out) = run_tool(
        &echoscu,
        &["-aet", "PINNED", "-aec", "GLIA", "127.0.0.1", &plain_port],
    )
    .await;
    assert!(!ok, "pinned peer without TLS must be rejected: {out}");
    let rows = audit_rows(&node.state, "PINNED").await;
    let denied: Vec<_> = rows.iter().filter(|r| r.outcome == "denied").collect();
    assert_eq!(denied.len(), 1, "{rows:?}");
    assert!(denied[0].detail.as_deref().unwrap_or("").contains("TLS"));

    // The handshake refusals are audited by address (no AE title known yet).
    node.state.audit.flush().await;
    let all = glia::db::audit::list(
        node.state.repo.connection(),
        &glia::db::audit::AuditFilter {
            action: Some("associate".into()),
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let anonymous = all.iter().filter(|r| r.actor.is_none()).count();
    assert_eq!(anonymous, 2, "{all:?}");
    node.stop().await;
}
