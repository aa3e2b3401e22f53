//! One YAML file into Kubernetes objects: split into documents at `---` lines (keeping
//! each document's line number), read each document's `apiVersion`/`kind`, then
//! deserialize it as that type with serde-saphyr, whose errors carry locations.

use std::fmt;
use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::backendtlspolicy::BackendTLSPolicy;
use crate::crd::Route;
use crate::httproute::HTTPRoute;
use crate::index::DEFAULT_NAMESPACE;

/// The kinds a static directory may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Route,
    Service,
    EndpointSlice,
    HttpRoute,
    /// CA bundles (`ca.crt`) of Routes with `upstream.tls` and of BackendTLSPolicies.
    ConfigMap,
    BackendTlsPolicy,
}

/// One object read from a file, its namespace filled in.
// Objects are held once each, in a map per directory: boxing would save little.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Route(Route),
    Service(Service),
    Slice(EndpointSlice),
    HttpRoute(HTTPRoute),
    ConfigMap(ConfigMap),
    BackendTlsPolicy(BackendTLSPolicy),
}

/// Identifies an object across files: kind, namespace, name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}/{}", self.kind, self.namespace, self.name)
    }
}

impl Object {
    fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Route(r) => &r.metadata,
            Object::Service(s) => &s.metadata,
            Object::Slice(s) => &s.metadata,
            Object::HttpRoute(r) => &r.metadata,
            Object::ConfigMap(c) => &c.metadata,
            Object::BackendTlsPolicy(p) => &p.metadata,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Object::Route(_) => Kind::Route,
            Object::Service(_) => Kind::Service,
            Object::Slice(_) => Kind::EndpointSlice,
            Object::HttpRoute(_) => Kind::HttpRoute,
            Object::ConfigMap(_) => Kind::ConfigMap,
            Object::BackendTlsPolicy(_) => Kind::BackendTlsPolicy,
        }
    }

    pub fn key(&self) -> ObjectKey {
        let meta = self.meta();
        ObjectKey {
            kind: self.kind(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

/// Why a file was not used: its objects stay as they were last good.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}: {message}")]
pub struct ParseError {
    pub path: String,
    /// 1-based line in the file (0 when unknown).
    pub line: u64,
    pub message: String,
}

/// A document that was skipped while the rest of the file was used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based line of the document's start.
    pub line: u64,
    pub reason: String,
}

/// Just enough of a document to know its type.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeHeader {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

/// One `---`-separated document: its text and the number of lines before it.
#[derive(Debug, PartialEq, Eq)]
pub struct Document<'a> {
    pub lines_before: u64,
    pub text: &'a str,
}

/// Splits a YAML stream at document markers (`---` at the start of a line; YAML forbids
/// that sequence at column 0 inside content, block scalars included). Each document
/// keeps its marker line so its own line numbers stay right.
pub fn documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let (mut start, mut start_line, mut offset) = (0, 0u64, 0);
    for (line_no, line) in text.split_inclusive('\n').enumerate() {
        let content = line.trim_end_matches(['\n', '\r']);
        let marker =
            content == "---" || content.starts_with("--- ") || content.starts_with("---\t");
        if marker && offset > start {
            docs.push(Document {
                lines_before: start_line,
                text: &text[start..offset],
            });
            start = offset;
            start_line = line_no as u64;
        } else if marker {
            start_line = line_no as u64;
        }
        offset += line.len();
    }
    docs.push(Document {
        lines_before: start_line,
        text: &text[start..],
    });
    docs
}

/// True for a document with nothing but markers, comments and blank lines.
pub fn is_empty(doc: &str) -> bool {
    doc.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#') || l == "---" || l == "...")
}

fn yaml_error(path: &Path, doc: &Document<'_>, e: &serde_saphyr::Error) -> ParseError {
    let options = serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
        line_offset: doc.lines_before,
    };
    ParseError {
        path: path.display().to_string(),
        line: e
            .location()
            .map_or(doc.lines_before + 1, |l| doc.lines_before + l.line()),
        message: e.render_with_options(options),
    }
}

fn typed<T: DeserializeOwned>(path: &Path, doc: &Document<'_>) -> Result<T, ParseError> {
    serde_saphyr::from_str(doc.text).map_err(|e| yaml_error(path, doc, &e))
}

/// Fills in the namespace (`default`) and checks the name.
fn finish(object: Object, doc: &Document<'_>) -> Result<Object, Skipped> {
    let mut object = object;
    let meta = match &mut object {
        Object::Route(r) => &mut r.metadata,
        Object::Service(s) => &mut s.metadata,
        Object::Slice(s) => &mut s.metadata,
        Object::HttpRoute(r) => &mut r.metadata,
        Object::ConfigMap(c) => &mut c.metadata,
        Object::BackendTlsPolicy(p) => &mut p.metadata,
    };
    if meta.name.as_deref().is_none_or(str::is_empty) {
        return Err(Skipped {
            line: doc.lines_before + 1,
            reason: format!("{:?} without metadata.name", object.kind()),
        });
    }
    if meta.namespace.as_deref().is_none_or(str::is_empty) {
        meta.namespace = Some(DEFAULT_NAMESPACE.to_owned());
    }
    Ok(object)
}

/// The objects in one file's `text`, and the documents skipped (unknown kind, no
/// name). `Err` when any document is not valid YAML or not a valid object of its kind:
/// the caller then keeps the file's previous objects.
pub fn parse_file(path: &Path, text: &str) -> Result<(Vec<Object>, Vec<Skipped>), ParseError> {
    let mut objects = Vec::new();
    let mut skipped = Vec::new();
    for doc in documents(text) {
        if is_empty(doc.text) {
            continue;
        }
        let header: TypeHeader = typed(path, &doc)?;
        let object = match (header.api_version.as_str(), header.kind.as_str()) {
            ("fairway.dev/v1alpha1", "Route") => Object::Route(typed(path, &doc)?),
            ("v1", "Service") => Object::Service(typed(path, &doc)?),
            ("discovery.k8s.io/v1", "EndpointSlice") => Object::Slice(typed(path, &doc)?),
            // The index applies the CRD's defaults itself: no apiserver defaulted these.
            ("gateway.networking.k8s.io/v1", "HTTPRoute") => Object::HttpRoute(typed(path, &doc)?),
            ("v1", "ConfigMap") => Object::ConfigMap(typed(path, &doc)?),
            ("gateway.networking.k8s.io/v1", "BackendTLSPolicy") => {
                Object::BackendTlsPolicy(typed(path, &doc)?)
            }
            (api_version, kind) => {
                skipped.push(Skipped {
                    line: doc.lines_before + 1,
                    reason: format!(
                        "unknown kind {kind:?} (apiVersion {api_version:?}): expected Route \
                         (fairway.dev/v1alpha1), Service (v1), EndpointSlice (discovery.k8s.io/v1), \
                         HTTPRoute or BackendTLSPolicy (gateway.networking.k8s.io/v1) or \
                         ConfigMap (v1)"
                    ),
                });
                continue;
            }
        };
        match finish(object, &doc) {
            Ok(object) => objects.push(object),
            Err(skip) => skipped.push(skip),
        }
    }
    Ok((objects, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_their_line_numbers() {
        let text = "a: 1\n---\nb: 2\nc: 3\n--- \n---\nd: 4";
        let docs = documents(text);
        let starts: Vec<u64> = docs.iter().map(|d| d.lines_before).collect();
        assert_eq!(starts, vec![0, 1, 4, 5]);
        assert_eq!(docs[1].text, "---\nb: 2\nc: 3\n");
        assert!(is_empty(docs[2].text));
        assert_eq!(
            documents("---\na: 1\n").len(),
            1,
            "a leading marker opens the first document"
        );
    }

    #[test]
    fn bad_yaml_reports_the_file_line() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: [unclosed\n";
        let err = parse_file(Path::new("x.yaml"), text).expect_err("bad YAML");
        assert_eq!(err.path, "x.yaml");
        assert!(
            (7..=9).contains(&err.line),
            "the error points into the second document, got line {}: {err}",
            err.line
        );
    }

    #[test]
    fn unknown_kinds_and_nameless_objects_are_skipped() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: c}\n---\napiVersion: v1\nkind: Service\nmetadata: {}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n";
        let (objects, skipped) = parse_file(Path::new("x.yaml"), text).expect("parses");
        assert_eq!(objects.len(), 1);
        assert_eq!(
            objects[0].key(),
            ObjectKey {
                kind: Kind::Service,
                namespace: "default".into(),
                name: "s".into()
            },
            "no namespace means default"
        );
        let lines: Vec<u64> = skipped.iter().map(|s| s.line).collect();
        assert_eq!(
            lines,
            vec![1, 4],
            "each skip names its document's first line"
        );
        assert!(
            skipped[0].reason.contains("ConfigMap"),
            "{}",
            skipped[0].reason
        );
    }
}
