//! `fairway inject` on YAML: every document of a stream, whatever its kind, as long as
//! it holds a pod template (a Pod, a Deployment, a CronJob, a `List` of them, or any
//! object with `spec.template.spec`, such as an Argo Rollout). Documents that ask for
//! nothing come back byte for byte; injected ones are written in block style.

use serde_json::Value;

use super::{Asked, InjectError, Injected, Template, inject, mark};
use crate::static_dir::{documents, is_empty};

/// What happened to one object, for stderr.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    /// `Kind/name`.
    pub object: String,
    pub injected: Injected,
}

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("document {index} (line {line}) is not valid YAML: {message}")]
    Yaml {
        index: usize,
        line: u64,
        message: String,
    },
    #[error("{object}: {source}")]
    Inject {
        object: String,
        #[source]
        source: InjectError,
    },
    #[error("writing {object} as YAML: {message}")]
    Write { object: String, message: String },
}

/// Injects every document of `text` that asks for it; returns the new stream and a
/// report per injected object.
pub fn inject_yaml(
    text: &str,
    template: &Template,
) -> Result<(String, Vec<Report>), DocumentError> {
    let mut out = String::with_capacity(text.len());
    let mut reports = Vec::new();
    for (index, doc) in documents(text).into_iter().enumerate() {
        if is_empty(doc.text) {
            out.push_str(doc.text);
            continue;
        }
        let mut object: Value =
            serde_saphyr::from_str(doc.text).map_err(|e| DocumentError::Yaml {
                index: index + 1,
                line: doc.lines_before + 1,
                message: e.to_string(),
            })?;
        let before = reports.len();
        inject_object(&mut object, template, &mut reports)?;
        if reports.len() == before {
            out.push_str(doc.text);
            if !doc.text.ends_with('\n') {
                out.push('\n');
            }
            continue;
        }
        let yaml = serde_saphyr::to_string(&object).map_err(|e| DocumentError::Write {
            object: name_of(&object),
            message: e.to_string(),
        })?;
        if index > 0 || doc.text.starts_with("---") {
            out.push_str("---\n");
        }
        out.push_str(&yaml);
    }
    Ok((out, reports))
}

/// Injects `object`'s pod template, or each item of a `List`; pushes a report per
/// object that was changed.
pub fn inject_object(
    object: &mut Value,
    template: &Template,
    reports: &mut Vec<Report>,
) -> Result<(), DocumentError> {
    if object["kind"] == "List"
        && let Some(Value::Array(items)) = object.get_mut("items")
    {
        for item in items {
            inject_object(item, template, reports)?;
        }
        return Ok(());
    }
    let Some((meta, spec)) = pod_template(object) else {
        return Ok(());
    };
    let asked = Asked::of(
        object
            .pointer(meta)
            .and_then(|m| m["annotations"].as_object()),
    );
    let name = name_of(object);
    let Some(spec) = object.pointer_mut(spec) else {
        return Ok(());
    };
    let injected = inject(spec, &asked, template).map_err(|source| DocumentError::Inject {
        object: name.clone(),
        source,
    })?;
    if !injected.added.is_empty() {
        // Marked as the webhook marks pods, so its output reads the same.
        let (parent, key) = meta.rsplit_once('/').unwrap_or(("", meta));
        if let Some(Value::Object(parent)) = object.pointer_mut(parent) {
            let meta = parent.entry(key).or_insert_with(|| Value::Null);
            mark(meta, asked.wanted, &injected);
        }
        reports.push(Report {
            object: name,
            injected,
        });
    }
    Ok(())
}

/// JSON pointers to an object's pod metadata and pod spec, if it has a pod template.
pub fn pod_template(object: &Value) -> Option<(&'static str, &'static str)> {
    match object["kind"].as_str() {
        Some("Pod") => Some(("/metadata", "/spec")),
        Some("CronJob") => Some((
            "/spec/jobTemplate/spec/template/metadata",
            "/spec/jobTemplate/spec/template/spec",
        )),
        _ if object.pointer("/spec/template/spec").is_some() => {
            Some(("/spec/template/metadata", "/spec/template/spec"))
        }
        _ => None,
    }
}

fn name_of(object: &Value) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap_or("object"),
        object["metadata"]["name"].as_str().unwrap_or("")
    )
}

#[cfg(test)]
#[path = "document_tests.rs"]
mod tests;
