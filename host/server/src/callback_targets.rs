//! Where scheduled callbacks may go: the server's own web triggers, or what
//! the operator allows, and never the host's own network by accident.
//!
//! A schedule's `callbackUrl` is chosen by whoever can write the schedule,
//! an app included, and the server POSTs to it. Unchecked, that is SSRF: an
//! app could make the host call loopback, a private network or a cloud
//! metadata address that its own egress allowlist forbids. So:
//!
//! - [`CallbackPolicy`] (the mock's [`CallbackTargets`]) admits a URL only
//!   when it is this server's web trigger for the app that performs the
//!   source, or matches the operator's callback allowlist (the egress
//!   allowlist's syntax and matcher); a URL naming an internal address
//!   ([`crate::address::internal`]) is refused unless an allowlist entry
//!   names that very address. It runs when the URL is set and before each
//!   callback.
//! - [`PublicResolver`] runs when the callback is sent: the name is resolved
//!   once, internal addresses are dropped, and the connection goes to what
//!   is left, so DNS cannot point an allowed name at the host's network.

use crate::address::internal;
use assets_platform::assets::{CallbackTargets, ImportSource};
use assets_runtime::egress::{Allowlist, Decision};
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};

/// The operator's rule for callback URLs.
pub struct CallbackPolicy {
    /// This server's public base URL, no trailing slash: its web triggers
    /// are `{base}/apps/{name}/webtrigger`.
    own_base: String,
    /// The apps this server hosts.
    hosted: HashSet<String>,
    /// The operator's callback allowlist.
    allowlist: Allowlist,
}

impl CallbackPolicy {
    /// The rule for a server reached at `own_base` hosting `hosted`, with
    /// the operator's `allowlist`.
    pub fn new(own_base: &str, hosted: impl IntoIterator<Item = String>, allowlist: Allowlist) -> CallbackPolicy {
        CallbackPolicy {
            own_base: own_base.trim_end_matches('/').to_owned(),
            hosted: hosted.into_iter().collect(),
            allowlist,
        }
    }

    /// True when `url` is on this server's public origin.
    fn is_own(&self, url: &url::Url) -> bool {
        url::Url::parse(&self.own_base).is_ok_and(|own| own.origin() == url.origin())
    }

    /// The addresses the allowlist names literally: the only internal
    /// addresses a callback may reach.
    pub fn named_addresses(&self) -> HashSet<IpAddr> {
        self.allowlist.entries().filter_map(literal_address).collect()
    }

    fn hint(&self, source: &ImportSource) -> String {
        match &source.app {
            Some(app) if self.hosted.contains(app) => format!("{}/apps/{app}/webtrigger", self.own_base),
            _ => "an app hosted here".to_owned(),
        }
    }
}

/// What a callback URL's path names, read as the most lenient server or
/// proxy in front of one might read it: dot segments resolved (the `url`
/// crate), empty segments skipped, percent-escapes decoded, case ignored.
/// The server cannot know every name it is reached by, nor what a proxy
/// before it does, so these rules hold on any host.
#[derive(Debug, PartialEq, Eq)]
enum ServerPath {
    /// The Assets API (`/jsm/…`) or the admin endpoints (`/_admin/…`).
    Api,
    /// An app's web trigger, `/apps/{name}/webtrigger`.
    WebTrigger(String),
    /// Anything else: an app's own webhook.
    Other,
}

fn server_path(url: &url::Url) -> ServerPath {
    let segments: Vec<String> = url
        .path_segments()
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    // A decoded segment may hold a `/` of its own (`jsm%2Fassets`).
    let first = segments.first().map(|s| s.split('/').next().unwrap_or_default());
    if first.is_some_and(|f| f.eq_ignore_ascii_case("jsm") || f.eq_ignore_ascii_case("_admin")) {
        return ServerPath::Api;
    }
    match segments.as_slice() {
        // The name as written: app names are matched exactly.
        [apps, name, trigger] if apps.eq_ignore_ascii_case("apps") && trigger.eq_ignore_ascii_case("webtrigger") => {
            ServerPath::WebTrigger(name.clone())
        }
        _ => ServerPath::Other,
    }
}

impl CallbackTargets for CallbackPolicy {
    fn check(&self, source: &ImportSource, url: &str) -> Result<(), String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("{url} is not a URL ({e})"))?;
        match server_path(&parsed) {
            ServerPath::Api => {
                return Err(format!(
                    "{url} names a path of the Assets API or the admin endpoints; a callback goes to an app's web \
                     trigger ({})",
                    self.hint(source)
                ))
            }
            // An app's web trigger, on this server or any other: only the
            // app that performs the source is called back.
            ServerPath::WebTrigger(name) if source.app.as_deref() != Some(name.as_str()) => {
                return Err(format!(
                    "{url} is app {name}'s web trigger, but app {name} does not perform import source {}; \
                     name the web trigger of the app that does ({})",
                    source.id,
                    self.hint(source)
                ))
            }
            ServerPath::WebTrigger(name) if self.is_own(&parsed) => {
                return match self.hosted.contains(&name) {
                    true => Ok(()),
                    false => Err(format!(
                        "{url} is a web trigger of this server, but it hosts no app named {name:?}"
                    )),
                };
            }
            _ => {}
        }
        let entry = match self.allowlist.check(url) {
            Decision::Allowed(entry) => entry,
            Decision::Invalid(why) => return Err(why),
            Decision::Denied => {
                let entries: Vec<&str> = self.allowlist.entries().collect();
                let allowed = match entries.is_empty() {
                    true => "no callback allowlist is set (--callback-allow)".to_owned(),
                    false => format!("the callback allowlist is [{}]", entries.join(", ")),
                };
                return Err(format!(
                    "{url} is not an allowed callback target: it must be the web trigger of the app that performs \
                     the source ({}) or match the operator's callback allowlist, and {allowed}",
                    self.hint(source)
                ));
            }
        };
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host().map(|h| h.to_owned()))
            .ok_or_else(|| format!("{url} has no host"))?;
        let named = match &host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
            url::Host::Domain(name) if is_localhost(name) => {
                return Err(format!(
                    "{url} names {name}, a loopback name; callbacks may reach an internal address only when the \
                     operator's callback allowlist names that address itself (e.g. http://127.0.0.1:PORT)"
                ))
            }
            url::Host::Domain(_) => None,
        };
        match named.and_then(|ip| internal(ip).map(|why| (ip, why))) {
            Some((ip, why)) if literal_address(&entry) != Some(ip) => Err(format!(
                "{url} names {ip}, a {why} address; callbacks may reach an internal address only when the \
                 operator's callback allowlist names that address itself (entry {entry:?} does not)"
            )),
            _ => Ok(()),
        }
    }
}

/// `localhost` and its subdomains, which resolve to loopback everywhere.
pub(crate) fn is_localhost(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// The IP address an allowlist entry names as its host, if it names one.
fn literal_address(entry: &str) -> Option<IpAddr> {
    let rest = entry.trim().split_once("://").map_or(entry.trim(), |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.split(':').next()?,
    };
    host.parse().ok()
}

/// Resolves callback hosts for the HTTP client and keeps only addresses a
/// callback may reach: public ones, and internal ones the allowlist names
/// literally. The server's own address is always reachable.
pub struct PublicResolver {
    /// `host:port` of this server's own base URL, as the client writes it.
    own: Option<String>,
    /// Internal addresses the operator named.
    named: HashSet<IpAddr>,
    /// Names the operator pinned to an address (`serve --resolve`), looked
    /// up here instead of in DNS; the address is then filtered like any other.
    pinned: HashMap<String, IpAddr>,
}

impl PublicResolver {
    /// A resolver that lets `own_base`'s address through and, of internal
    /// addresses, only `named`.
    pub fn new(own_base: &str, named: HashSet<IpAddr>) -> PublicResolver {
        let own = url::Url::parse(own_base).ok().and_then(|u| {
            let port = u.port_or_known_default()?;
            Some(format!("{}:{port}", u.host_str()?))
        });
        PublicResolver {
            own,
            named,
            pinned: HashMap::new(),
        }
    }

    /// Resolves each name of `pinned` to its address instead of asking DNS,
    /// as curl's `--resolve` does. The address is filtered like one DNS
    /// gave: pinning a name to an internal address does not make it
    /// reachable (only naming the address itself in the allowlist does).
    pub fn with_pinned(mut self, pinned: HashMap<String, IpAddr>) -> PublicResolver {
        self.pinned = pinned
            .into_iter()
            .map(|(name, ip)| (name.to_ascii_lowercase(), ip))
            .collect();
        self
    }

    /// `netloc`'s addresses: the pinned one for a pinned name, else DNS's.
    fn lookup(&self, netloc: &str) -> io::Result<Vec<SocketAddr>> {
        if let Some((host, port)) = netloc.rsplit_once(':') {
            if let (Some(ip), Ok(port)) = (self.pinned.get(&host.to_ascii_lowercase()), port.parse()) {
                return Ok(vec![SocketAddr::new(*ip, port)]);
            }
        }
        Ok(netloc.to_socket_addrs()?.collect())
    }
}

impl ureq::Resolver for PublicResolver {
    fn resolve(&self, netloc: &str) -> io::Result<Vec<SocketAddr>> {
        let addresses = self.lookup(netloc)?;
        if self.own.as_deref() == Some(netloc) {
            return Ok(addresses);
        }
        let (host, _) = netloc.rsplit_once(':').unwrap_or((netloc, ""));
        let literal: Option<IpAddr> = host.trim_start_matches('[').trim_end_matches(']').parse().ok();
        let mut refused = Vec::new();
        let reachable: Vec<SocketAddr> = addresses
            .into_iter()
            .filter(|a| match internal(a.ip()) {
                Some(_) if literal == Some(a.ip()) && self.named.contains(&a.ip()) => true,
                Some(why) => {
                    refused.push(format!("{} ({why})", a.ip()));
                    false
                }
                None => true,
            })
            .collect();
        if reachable.is_empty() && !refused.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{host} resolves to {}: callbacks may not reach internal addresses unless the operator's \
                     callback allowlist names the address itself",
                    refused.join(", ")
                ),
            ));
        }
        Ok(reachable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assets_platform::assets::SourceType;

    fn source(app: Option<&str>) -> ImportSource {
        ImportSource::new(
            "src-1".into(),
            "ws".into(),
            SourceType::External,
            app.map(str::to_owned),
        )
    }

    fn policy(entries: &[&str]) -> CallbackPolicy {
        CallbackPolicy::new(
            "http://127.0.0.1:8080",
            ["demo".to_owned(), "other".to_owned()],
            Allowlist::parse(entries).unwrap(),
        )
    }

    #[test]
    fn a_callback_never_names_a_path_of_the_servers_own_api() {
        // An app could otherwise have the server POST to another source's
        // token endpoint (a token-less server answers it), here or through
        // a proxy that merges slashes, decodes escapes or ignores case.
        let p = policy(&["http://127.0.0.1:8080", "*"]);
        for url in [
            "http://127.0.0.1:8080/jsm/assets/workspace/w/v1/importsource/other/token",
            "http://127.0.0.1:8080/x/../jsm/assets/workspace/w/v1/importsource/other/token",
            "http://127.0.0.1:8080/%2e%2e/_admin/clock/advance",
            "https://node-2.example.com/_admin/importsource",
            "http://127.0.0.1:8080//jsm/assets/workspace/w/v1/importsource/other/token",
            "http://127.0.0.1:8080/%6asm/assets/workspace/w/v1/importsource/other/token",
            "http://127.0.0.1:8080/%6Asm/x",
            "http://127.0.0.1:8080/JSM/x",
            "http://127.0.0.1:8080/jsm%2Fassets/x",
            "http://127.0.0.1:8080/%5Fadmin/apps",
            "http://127.0.0.1:8080/_ADMIN/apps",
        ] {
            let err = p.check(&source(Some("demo")), url).unwrap_err();
            assert!(err.contains("names a path of the Assets API"), "{url}: {err}");
        }
        assert_eq!(
            p.check(&source(Some("demo")), "http://127.0.0.1:8080/hooks/jsm"),
            Ok(()),
            "only the first segment counts"
        );
    }

    #[test]
    fn another_apps_web_trigger_is_refused_in_any_spelling_on_any_host() {
        let p = policy(&["http://127.0.0.1:8080", "*"]);
        for url in [
            "http://127.0.0.1:8080/apps/demo/webtrigger/../../other/webtrigger",
            "http://127.0.0.1:8080/apps/other/webtrigger",
            "http://localhost:8080/apps/other/webtrigger",
            "https://node-2.example.com//apps/other/webtrigger",
            "https://node-2.example.com/APPS/other/WEBTRIGGER",
            "https://node-2.example.com/apps/%6Fther/webtrigger",
        ] {
            let err = p.check(&source(Some("demo")), url).unwrap_err();
            assert!(err.contains("does not perform"), "{url}: {err}");
        }
        // The performing app's, on an allowed sibling node, is fine.
        assert_eq!(
            p.check(&source(Some("demo")), "https://node-2.example.com/apps/demo/webtrigger"),
            Ok(())
        );
    }

    #[test]
    fn the_web_trigger_of_the_performing_app_is_always_allowed() {
        let p = policy(&[]);
        let url = "http://127.0.0.1:8080/apps/demo/webtrigger";
        assert_eq!(p.check(&source(Some("demo")), url), Ok(()));
        let err = p.check(&source(Some("other")), url).unwrap_err();
        assert!(err.contains("does not perform"), "{err}");
        let err = p
            .check(&source(Some("ghost")), "http://127.0.0.1:8080/apps/ghost/webtrigger")
            .unwrap_err();
        assert!(err.contains("no app named"), "{err}");
    }

    #[test]
    fn anything_else_must_match_the_allowlist() {
        let err = policy(&[])
            .check(&source(None), "https://app.example.com/cb")
            .unwrap_err();
        assert!(err.contains("no callback allowlist is set"), "{err}");
        let p = policy(&["app.example.com"]);
        assert_eq!(p.check(&source(None), "https://app.example.com/cb"), Ok(()));
        assert!(
            p.check(&source(None), "https://app.example.com:443/cb").is_err(),
            "port as written"
        );
        assert!(p.check(&source(None), "http://app.example.com/cb").is_err());
    }

    #[test]
    fn internal_addresses_need_an_entry_naming_them() {
        let everything = policy(&["*", "http://*.internal"]);
        for url in [
            "http://127.0.0.1:9/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:9/x",
            "http://10.0.0.1/x",
            "http://localhost:9/x",
            "http://a.localhost/x",
        ] {
            assert!(everything.check(&source(None), url).is_err(), "{url}");
        }
        let named = policy(&["http://127.0.0.1:9", "http://[::1]:9"]);
        assert_eq!(named.check(&source(None), "http://127.0.0.1:9/x"), Ok(()));
        assert_eq!(named.check(&source(None), "http://[::1]:9/x"), Ok(()));
        assert!(named.check(&source(None), "http://127.0.0.1:10/x").is_err());
        assert_eq!(
            named.named_addresses(),
            HashSet::from(["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()])
        );
    }

    #[test]
    fn the_resolver_drops_internal_addresses_and_names_them() {
        use ureq::Resolver as _;
        let resolver = PublicResolver::new("http://127.0.0.1:8080", HashSet::from(["127.0.0.2".parse().unwrap()]));
        assert!(resolver.resolve("127.0.0.1:8080").is_ok(), "the server itself");
        assert!(resolver.resolve("127.0.0.2:9").is_ok(), "named by the operator");
        let err = resolver.resolve("localhost:9").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("loopback"), "{err}");
        let err = resolver.resolve("169.254.169.254:80").unwrap_err();
        assert!(err.to_string().contains("169.254.169.254"), "{err}");
        assert_eq!(resolver.resolve("8.8.8.8:443").unwrap().len(), 1);
    }
}
