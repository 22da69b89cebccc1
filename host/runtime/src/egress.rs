//! The egress allowlist: which third-party URLs an app may call.
//!
//! The platform's backend-fetch rule: an entry is a URL or a bare host (no
//! scheme means `https`); a request is allowed when its scheme equals the
//! entry's and its host — with the port, if the entry writes one — equals the
//! entry's host exactly; an entry whose host starts with `*.` matches
//! subdomains only (`*.example.com` matches `a.example.com` and
//! `a.b.example.com`, not `example.com`); the single entry `*` allows
//! everything; paths, queries and fragments are ignored.

use crate::bindings::outbound_http::{HttpError, Request, Response};
use crate::capabilities::OutboundHttp;
use std::fmt;
use std::sync::Arc;

/// One allowlist entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    text: String,
    rule: Rule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Anything,
    Host {
        scheme: String,
        host: HostPattern,
        port: Option<u16>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.suffix`: holds `.suffix`.
    Subdomains(String),
}

/// An app's egress allowlist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<Entry>,
}

/// The verdict on one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by this entry.
    Allowed(String),
    /// No entry allows it.
    Denied,
    /// Not an absolute http(s) URL; says why.
    Invalid(String),
}

/// An entry that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEntry {
    /// The entry as written.
    pub entry: String,
    /// Why it cannot be read.
    pub why: String,
}

impl fmt::Display for BadEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "egress entry {:?} is invalid: {}", self.entry, self.why)
    }
}

impl std::error::Error for BadEntry {}

impl Allowlist {
    /// Parses entries such as `api.example.com`, `https://*.example.com`,
    /// `http://localhost:8080` or `*`.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Allowlist, BadEntry> {
        let entries = entries
            .iter()
            .map(|e| parse_entry(e.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Allowlist { entries })
    }

    /// The entries as written.
    pub fn entries(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.text.as_str())
    }

    /// Decides whether `url` may be called.
    pub fn check(&self, url: &str) -> Decision {
        let parsed = match url::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return Decision::Invalid(format!("{url:?} does not parse as a URL ({e})")),
        };
        if !matches!(parsed.scheme(), "http" | "https") {
            return Decision::Invalid(format!("{url:?} is not an http(s) URL"));
        }
        let Some(host) = parsed.host_str() else {
            return Decision::Invalid(format!("{url:?} has no host"));
        };
        let port = parsed.port();
        for entry in &self.entries {
            let allowed = match &entry.rule {
                Rule::Anything => true,
                Rule::Host {
                    scheme,
                    host: pattern,
                    port: entry_port,
                } => {
                    scheme == parsed.scheme()
                        && *entry_port == port
                        && match pattern {
                            HostPattern::Exact(h) => h == host,
                            HostPattern::Subdomains(suffix) => {
                                host.len() > suffix.len() && host.ends_with(suffix.as_str())
                            }
                        }
                }
            };
            if allowed {
                return Decision::Allowed(entry.text.clone());
            }
        }
        Decision::Denied
    }
}

fn parse_entry(text: &str) -> Result<Entry, BadEntry> {
    let bad = |why: &str| BadEntry {
        entry: text.to_owned(),
        why: why.to_owned(),
    };
    let trimmed = text.trim();
    if trimmed == "*" {
        return Ok(Entry {
            text: text.to_owned(),
            rule: Rule::Anything,
        });
    }
    let (scheme, rest) = match trimmed.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("https".to_owned(), trimmed),
    };
    if !matches!(scheme.as_str(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("expected a host, e.g. api.example.com or *.example.com"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            let port = port
                .parse::<u16>()
                .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
            (host, Some(port))
        }
        _ => (authority, None),
    };
    let host = host.to_ascii_lowercase();
    let pattern = match host.strip_prefix('*') {
        Some(suffix) if suffix.starts_with('.') && suffix.len() > 1 && !suffix[1..].contains('*') => {
            HostPattern::Subdomains(suffix.to_owned())
        }
        Some(_) => return Err(bad("a wildcard must be `*` alone or lead the host as `*.example.com`")),
        None if host.contains('*') => return Err(bad("a wildcard may only lead the host")),
        None => HostPattern::Exact(host),
    };
    // A default port written out is the same host as no port.
    let port = match (scheme.as_str(), port) {
        ("https", Some(443)) | ("http", Some(80)) => None,
        (_, port) => port,
    };
    Ok(Entry {
        text: text.to_owned(),
        rule: Rule::Host {
            scheme,
            host: pattern,
            port,
        },
    })
}

/// Outbound HTTP behind an allowlist: a refused request never reaches `inner`.
pub struct EgressGuard {
    allowlist: Allowlist,
    inner: Arc<dyn OutboundHttp>,
}

impl EgressGuard {
    /// Guards `inner` with `allowlist`.
    pub fn new(allowlist: Allowlist, inner: Arc<dyn OutboundHttp>) -> EgressGuard {
        EgressGuard { allowlist, inner }
    }
}

impl OutboundHttp for EgressGuard {
    fn send(&self, request: Request) -> Result<Response, HttpError> {
        match self.allowlist.check(&request.url) {
            Decision::Allowed(_) => self.inner.send(request),
            Decision::Invalid(why) => Err(HttpError::InvalidUrl(why)),
            Decision::Denied => Err(HttpError::Denied(format!(
                "{} is not allowed by the app's egress allowlist [{}]",
                request.url,
                self.allowlist.entries().collect::<Vec<_>>().join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(entries: &[&str], url: &str) -> Decision {
        Allowlist::parse(entries).unwrap().check(url)
    }

    fn allowed(entries: &[&str], url: &str) -> bool {
        matches!(check(entries, url), Decision::Allowed(_))
    }

    #[test]
    fn a_bare_host_means_https_and_paths_are_ignored() {
        assert!(allowed(
            &["api.example.com"],
            "https://api.example.com/v1/items?page=2#x"
        ));
        assert!(!allowed(&["api.example.com"], "http://api.example.com/"));
        assert!(!allowed(&["api.example.com"], "https://example.com/"));
        assert!(!allowed(&["api.example.com"], "https://api.example.com.evil.net/"));
        assert!(allowed(
            &["https://api.example.com/only/this/path"],
            "https://api.example.com/other"
        ));
    }

    #[test]
    fn the_port_is_part_of_the_host() {
        assert!(!allowed(&["api.example.com"], "https://api.example.com:8443/"));
        assert!(allowed(&["api.example.com:8443"], "https://api.example.com:8443/"));
        assert!(!allowed(&["api.example.com:8443"], "https://api.example.com/"));
        assert!(allowed(&["http://localhost:8080"], "http://localhost:8080/x"));
        assert!(
            allowed(&["api.example.com"], "https://api.example.com:443/"),
            "a default port is no port"
        );
    }

    #[test]
    fn a_glob_matches_subdomains_only() {
        assert!(allowed(&["*.example.com"], "https://a.example.com/"));
        assert!(allowed(&["*.example.com"], "https://a.b.example.com/"));
        assert!(!allowed(&["*.example.com"], "https://example.com/"));
        assert!(!allowed(&["*.example.com"], "https://badexample.com/"));
        assert!(!allowed(&["*.example.com"], "http://a.example.com/"));
    }

    #[test]
    fn star_alone_allows_everything() {
        assert!(allowed(&["*"], "http://anything.test:1234/x"));
        assert_eq!(check(&["a.com", "*"], "https://b.com/"), Decision::Allowed("*".into()));
    }

    #[test]
    fn the_matching_entry_is_named() {
        assert_eq!(
            check(&["a.com", "*.b.com"], "https://x.b.com/"),
            Decision::Allowed("*.b.com".into())
        );
        assert_eq!(check(&["a.com"], "https://b.com/"), Decision::Denied);
    }

    #[test]
    fn bad_entries_and_urls_are_refused_with_reasons() {
        assert!(Allowlist::parse(&["ftp://files.example.com"]).is_err());
        assert!(Allowlist::parse(&["api.*.com"]).is_err());
        assert!(Allowlist::parse(&["api.example.com:http"]).is_err());
        assert!(matches!(check(&["*"], "not a url"), Decision::Invalid(_)));
        assert!(matches!(check(&["*"], "file:///etc/passwd"), Decision::Invalid(_)));
    }

    #[test]
    fn a_denied_request_makes_no_call_and_names_the_url() {
        struct Counting(std::sync::atomic::AtomicUsize);
        impl OutboundHttp for Counting {
            fn send(&self, _: Request) -> Result<Response, HttpError> {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(Response {
                    status: 200,
                    headers: vec![],
                    body: vec![],
                })
            }
        }
        let inner = Arc::new(Counting(Default::default()));
        let guard = EgressGuard::new(Allowlist::parse(&["api.example.com"]).unwrap(), inner.clone());
        let request = |url: &str| Request {
            method: "GET".into(),
            url: url.into(),
            headers: vec![],
            body: None,
            timeout_ms: None,
        };
        let Err(HttpError::Denied(message)) = guard.send(request("https://evil.example.net/steal")) else {
            panic!()
        };
        assert!(message.contains("https://evil.example.net/steal"), "{message}");
        assert_eq!(inner.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(guard.send(request("https://api.example.com/items")).is_ok());
        assert_eq!(inner.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
