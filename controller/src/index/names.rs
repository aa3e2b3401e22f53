//! What a valid host, label and Service name are, as the CRD's patterns say, without a
//! regex engine: Routes read by `--static-dir` never meet the apiserver's schema.

use crate::crd;

/// [`crd::HOST_PATTERN`] and [`crd::MAX_HOST_LEN`], without a regex engine.
pub(super) fn is_dns_subdomain(host: &str) -> bool {
    host.len() <= crd::MAX_HOST_LEN && host.split('.').all(is_dns_label_unbounded)
}

/// [`crd::PORT_NAME_PATTERN`] and [`crd::MAX_LABEL_LEN`].
pub(super) fn is_dns_label(label: &str) -> bool {
    label.len() <= crd::MAX_LABEL_LEN && is_dns_label_unbounded(label)
}

/// [`crd::SERVICE_NAME_PATTERN`] and [`crd::MAX_LABEL_LEN`]: a label starting with a letter.
pub(super) fn is_dns1035_label(label: &str) -> bool {
    label.starts_with(|c: char| c.is_ascii_lowercase()) && is_dns_label(label)
}

fn is_dns_label_unbounded(label: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    label.starts_with(alnum)
        && label.ends_with(alnum)
        && label.chars().all(|c| alnum(c) || c == '-')
}
