use rcgen::{CertificateParams, KeyPair};

use super::*;

fn self_signed(name: &str) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec![name.to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("sign");
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, (cert, key): &(String, String)) -> (PathBuf, PathBuf) {
    let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&c, cert).expect("write cert");
    std::fs::write(&k, key).expect("write key");
    (c, k)
}

fn leaf(cert: &ReloadingCert) -> Vec<u8> {
    cert.current().cert[0].to_vec()
}

#[test]
fn a_changed_certificate_is_served_and_a_bad_one_is_not() {
    crate::process::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let first = self_signed("one.example");
    let (c, k) = write(dir.path(), &first);
    let cert = ReloadingCert::load(&c, &k).expect("valid pair loads");
    let served = leaf(&cert);
    assert!(
        !cert.reload().expect("unchanged files reload"),
        "same bytes: no change"
    );

    let second = self_signed("two.example");
    write(dir.path(), &second);
    assert!(
        cert.reload().expect("new pair loads"),
        "new bytes: a change"
    );
    assert_ne!(leaf(&cert), served, "the new certificate is served");
    let served = leaf(&cert);

    // A rotation caught half-way: the new certificate with the old key.
    let third = self_signed("three.example");
    std::fs::write(&c, &third.0).expect("write cert only");
    assert!(
        matches!(cert.reload(), Err(TlsError::KeyPair { .. })),
        "a key that does not fit is refused"
    );
    assert_eq!(
        leaf(&cert),
        served,
        "the previous certificate stays while the files are inconsistent"
    );
    std::fs::write(&c, "not pem").expect("write garbage");
    assert!(cert.reload().is_err(), "garbage is refused");
    assert_eq!(leaf(&cert), served);
    std::fs::write(&k, &third.1).expect("finish the rotation");
    std::fs::write(&c, &third.0).expect("finish the rotation");
    assert!(
        cert.reload().expect("consistent again"),
        "the finished rotation is served"
    );
}

#[test]
fn missing_files_and_a_bad_client_ca_fail_at_start() {
    crate::process::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = TlsConfig {
        cert_file: dir.path().join("nope.crt"),
        key_file: dir.path().join("nope.key"),
        client_ca_file: None,
    };
    assert!(matches!(
        server_config(&missing),
        Err(TlsError::Read { .. })
    ));
    let (c, k) = write(dir.path(), &self_signed("x.example"));
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, "").expect("write empty ca");
    let bad_ca = TlsConfig {
        cert_file: c.clone(),
        key_file: k.clone(),
        client_ca_file: Some(ca),
    };
    assert!(matches!(
        server_config(&bad_ca),
        Err(TlsError::NoCertificate { .. })
    ));
    let good = TlsConfig {
        cert_file: c.clone(),
        key_file: k,
        client_ca_file: Some(c),
    };
    let (config, _) = server_config(&good).expect("valid config");
    assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
}

/// A CA (certificate PEM) and a client certificate it signed (DER).
fn ca_and_client(name: &str) -> (String, CertificateDer<'static>) {
    use rcgen::{BasicConstraints, CertifiedIssuer, IsCa};
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
    let key = KeyPair::generate().expect("key");
    let client = CertificateParams::new(vec!["fairway-proxy".to_owned()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("sign");
    (ca.pem(), client.der().clone())
}

#[test]
fn a_rotated_client_ca_is_used_and_a_bad_one_is_not() {
    use rustls::pki_types::UnixTime;
    use rustls::server::danger::ClientCertVerifier;
    crate::process::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ca.crt");
    let (old_ca, old_client) = ca_and_client("old");
    let (new_ca, new_client) = ca_and_client("new");
    std::fs::write(&path, &old_ca).expect("write ca");
    let ca = ReloadingClientCa::load(&path).expect("valid CA");
    let accepts =
        |client: &CertificateDer<'_>| ca.verify_client_cert(client, &[], UnixTime::now()).is_ok();
    assert!(accepts(&old_client) && !accepts(&new_client));
    assert!(!ca.reload().expect("unchanged"), "same bytes: no change");

    std::fs::write(&path, &new_ca).expect("rotate");
    assert!(ca.reload().expect("new CA loads"));
    assert!(
        accepts(&new_client) && !accepts(&old_client),
        "the rotated CA decides from now on"
    );
    std::fs::write(&path, "garbage").expect("break");
    assert!(ca.reload().is_err(), "garbage is refused");
    assert!(accepts(&new_client), "and the previous CA stays in use");
}
