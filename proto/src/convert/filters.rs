//! A rule's filters on the wire: header edits, a URL rewrite, a redirect.

use super::{ConvertError, required};
use crate::model::{HeaderEdits, PathRewrite, Redirect, UrlRewrite};
use crate::pb;

/// The statuses Gateway API's `RequestRedirect` may answer with.
const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

pub(super) fn edits_to_wire(e: &HeaderEdits) -> pb::HeaderEdits {
    let fields = |pairs: &[(String, String)]| {
        (pairs.iter())
            .map(|(name, value)| pb::HeaderField {
                name: name.clone(),
                value: value.clone(),
            })
            .collect()
    };
    pb::HeaderEdits {
        set: fields(&e.set),
        add: fields(&e.add),
        remove: e.remove.clone(),
    }
}

pub(super) fn edits_from_wire(e: pb::HeaderEdits) -> HeaderEdits {
    let pairs =
        |fields: Vec<pb::HeaderField>| fields.into_iter().map(|f| (f.name, f.value)).collect();
    HeaderEdits {
        set: pairs(e.set),
        add: pairs(e.add),
        remove: e.remove,
    }
}

impl From<&PathRewrite> for pb::PathRewrite {
    fn from(p: &PathRewrite) -> Self {
        use pb::path_rewrite::Kind;
        let kind = match p {
            PathRewrite::ReplaceFullPath(path) => Kind::ReplaceFullPath(path.clone()),
            PathRewrite::ReplacePrefixMatch(path) => Kind::ReplacePrefixMatch(path.clone()),
        };
        pb::PathRewrite { kind: Some(kind) }
    }
}

impl TryFrom<pb::PathRewrite> for PathRewrite {
    type Error = ConvertError;

    fn try_from(p: pb::PathRewrite) -> Result<Self, ConvertError> {
        use pb::path_rewrite::Kind;
        Ok(match required(p.kind, "PathRewrite.kind")? {
            Kind::ReplaceFullPath(path) => PathRewrite::ReplaceFullPath(path),
            Kind::ReplacePrefixMatch(path) => PathRewrite::ReplacePrefixMatch(path),
        })
    }
}

impl From<&UrlRewrite> for pb::UrlRewrite {
    fn from(r: &UrlRewrite) -> Self {
        pb::UrlRewrite {
            hostname: r.hostname.clone(),
            path: r.path.as_ref().map(pb::PathRewrite::from),
        }
    }
}

impl TryFrom<pb::UrlRewrite> for UrlRewrite {
    type Error = ConvertError;

    fn try_from(r: pb::UrlRewrite) -> Result<Self, ConvertError> {
        Ok(UrlRewrite {
            hostname: r.hostname,
            path: r.path.map(PathRewrite::try_from).transpose()?,
        })
    }
}

impl From<&Redirect> for pb::Redirect {
    fn from(r: &Redirect) -> Self {
        pb::Redirect {
            scheme: r.scheme.clone(),
            hostname: r.hostname.clone(),
            path: r.path.as_ref().map(pb::PathRewrite::from),
            port: r.port.map(u32::from),
            status_code: u32::from(r.status),
        }
    }
}

impl TryFrom<pb::Redirect> for Redirect {
    type Error = ConvertError;

    fn try_from(r: pb::Redirect) -> Result<Self, ConvertError> {
        let status = u16::try_from(r.status_code)
            .ok()
            .filter(|s| REDIRECT_STATUSES.contains(s))
            .ok_or(ConvertError::RedirectStatus(r.status_code))?;
        let port = match r.port {
            Some(p) => Some(super::port("Redirect.port", p)?.get()),
            None => None,
        };
        Ok(Redirect {
            scheme: r.scheme,
            hostname: r.hostname,
            path: r.path.map(PathRewrite::try_from).transpose()?,
            port,
            status,
        })
    }
}
