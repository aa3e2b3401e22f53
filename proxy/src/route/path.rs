//! Path-prefix matching for rules.
//!
//! A prefix that ends in `/` (including `/` itself) is a plain string prefix: `/api/`
//! matches `/api/` and `/api/x`, not `/api`. A prefix that does not end in `/` matches
//! whole path segments, as Gateway API's `PathPrefix` does: `/api` matches `/api`,
//! `/api/` and `/api/x`, but not `/apix`. An empty prefix matches everything.

/// The path part of a request target: the query is not part of matching, and an empty
/// path (authority-form, `OPTIONS *`) counts as `/`.
pub fn request_path(path_and_query: &str) -> &str {
    let path = path_and_query
        .split_once(['?', '#'])
        .map_or(path_and_query, |(path, _)| path);
    if path.is_empty() { "/" } else { path }
}

/// Whether `prefix` matches `path` (see the module docs for the segment rule).
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.is_empty() || prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{prefix_matches, request_path};

    #[test]
    fn segment_prefix() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/"));
        assert!(prefix_matches("/api", "/api/x"));
        assert!(!prefix_matches("/api", "/apix"), "segments, not characters");
        assert!(!prefix_matches("/api", "/ap"));
    }

    #[test]
    fn slash_terminated_prefix_is_plain() {
        assert!(prefix_matches("/", "/"));
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/api/", "/api/x"));
        assert!(!prefix_matches("/api/", "/api"));
        assert!(prefix_matches("", "/whatever"));
    }

    #[test]
    fn query_is_ignored() {
        assert_eq!(request_path("/api?x=/y"), "/api");
        assert_eq!(request_path("/a#frag"), "/a");
        assert_eq!(request_path(""), "/");
        assert_eq!(request_path("?q"), "/");
    }
}
