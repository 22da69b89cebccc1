//! The egress allowlist: which third-party URLs an app may call.
//!
//! The platform's backend-fetch rule: an entry is a URL or a bare host (no
//! scheme means `https`); a request is allowed when its scheme equals the
//! entry's and its host and port equal the entry's exactly; an entry whose
//! host starts with `*.` matches subdomains only (`*.example.com` matches
//! `a.example.com` and `a.b.example.com`, not `example.com`); the single
//! entry `*` allows everything; paths, queries and fragments are ignored.
//!
//! The port is compared as written in the URL, as text, never normalised:
//! a default port written out is a different host from no port.
//! `https://api.example.com:443/x` is denied by `api.example.com`,
//! `*.example.com` and `https://api.example.com`; the entry
//! `api.example.com:443` allows it, and denies `https://api.example.com/x`.
//! Likewise `:0443` is not `:443`, and a `:` with nothing after it
//! (`https://h:/`) is not the same as no `:` — it matches no entry but `*`,
//! since an entry cannot have an empty port. The host is compared as the
//! `url` crate reads it (lower-cased, IDNA, IPv4 forms normalised).

use crate::bindings::outbound_http::{HttpError, Response};
use crate::capabilities::OutboundHttp;
use crate::outbound::OutboundRequest;
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
        /// The port's digits as written (`"443"` stays `"443"`), compared
        /// as text with the URL's.
        port: Option<String>,
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

/// A URL read once: what the allowlist decides on and what the client
/// sends, so the two cannot read it differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    url: url::Url,
    /// The port as written (`url::Url` forgets a written default port).
    port: Option<String>,
}

impl Target {
    /// Reads `text` as an absolute http(s) URL with a host, or says why
    /// not (naming it).
    pub fn parse(text: &str) -> Result<Target, String> {
        let url = url::Url::parse(text).map_err(|e| format!("{text:?} does not parse as a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{text:?} is not an http(s) URL"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{text:?} has no host"));
        }
        let port = written_port(text, &url).map_err(|why| format!("{text:?} {why}"))?;
        let port = port.map(str::to_owned);
        Ok(Target { url, port })
    }

    /// The URL, as the client sends it.
    pub fn url(&self) -> &url::Url {
        &self.url
    }
}

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
        match Target::parse(url) {
            Ok(target) => self.decide(&target),
            Err(why) => Decision::Invalid(why),
        }
    }

    /// Decides whether `target`, a URL already read, may be called.
    pub fn decide(&self, target: &Target) -> Decision {
        let (parsed, port) = (&target.url, target.port.as_deref());
        let host = parsed.host_str().expect("a Target has a host");
        for entry in &self.entries {
            let allowed = match &entry.rule {
                Rule::Anything => true,
                Rule::Host {
                    scheme,
                    host: pattern,
                    port: entry_port,
                } => {
                    scheme == parsed.scheme()
                        && entry_port.as_deref() == port
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

/// The port of `url` exactly as written: `None` when its authority has no
/// port separator, `Some("")` for a `:` with nothing after it, else the
/// digits as written (`"443"`, `"0443"`).
///
/// `url::Url` cannot give this (it forgets a default port and an empty one),
/// so the raw text is read here. Where the raw text could be read two ways —
/// a parser that strips tabs, or takes `\` for `/`, or skips extra slashes,
/// would see another authority than one that does not — the URL is refused
/// rather than guessed at, so the sandbox never allows what the platform
/// might read differently.
fn written_port<'u>(url: &'u str, parsed: &url::Url) -> Result<Option<&'u str>, &'static str> {
    // `url::Url` trims leading and trailing C0 controls and spaces; trimming
    // the same keeps both readings on the same text.
    let url = url.trim_matches(|c: char| c <= ' ');
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("is not written as scheme://host");
    };
    if !scheme.eq_ignore_ascii_case(parsed.scheme()) {
        return Err("is not written as scheme://host");
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains(['\\', '\t', '\n', '\r']) {
        return Err("has a backslash, tab or line break in its host, which parsers read differently");
    }
    // The last `@` ends the userinfo, as in the WHATWG URL standard and the
    // `url` crate, so `https://user:443@h/` has no port.
    let host_and_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = split_host_port(host_and_port)?;
    if host.is_empty() {
        return Err("has no host as written");
    }
    // A safety net: the port as written must name the port the `url` crate
    // will connect to. A mismatch means the two readings of the authority
    // differ, and then neither can be trusted.
    let agrees = match port {
        None | Some("") => parsed.port().is_none(),
        Some(digits) => digits.parse::<u16>().ok() == parsed.port_or_known_default(),
    };
    if !agrees {
        return Err("has a port that reads differently as written and as parsed");
    }
    Ok(port)
}

/// Splits `host[:port]` or `[ipv6][:port]`; the port is the text after the
/// first `:` outside brackets, possibly empty.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), &'static str> {
    if authority.starts_with('[') {
        let Some(close) = authority.find(']') else {
            return Err("has an IPv6 address without its closing `]`");
        };
        let (host, rest) = authority.split_at(close + 1);
        match rest.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if rest.is_empty() => Ok((host, None)),
            None => Err("has something other than `:port` after an IPv6 address"),
        }
    } else {
        Ok(match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        })
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
    let (host, port) = split_host_port(authority).map_err(|_| bad("expected host, host:port or [ipv6]:port"))?;
    // Kept as written, digits only (`u16`'s parser would take `+443`), since
    // the URL's port is compared as text. An empty port is refused, so a
    // URL's `h:` matches no entry but `*`.
    let port = match port {
        Some(p) if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() => {
            return Err(bad("the port is not a number from 0 to 65535"));
        }
        port => port.map(str::to_owned),
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
    // A default port written out stays written: the platform compares it as
    // text, so `api.example.com:443` is another entry than `api.example.com`.
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
    fn send(&self, request: OutboundRequest) -> Result<Response, HttpError> {
        match self.allowlist.decide(&request.target) {
            Decision::Allowed(_) => self.inner.send(request),
            Decision::Invalid(why) => Err(HttpError::InvalidUrl(why)),
            Decision::Denied => Err(HttpError::Denied(format!(
                "{} is not allowed by the app's egress allowlist [{}]",
                request.url(),
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
            !allowed(&["api.example.com"], "https://api.example.com:443/"),
            "a default port written out is not no port"
        );
    }

    #[test]
    fn a_written_default_port_is_denied_by_entries_without_it() {
        let url = "https://api.example.com:443/x";
        assert_eq!(check(&["api.example.com"], url), Decision::Denied);
        assert_eq!(check(&["*.example.com"], url), Decision::Denied);
        assert_eq!(check(&["https://api.example.com"], url), Decision::Denied);
        assert_eq!(check(&["https://api.example.com/"], url), Decision::Denied);
    }

    #[test]
    fn an_entry_with_a_default_port_matches_only_urls_that_write_it() {
        assert!(allowed(&["api.example.com:443"], "https://api.example.com:443/x"));
        assert!(!allowed(&["api.example.com:443"], "https://api.example.com/x"));
        assert!(allowed(
            &["https://api.example.com:443"],
            "https://api.example.com:443/"
        ));
        assert!(allowed(&["*.example.com:443"], "https://api.example.com:443/x"));
        assert!(!allowed(&["*.example.com:443"], "https://api.example.com/x"));
        let both = Allowlist::parse(&["api.example.com", "api.example.com:443"]).unwrap();
        assert_eq!(
            both.check("https://api.example.com:443/"),
            Decision::Allowed("api.example.com:443".into())
        );
        assert_eq!(
            both.check("https://api.example.com/"),
            Decision::Allowed("api.example.com".into())
        );
    }

    #[test]
    fn http_port_80_written_is_not_http_without_a_port() {
        assert!(!allowed(&["http://h.example"], "http://h.example:80/"));
        assert!(allowed(&["http://h.example:80"], "http://h.example:80/"));
        assert!(!allowed(&["http://h.example:80"], "http://h.example/"));
        assert!(allowed(&["http://h.example"], "http://h.example/"));
    }

    #[test]
    fn the_port_is_compared_as_text() {
        assert!(!allowed(&["api.example.com:443"], "https://api.example.com:0443/"));
        assert!(allowed(&["api.example.com:0443"], "https://api.example.com:0443/"));
        assert!(!allowed(&["api.example.com:8443"], "https://api.example.com:08443/"));
        assert!(Allowlist::parse(&["api.example.com:+443"]).is_err());
        assert!(Allowlist::parse(&["api.example.com:65536"]).is_err());
    }

    #[test]
    fn an_empty_port_is_not_no_port() {
        // `url::Url` reads `h:` as no port; the platform compares the text,
        // and `h:` is not `h`.
        assert_eq!(
            check(&["api.example.com"], "https://api.example.com:/x"),
            Decision::Denied
        );
        assert_eq!(
            check(&["*.example.com"], "https://api.example.com:/x"),
            Decision::Denied
        );
        assert_eq!(
            check(&["api.example.com:443"], "https://api.example.com:/x"),
            Decision::Denied
        );
        assert!(allowed(&["*"], "https://api.example.com:/x"));
        // And no entry can be written with an empty port.
        assert!(Allowlist::parse(&["api.example.com:"]).is_err());
        assert!(Allowlist::parse(&["https://api.example.com:/"]).is_err());
    }

    #[test]
    fn ipv6_literals_keep_their_port() {
        assert!(allowed(&["http://[::1]:8080"], "http://[::1]:8080/x"));
        assert!(!allowed(&["http://[::1]:8080"], "http://[::1]/x"));
        assert!(!allowed(&["http://[::1]"], "http://[::1]:8080/x"));
        assert!(allowed(&["[2001:db8::1]"], "https://[2001:db8::1]/"));
        assert!(!allowed(&["[2001:db8::1]"], "https://[2001:db8::1]:443/"));
        assert!(allowed(&["[2001:db8::1]:443"], "https://[2001:db8::1]:443/"));
        assert!(!allowed(&["[2001:db8::1]"], "https://[2001:db8::1]:/"));
        assert!(Allowlist::parse(&["[::1"]).is_err());
        assert!(Allowlist::parse(&["[::1]x"]).is_err());
    }

    #[test]
    fn userinfo_is_not_the_port() {
        assert!(allowed(&["api.example.com"], "https://user:pass@api.example.com/x"));
        assert!(allowed(&["api.example.com"], "https://user:443@api.example.com/x"));
        assert!(!allowed(&["api.example.com"], "https://user@api.example.com:443/x"));
        assert!(allowed(
            &["api.example.com:443"],
            "https://user:pw@api.example.com:443/x"
        ));
        // The last `@` ends the userinfo: the host here is evil.example.net.
        assert!(!allowed(
            &["api.example.com", "api.example.com:443"],
            "https://api.example.com:443@evil.example.net/"
        ));
        assert!(allowed(&["[::1]:8080"], "https://u:p@[::1]:8080/"));
    }

    #[test]
    fn authorities_parsers_read_differently_are_invalid() {
        for url in [
            "https://api.example.com\\@evil.example.net:443/",
            "https://api.example.com:4\t43/",
            "https:///api.example.com:443/",
            "https:api.example.com:443/",
        ] {
            assert!(matches!(check(&["*"], url), Decision::Invalid(_)), "{url:?}");
        }
        // Surrounding spaces are trimmed by both readings alike.
        assert!(!allowed(&["api.example.com"], "  https://api.example.com:443/ "));
        assert!(allowed(&["api.example.com:443"], "  https://api.example.com:443/ "));
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
            fn send(&self, _: OutboundRequest) -> Result<Response, HttpError> {
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
        let request = |url: &str| {
            let guest = crate::bindings::outbound_http::Request {
                method: crate::bindings::outbound_http::Method::Get,
                url: url.into(),
                headers: vec![],
                body: None,
                timeout_ms: None,
            };
            OutboundRequest::from_guest(guest, std::time::Duration::MAX).unwrap()
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
