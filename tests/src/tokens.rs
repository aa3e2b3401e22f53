//! ServiceAccount tokens from the TokenRequest API, as the kubelet gets projected ones.

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, Client};

/// A ten-minute token of ServiceAccount `ns/name` for `audience`, bound to `bound` if
/// given (a pod: then the apiserver's review names it).
pub async fn token(
    client: &Client,
    ns: &str,
    name: &str,
    audience: &str,
    bound: Option<BoundObjectReference>,
) -> String {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![audience.to_owned()]),
            expiration_seconds: Some(600),
            bound_object_ref: bound,
        }),
        ..TokenRequest::default()
    };
    let answer = (api
        .create_token_request(name, &PostParams::default(), &request)
        .await)
        .unwrap_or_else(|e| panic!("TokenRequest for {name} ({audience}): {e}"));
    (answer.status.and_then(|s| s.token)).expect("a TokenRequest answer has a token")
}
