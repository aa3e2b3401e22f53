//! ConfigMaps as the index reads them: the CA bundles (`ca.crt`) of `upstream.tls`.
//! Every ConfigMap of a watched namespace streams by (a Route may name any of them);
//! the index keeps only the `ca.crt` of those that have one.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;

use super::source::Kind;
use crate::index::{Changes, Index};

impl Kind for ConfigMap {
    const NAME: &'static str = "ConfigMap";
    fn apply(index: &mut Index, object: &Self) -> Changes {
        index.apply_config_map(object)
    }
    fn delete(index: &mut Index, object: &Self) -> Changes {
        index.delete_config_map(object)
    }
    fn replace(index: &mut Index, objects: &[Self]) -> Changes {
        index.replace_config_maps(objects)
    }
    fn stub(metadata: ObjectMeta) -> Self {
        ConfigMap {
            metadata,
            ..ConfigMap::default()
        }
    }
}
