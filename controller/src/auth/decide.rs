//! The pure half of stream authentication: read the bearer token out of the request
//! metadata, and turn a TokenReview's answer into a verdict. No client, no clock, no
//! `.await`: everything here is a plain function of its inputs.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use prometheus_client::encoding::EncodeLabelValue;

/// The prefix Kubernetes gives a ServiceAccount's username.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// A ServiceAccount, as `--allowed-service-account namespace/name` names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
}

impl ServiceAccount {
    /// The username the apiserver reports for this account's tokens.
    pub fn username(&self) -> String {
        format!("{SERVICE_ACCOUNT_PREFIX}{}:{}", self.namespace, self.name)
    }

    /// The account behind a TokenReview username, if it is a ServiceAccount's.
    pub fn from_username(username: &str) -> Option<ServiceAccount> {
        let rest = username.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
        let (namespace, name) = rest.split_once(':')?;
        (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then(|| ServiceAccount {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl FromStr for ServiceAccount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s.split_once('/') {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains(['/', ':']) =>
            {
                Ok(ServiceAccount {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(format!(
                "{s:?} is not a ServiceAccount: expected namespace/name, e.g. fairway/fairway-proxy"
            )),
        }
    }
}

/// Who may subscribe, and with tokens for which audience.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub audience: String,
    pub allowed: BTreeSet<ServiceAccount>,
}

/// What the apiserver said about one token (the domain side of a TokenReview status).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Review {
    pub authenticated: bool,
    pub username: String,
    /// The audiences the token is valid for, of those asked about.
    pub audiences: Vec<String>,
    /// The apiserver's reason when not authenticated.
    pub error: Option<String>,
}

/// Every outcome of admitting one stream; the variant names are the metric labels.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelValue)]
#[allow(non_camel_case_types)] // Metric label values are snake_case.
pub enum Outcome {
    /// The token names an allowed ServiceAccount.
    admitted,
    /// Authentication is switched off (`--no-auth`).
    unauthenticated_allowed,
    /// No `authorization` metadata.
    missing_token,
    /// `authorization` is not `Bearer <token>`.
    malformed,
    /// The apiserver did not authenticate the token (garbage, expired, revoked, or for
    /// another audience).
    invalid_token,
    /// Authenticated, but not for our audience.
    wrong_audience,
    /// A valid token of someone who is not allowed.
    forbidden,
    /// The TokenReview itself failed (apiserver unreachable): not the client's fault.
    review_failed,
}

/// The verdict on one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Admit(ServiceAccount),
    /// gRPC `UNAUTHENTICATED`: we do not know who this is.
    Unauthenticated(Outcome, String),
    /// gRPC `PERMISSION_DENIED`: we know who, and they may not subscribe.
    Forbidden(String),
}

impl Verdict {
    pub fn outcome(&self) -> Outcome {
        match self {
            Verdict::Admit(_) => Outcome::admitted,
            Verdict::Unauthenticated(outcome, _) => *outcome,
            Verdict::Forbidden(_) => Outcome::forbidden,
        }
    }
}

/// The token in an `authorization` metadata value: `Bearer <token>` (the scheme is
/// case-insensitive, RFC 7235 section 2.1).
pub fn bearer_token(authorization: Option<&[u8]>) -> Result<&str, Verdict> {
    let value = authorization.ok_or_else(|| {
        Verdict::Unauthenticated(
            Outcome::missing_token,
            "no authorization metadata: send `authorization: Bearer <ServiceAccount token>` \
             (fairway-proxy --controller-token-file)"
                .to_owned(),
        )
    })?;
    let malformed = || {
        Verdict::Unauthenticated(
            Outcome::malformed,
            "the authorization metadata is not `Bearer <token>`".to_owned(),
        )
    };
    let value = std::str::from_utf8(value).map_err(|_| malformed())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(malformed());
    }
    Ok(token)
}

/// The verdict on a reviewed token under `policy`.
pub fn decide(review: &Review, policy: &Policy) -> Verdict {
    if !review.authenticated {
        let reason = review.error.as_deref().unwrap_or("no reason given");
        return Verdict::Unauthenticated(
            Outcome::invalid_token,
            format!(
                "the token was not accepted for audience {:?} (expired, revoked, another \
                 audience, or not a token): {reason}",
                policy.audience
            ),
        );
    }
    // Asked with spec.audiences, the apiserver answers with the ones that matched; a
    // token that is valid but not for us must not pass on its other audiences.
    if !review.audiences.contains(&policy.audience) {
        return Verdict::Unauthenticated(
            Outcome::wrong_audience,
            format!(
                "the token is not for audience {:?} (it is for {:?})",
                policy.audience, review.audiences
            ),
        );
    }
    match ServiceAccount::from_username(&review.username) {
        Some(account) if policy.allowed.contains(&account) => Verdict::Admit(account),
        Some(account) => Verdict::Forbidden(format!(
            "ServiceAccount {account} may not subscribe to discovery (allowed: {})",
            list(&policy.allowed)
        )),
        None => Verdict::Forbidden(format!(
            "{:?} is not a ServiceAccount; only ServiceAccounts may subscribe (allowed: {})",
            review.username,
            list(&policy.allowed)
        )),
    }
}

fn list(allowed: &BTreeSet<ServiceAccount>) -> String {
    if allowed.is_empty() {
        return "none".to_owned();
    }
    allowed
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
