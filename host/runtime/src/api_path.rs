//! An app's Assets API path, read once into the path that will be sent.
//!
//! Checking a string and then handing it to a client that parses it again
//! gives two opinions about one request, and an attacker lives between
//! them: a segment `.\t.` passes a check for `..`, and the client's URL
//! parser then deletes the tab and resolves the `..`. So the guest's path is
//! turned here, once, into an [`ApiPath`]: the absolute path under the
//! workspace, in a form every reader agrees on. Confinement is decided on
//! its segments ([`ApiPath::segments`], [`ApiPath::import_source`]) and the
//! backend sends exactly its text ([`ApiPath::path`], [`ApiPath::query`]);
//! an `ApiPath` cannot hold anything else.
//!
//! The form is deliberately narrow, since the importer needs no more:
//! segments of `A-Z a-z 0-9 - . _ ~` (RFC 3986's unreserved characters),
//! none empty, `.` or `..`, joined by single `/`; an optional query of the
//! same characters and `& = ,`. No percent-escapes in any case (so no
//! encoded dot or slash), no control characters, spaces, backslashes,
//! non-ASCII (full-width slashes and dots), `;` parameters or fragments.
//! The last step reads the result with the `url` crate (the parser the HTTP
//! clients use) and refuses it unless that reading is the text itself.

use std::fmt;

/// The base path of a workspace's API: `/jsm/assets/workspace/{id}/v1/`.
fn base(workspace_id: &str) -> String {
    format!("/jsm/assets/workspace/{workspace_id}/v1/")
}

/// A guest's API path, checked and ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPath {
    /// The absolute path, `/jsm/assets/workspace/{ws}/v1/{relative}`.
    path: String,
    /// The query, without its `?`.
    query: Option<String>,
    /// Where the relative part starts in `path`.
    relative_at: usize,
}

/// Why a guest's path was not sent; names the path (escaped and cut, so a
/// hostile path cannot forge log lines or grow an error without bound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRefusal(pub String);

impl fmt::Display for PathRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PathRefusal {}

/// Most characters of a refused path repeated in the refusal.
const SHOWN: usize = 120;

/// `text` in Rust's debug quoting (control characters escaped), cut to
/// [`SHOWN`] characters.
fn shown(text: &str) -> String {
    let cut: String = text.chars().take(SHOWN).collect();
    let more = text.chars().count().saturating_sub(SHOWN);
    match more {
        0 => format!("{cut:?}"),
        _ => format!("{cut:?}… ({more} more characters)"),
    }
}

/// Whether the URL parser's reading of a path is exactly `path` and
/// `query`, with no fragment. The rules before it leave nothing a parser
/// would change, so in `parse` this never refuses; it is the one check that
/// does not depend on those rules being complete.
fn reads_as(read: &url::Url, path: &str, query: Option<&str>) -> bool {
    read.path() == path && read.query() == query && read.fragment().is_none()
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Checks one segment: non-empty, unreserved characters only, not a dot
/// segment.
fn segment_fault(segment: &str) -> Option<&'static str> {
    if segment.is_empty() {
        return Some("has an empty segment (`//`, or a leading or trailing `/`)");
    }
    if segment == "." || segment == ".." {
        return Some("has a `.` or `..` segment");
    }
    if !segment.bytes().all(unreserved) {
        return Some(
            "has a character outside letters, digits, `-`, `.`, `_` and `~` in a segment \
             (no escapes, spaces, control characters or non-ASCII)",
        );
    }
    None
}

impl ApiPath {
    /// Reads `relative` (e.g. `importsource/{id}/executions?x=1`) as a path
    /// under `workspace_id`'s base path, or says which rule it breaks.
    pub fn parse(workspace_id: &str, relative: &str) -> Result<ApiPath, PathRefusal> {
        let refuse = |why: &str| {
            PathRefusal(format!(
                "{} {why}; API paths are relative to the workspace",
                shown(relative)
            ))
        };
        if let Some(fault) = segment_fault(workspace_id) {
            // The host's own value: a bug in the embedder, not the guest.
            return Err(PathRefusal(format!("workspace id {} {fault}", shown(workspace_id))));
        }
        let (path, query) = match relative.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (relative, None),
        };
        for segment in path.split('/') {
            if let Some(fault) = segment_fault(segment) {
                return Err(refuse(fault));
            }
        }
        if let Some(query) = query {
            if !query.bytes().all(|b| unreserved(b) || matches!(b, b'&' | b'=' | b',')) {
                return Err(refuse(
                    "has a query character outside letters, digits, `-._~&=,` (no escapes, `?`, `#` or spaces)",
                ));
            }
        }
        let segments: Vec<&str> = path.split('/').collect();
        if let ["importsource", _, "token", ..] = segments.as_slice() {
            return Err(refuse(
                "names a source's token endpoint; apps never hold credentials, the platform authenticates their calls itself",
            ));
        }
        let base = base(workspace_id);
        let absolute = format!("{base}{path}");
        // The same reading the HTTP client will make: anything it would
        // change (it cannot, given the rules above) is refused, never sent.
        let target = match query {
            Some(query) => format!("{absolute}?{query}"),
            None => absolute.clone(),
        };
        let read = url::Url::parse("http://assets.invalid")
            .and_then(|origin| origin.join(&target))
            .map_err(|e| refuse(&format!("does not parse as a URL path ({e})")))?;
        if !reads_as(&read, &absolute, query) {
            return Err(refuse("reads as another path to a URL parser"));
        }
        Ok(ApiPath {
            relative_at: base.len(),
            path: absolute,
            query: query.map(str::to_owned),
        })
    }

    /// The absolute path, `/jsm/assets/workspace/{ws}/v1/…`, as sent.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query, without its `?`, as sent.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The request target: the path and, if any, `?` and the query.
    pub fn target(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }

    /// The segments after the workspace base path (`importsource`, an id,
    /// `executions`, …); never empty, `.` or `..`.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.path[self.relative_at..].split('/')
    }

    /// The import source the path is under: `importsource/{id}/…`.
    pub fn import_source(&self) -> Option<&str> {
        let mut segments = self.segments();
        match (segments.next(), segments.next()) {
            (Some("importsource"), Some(id)) => Some(id),
            _ => None,
        }
    }

    /// The workspace the path is under.
    pub fn workspace_id(&self) -> &str {
        let base = &self.path[..self.relative_at];
        base.trim_start_matches("/jsm/assets/workspace/")
            .trim_end_matches("/v1/")
    }
}

impl fmt::Display for ApiPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)?;
        match &self.query {
            Some(query) => write!(f, "?{query}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_path_is_kept_as_written() {
        let p = ApiPath::parse("w1", "importsource/s/executions?limit=10&cursor=3").unwrap();
        assert_eq!(p.path(), "/jsm/assets/workspace/w1/v1/importsource/s/executions");
        assert_eq!(p.query(), Some("limit=10&cursor=3"));
        assert_eq!(p.import_source(), Some("s"));
        assert_eq!(p.workspace_id(), "w1");
        assert_eq!(p.segments().collect::<Vec<_>>(), ["importsource", "s", "executions"]);
        assert_eq!(p.target(), p.to_string());
    }

    #[test]
    fn every_other_spelling_is_refused_with_the_rule() {
        for (bad, rule) in [
            ("/jsm/assets/workspace/other/v1/importsource/s", "empty segment"),
            ("../../other/v1/importsource/s", "`..`"),
            ("importsource/.\t./x", "outside letters"),
            ("importsource//token", "empty segment"),
            ("importsource/s/token", "token endpoint"),
            ("importsource/s/token?x=1", "token endpoint"),
            ("importsource/%2e%2e/x", "outside letters"),
            ("importsource/s\u{ff0e}\u{ff0e}/x", "outside letters"),
            ("importsource/s\u{ff0f}x", "outside letters"),
            ("importsource/s;x=1/executions", "outside letters"),
            ("importsource\\..\\x", "outside letters"),
            ("https://evil.example.com/x", "outside letters"),
            ("importsource/s#frag", "outside letters"),
            ("importsource/s?a=%2F", "query character"),
            ("importsource/s?a=b#c", "query character"),
            ("importsource/s/", "empty segment"),
            ("", "empty segment"),
        ] {
            let refusal = ApiPath::parse("w1", bad).unwrap_err().0;
            assert!(refusal.contains(rule), "{bad:?}: {refusal}");
            assert!(!refusal.contains('\t'), "control characters are escaped: {refusal}");
        }
    }

    #[test]
    fn a_long_path_is_cut_in_the_refusal() {
        let bad = format!("importsource/{}%", "a".repeat(100_000));
        let refusal = ApiPath::parse("w1", &bad).unwrap_err().0;
        assert!(refusal.len() < 400, "{} bytes", refusal.len());
        let kept = SHOWN - "importsource/".len();
        assert!(
            refusal.starts_with(&format!(
                "\"importsource/{}\"… ({} more characters)",
                "a".repeat(kept),
                100_001 - kept
            )),
            "the first {SHOWN} characters, then how many more: {refusal}"
        );
    }

    #[test]
    fn a_refusal_quotes_the_path_and_says_so_when_shown() {
        let refusal = ApiPath::parse("w1", "importsource/a\tb").unwrap_err();
        assert!(
            refusal.0.starts_with(r#""importsource/a\tb" has a character outside"#),
            "the path quoted, its tab escaped, nothing cut: {}",
            refusal.0
        );
        assert_eq!(refusal.to_string(), refusal.0, "Display shows the refusal");
    }

    #[test]
    fn only_a_reading_equal_in_path_query_and_fragment_passes() {
        let origin = url::Url::parse("http://assets.invalid").unwrap();
        let read = |target: &str| origin.join(target).unwrap();
        assert!(reads_as(&read("/a/b?x=1"), "/a/b", Some("x=1")));
        assert!(reads_as(&read("/a/b"), "/a/b", None));
        assert!(!reads_as(&read("/a/c?x=1"), "/a/b", Some("x=1")), "another path");
        assert!(!reads_as(&read("/a/b?x=2"), "/a/b", Some("x=1")), "another query");
        assert!(!reads_as(&read("/a/b?x=1#f"), "/a/b", Some("x=1")), "a fragment");
        assert!(!reads_as(&read("/a/c?x=2"), "/a/b", Some("x=1")), "both");
    }
}
