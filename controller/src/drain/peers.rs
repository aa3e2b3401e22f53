//! Several controller replicas: each serves its own proxies with its own epoch, so the
//! replica a hook asks cannot answer for all of them alone. It asks every replica (the
//! addresses `--drain-peer` resolves to, a headless Service's pod IPs, itself
//! included) with the hook's own token and timeout, marked [`PEER_HEADER`] so that each
//! answers for its own proxies only, and [`combine`]s their answers.
//!
//! Asking itself through the network costs one local call and spares knowing which
//! address is its own.

use std::net::SocketAddr;
use std::time::Duration;

use fairway_proto::pb::drain_client::DrainClient;
use fairway_proto::pb::wait_drained_response::Outcome as Wire;
use fairway_proto::pb::{WaitDrainedRequest, WaitDrainedResponse};
use futures::future::join_all;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// Set on a request one replica forwards to another: answer for your own proxies, do
/// not ask further (a pod that sets it itself only shortens its own wait's view).
pub const PEER_HEADER: &str = "fairway-drain-peer";
/// A replica that does not accept a connection within this is reported, not waited on.
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Beyond the asked timeout, how long a peer's answer may take to arrive.
pub const PEER_SLACK: Duration = Duration::from_secs(1);

/// Where the replicas are and how to reach them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// `host:port` names, each resolved to every address on each request.
    pub names: Vec<String>,
    /// With TLS: the CA that signed the replicas' certificates (which must carry the
    /// host of each name). `None`: plaintext.
    pub ca: Option<Vec<u8>>,
}

/// One replica's answer, or why there is none.
pub type PeerAnswer = (String, Result<WaitDrainedResponse, String>);

/// Asks every replica once, concurrently. A name that does not resolve is one failed
/// answer, so a hook hears about it.
pub async fn ask_all(
    config: &PeerConfig,
    authorization: Option<&MetadataValue<tonic::metadata::Ascii>>,
    timeout_ms: u64,
) -> Vec<PeerAnswer> {
    let mut targets: Vec<(String, Option<(String, SocketAddr)>)> = Vec::new();
    for name in &config.names {
        match tokio::net::lookup_host(name.as_str()).await {
            Ok(addrs) => {
                let host = name.rsplit_once(':').map_or(name.as_str(), |(h, _)| h);
                let before = targets.len();
                targets.extend(addrs.map(|a| (a.to_string(), Some((host.to_owned(), a)))));
                if targets.len() == before {
                    targets.push((name.clone(), None));
                }
            }
            Err(_) => targets.push((name.clone(), None)),
        }
    }
    let asks = targets.into_iter().map(|(label, target)| async move {
        let answer = match target {
            None => Err(format!("{label} resolves to no replica")),
            Some((host, addr)) => ask_one(config, &host, addr, authorization, timeout_ms).await,
        };
        (label, answer)
    });
    join_all(asks).await
}

async fn ask_one(
    config: &PeerConfig,
    host: &str,
    addr: SocketAddr,
    authorization: Option<&MetadataValue<tonic::metadata::Ascii>>,
    timeout_ms: u64,
) -> Result<WaitDrainedResponse, String> {
    let scheme = if config.ca.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{addr}");
    let mut endpoint = Endpoint::from_shared(url.clone()).map_err(|e| format!("{url}: {e}"))?;
    if let Some(ca) = &config.ca {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name(host.to_owned());
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| format!("{url}: {e}"))?;
    }
    let patience = Duration::from_millis(timeout_ms) + PEER_SLACK;
    let channel = (endpoint
        .connect_timeout(PEER_CONNECT_TIMEOUT)
        .connect()
        .await)
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    let mut request = tonic::Request::new(WaitDrainedRequest { timeout_ms });
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.clone());
    }
    request
        .metadata_mut()
        .insert(PEER_HEADER, MetadataValue::from_static("1"));
    let mut client = DrainClient::new(channel);
    match tokio::time::timeout(patience, client.wait_drained(request)).await {
        Ok(Ok(answer)) => Ok(answer.into_inner()),
        Ok(Err(status)) => Err(format!(
            "{url} answered {:?}: {}",
            status.code(),
            status.message()
        )),
        Err(_) => Err(format!("{url} gave no answer within {patience:?}")),
    }
}

/// One answer from every replica's: drained only when all are; any timeout (or a
/// replica that could not answer: its proxies may still send) is a timeout naming every
/// lagging proxy; otherwise the last serving endpoint, then unknown, as any replica
/// saw it. The wait is the longest.
pub fn combine(answers: Vec<PeerAnswer>) -> WaitDrainedResponse {
    let mut combined = WaitDrainedResponse::default();
    let mut failed = Vec::new();
    let mut reasons: Vec<(Wire, String)> = Vec::new();
    for (peer, answer) in answers {
        match answer {
            Ok(a) => {
                combined.waited_ms = combined.waited_ms.max(a.waited_ms);
                combined.lagging.extend(a.lagging.iter().cloned());
                reasons.push((a.outcome(), format!("{peer}: {}", a.reason)));
            }
            Err(why) => failed.push(why),
        }
    }
    let has = |o: Wire| reasons.iter().any(|(w, _)| *w == o);
    let outcome = if !failed.is_empty() || has(Wire::TimedOut) || has(Wire::Unspecified) {
        Wire::TimedOut
    } else if reasons.is_empty() {
        // No replica at all (no name configured): nothing answered.
        Wire::TimedOut
    } else if has(Wire::LastServing) {
        Wire::LastServing
    } else if reasons.iter().all(|(w, _)| *w == Wire::UnknownPod) {
        Wire::UnknownPod
    } else {
        Wire::Drained
    };
    let mut text: Vec<String> = failed
        .into_iter()
        .map(|f| format!("a controller replica could not answer ({f})"))
        .collect();
    let relevant = reasons
        .into_iter()
        .filter(|(w, _)| *w == outcome || outcome == Wire::Drained)
        .map(|(_, r)| r);
    text.extend(relevant);
    if text.is_empty() {
        text.push("no controller replica to ask".to_owned());
    }
    combined.outcome = outcome as i32;
    combined.reason = text.join("; ");
    combined
}

#[cfg(test)]
mod tests {
    use fairway_proto::pb::LaggingProxy;

    use super::*;

    fn answer(
        outcome: Wire,
        waited_ms: u64,
        lagging: &[&str],
    ) -> Result<WaitDrainedResponse, String> {
        Ok(WaitDrainedResponse {
            outcome: outcome as i32,
            waited_ms,
            reason: format!("{outcome:?}"),
            lagging: (lagging.iter())
                .map(|id| LaggingProxy {
                    proxy_id: (*id).to_owned(),
                    connected: true,
                    acked: None,
                })
                .collect(),
        })
    }

    #[test]
    fn drained_only_when_every_replica_is_and_laggards_of_all_are_named() {
        let all = combine(vec![
            ("c1".into(), answer(Wire::Drained, 3, &[])),
            ("c2".into(), answer(Wire::Drained, 9, &[])),
        ]);
        assert_eq!((all.outcome(), all.waited_ms), (Wire::Drained, 9));
        let one = combine(vec![
            ("c1".into(), answer(Wire::Drained, 3, &[])),
            ("c2".into(), answer(Wire::TimedOut, 2000, &["proxy-b"])),
        ]);
        assert_eq!(one.outcome(), Wire::TimedOut);
        assert_eq!(one.lagging[0].proxy_id, "proxy-b");
        assert!(one.reason.starts_with("c2: "), "{}", one.reason);
    }

    #[test]
    fn a_replica_that_cannot_answer_is_not_taken_for_drained() {
        let down = combine(vec![
            ("c1".into(), answer(Wire::Drained, 3, &[])),
            (
                "c2".into(),
                Err("connecting to http://10.0.0.2:18000: refused".into()),
            ),
        ]);
        assert_eq!(down.outcome(), Wire::TimedOut);
        assert!(down.reason.contains("could not answer"), "{}", down.reason);
        assert_eq!(combine(Vec::new()).outcome(), Wire::TimedOut);
    }

    #[test]
    fn unknown_only_when_every_replica_says_so_and_last_serving_wins() {
        let split = combine(vec![
            ("c1".into(), answer(Wire::UnknownPod, 0, &[])),
            ("c2".into(), answer(Wire::Drained, 5, &[])),
        ]);
        assert_eq!(
            split.outcome(),
            Wire::Drained,
            "a replica behind on the slice"
        );
        let last = combine(vec![
            ("c1".into(), answer(Wire::LastServing, 0, &[])),
            ("c2".into(), answer(Wire::Drained, 5, &[])),
        ]);
        assert_eq!(last.outcome(), Wire::LastServing);
        let unknown = combine(vec![
            ("c1".into(), answer(Wire::UnknownPod, 0, &[])),
            ("c2".into(), answer(Wire::UnknownPod, 0, &[])),
        ]);
        assert_eq!(unknown.outcome(), Wire::UnknownPod);
    }
}
