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
    /// Also admit the proxy the webhook injected into a pod, whatever its ServiceAccount
    /// (`--admit-injected-sidecars`): a token bound to a pod whose spec asks for
    /// injection and has the proxy container (`injected`).
    pub admit_injected: bool,
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
    /// For a token bound to a pod: that pod (the `user.extra` pod claims).
    pub pod: Option<PodClaims>,
}

/// `user.extra` keys the apiserver fills for a token bound to a pod (a projected
/// ServiceAccount token).
pub const POD_NAME_CLAIM: &str = "authentication.kubernetes.io/pod-name";
pub const POD_UID_CLAIM: &str = "authentication.kubernetes.io/pod-uid";

/// The pod a bound token was minted for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodClaims {
    pub name: String,
    pub uid: String,
}

impl PodClaims {
    /// The claims out of a TokenReview's `user.extra` (each key holds a list; a bound
    /// token has exactly one value in each). `None` unless both are there.
    pub fn from_extra<'a>(mut get: impl FnMut(&str) -> Option<&'a [String]>) -> Option<PodClaims> {
        let mut one = |key| match get(key) {
            Some([value]) if !value.is_empty() => Some(value.clone()),
            _ => None,
        };
        let name = one(POD_NAME_CLAIM)?;
        let uid = one(POD_UID_CLAIM)?;
        Some(PodClaims { name, uid })
    }
}

/// The pod that asks about its own drain (design.md section 10): its namespace from the
/// ServiceAccount, its name and uid from the token's pod claims.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl fmt::Display for Pod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
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
    /// A valid token bound to a pod the webhook injected (`--admit-injected-sidecars`).
    admitted_injected,
    /// A valid token of someone who is not allowed.
    forbidden,
    /// The TokenReview itself failed (apiserver unreachable): not the client's fault.
    review_failed,
    /// Client certificates are required (`--tls-client-ca-file`) and none was sent.
    missing_client_certificate,
}

/// The verdict on one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Admit(ServiceAccount),
    /// gRPC `UNAUTHENTICATED`: we do not know who this is.
    Unauthenticated(Outcome, String),
    /// gRPC `PERMISSION_DENIED`: we know who, and they may not subscribe.
    Forbidden(String),
    /// Not allowed by name, but its token is bound to a pod that may be an injected one:
    /// the pod decides ([`super::injected::judge`]). Never the final verdict.
    IfInjected(ServiceAccount, Pod),
    /// Admitted as an injected pod's proxy.
    AdmitInjected(ServiceAccount, Pod),
}

impl Verdict {
    pub fn outcome(&self) -> Outcome {
        match self {
            Verdict::Admit(_) => Outcome::admitted,
            Verdict::Unauthenticated(outcome, _) => *outcome,
            Verdict::Forbidden(_) | Verdict::IfInjected(..) => Outcome::forbidden,
            Verdict::AdmitInjected(..) => Outcome::admitted_injected,
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
    if let Err(verdict) = for_audience(review, &policy.audience) {
        return verdict;
    }
    match ServiceAccount::from_username(&review.username) {
        Some(account) if policy.allowed.contains(&account) => Verdict::Admit(account),
        Some(account) if policy.admit_injected && review.pod.is_some() => {
            let claims = review.pod.clone().unwrap_or_default();
            let pod = Pod {
                namespace: account.namespace.clone(),
                name: claims.name,
                uid: claims.uid,
            };
            Verdict::IfInjected(account, pod)
        }
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

/// The pod a reviewed token speaks for, for the drain handshake: any ServiceAccount
/// may ask, but only with a token bound to a pod (so it can ask about that pod alone).
/// The error is `Unauthenticated` or `Forbidden`, as in [`decide`].
pub fn pod_of(review: &Review, audience: &str) -> Result<Pod, Verdict> {
    for_audience(review, audience)?;
    let Some(account) = ServiceAccount::from_username(&review.username) else {
        return Err(Verdict::Forbidden(format!(
            "{:?} is not a ServiceAccount; only a pod's own token may ask about its drain",
            review.username
        )));
    };
    let Some(claims) = &review.pod else {
        return Err(Verdict::Forbidden(format!(
            "the token of {account} is not bound to a pod: use a projected ServiceAccount \
             token (audience {audience:?}) mounted in the pod that asks"
        )));
    };
    Ok(Pod {
        namespace: account.namespace,
        name: claims.name.clone(),
        uid: claims.uid.clone(),
    })
}

/// Checks that the apiserver authenticated the token for `audience`.
fn for_audience(review: &Review, audience: &str) -> Result<(), Verdict> {
    if !review.authenticated {
        let reason = review.error.as_deref().unwrap_or("no reason given");
        return Err(Verdict::Unauthenticated(
            Outcome::invalid_token,
            format!(
                "the token was not accepted for audience {audience:?} (expired, revoked, \
                 another audience, or not a token): {reason}"
            ),
        ));
    }
    // Asked with spec.audiences, the apiserver answers with the ones that matched; a
    // token that is valid but not for us must not pass on its other audiences.
    if !review.audiences.iter().any(|a| a == audience) {
        return Err(Verdict::Unauthenticated(
            Outcome::wrong_audience,
            format!(
                "the token is not for audience {audience:?} (it is for {:?})",
                review.audiences
            ),
        ));
    }
    Ok(())
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
