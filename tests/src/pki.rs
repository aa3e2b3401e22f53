//! Key material for a test cluster: a CA, the apiserver's serving certificate for
//! 127.0.0.1, the service-account signing key and an admin bearer token.

use std::fs;
use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use crate::error::ClusterError;

/// File names inside the cluster directory.
pub const CA_CERT: &str = "ca.crt";
pub const SERVING_CERT: &str = "apiserver.crt";
pub const SERVING_KEY: &str = "apiserver.key";
pub const SA_KEY: &str = "sa.key";
pub const SA_PUB: &str = "sa.pub";
pub const TOKENS: &str = "tokens.csv";

/// Writes every file the apiserver needs into `dir`; returns the admin token.
pub fn write_all(dir: &Path) -> Result<String, ClusterError> {
    let write = |name: &str, text: &str| {
        fs::write(dir.join(name), text).map_err(ClusterError::io("write cluster key material"))
    };

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fairway-test-ca");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    write(CA_CERT, &ca.pem())?;

    let serving_key = KeyPair::generate()?;
    let mut serving =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let serving = serving.signed_by(&serving_key, &ca)?;
    write(SERVING_CERT, &serving.pem())?;
    write(SERVING_KEY, &serving_key.serialize_pem())?;

    let sa = KeyPair::generate()?;
    write(SA_KEY, &sa.serialize_pem())?;
    write(SA_PUB, &sa.public_key_pem())?;

    let token = random_hex(32);
    // Static token file: token,user,uid,"group".
    write(
        TOKENS,
        &format!("{token},fairway-admin,fairway-admin,\"system:masters\"\n"),
    )?;
    Ok(token)
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}
