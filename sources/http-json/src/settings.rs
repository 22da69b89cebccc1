//! The source's settings, from the `config` import.
//!
//! | key | meaning | default |
//! | --- | --- | --- |
//! | `source-url` | first page, absolute http(s) URL | required |
//! | `source-records` | path of the records list in the body | the body is the list |
//! | `source-pagination` | `none`, `next-url`, `link-header`, `cursor`, `page`, `offset` | `none` |
//! | `source-next-field` | (`next-url`) path of the next page's URL | `next` |
//! | `source-cursor-field` | (`cursor`) path of the next cursor | required for `cursor` |
//! | `source-cursor-param` | (`cursor`) query parameter carrying it | `cursor` |
//! | `source-page-param` | (`page`) page-number parameter | `page` |
//! | `source-page-start` | (`page`) first page number | `1` |
//! | `source-page-size-param` | (`page`) page-size parameter | none |
//! | `source-page-size` | (`page`) page size asked for | required with the parameter |
//! | `source-offset-param` | (`offset`) offset parameter | `offset` |
//! | `source-limit-param` | (`offset`) limit parameter | `limit` |
//! | `source-limit` | (`offset`) records per page | `100` |
//! | `source-total-field` | (`offset`) path of the total number of records; reaching it ends the list | none |
//! | `source-short-page-ends` | (`page`, `offset`) `true`: a page shorter than asked for is the last | `false` |
//! | `source-headers` | request headers, `Name: value` separated by `;` or new lines; sent only to the scheme, host and port of `source-url` | none |
//! | `source-timeout-ms` | per-request timeout | `30000` |
//! | `map-object-type` | Assets object type id of every object | required |
//! | `map-external-id` | path of the record's id | required |
//! | `map-label` | path of the record's display name | required |
//! | `map-attributes` | `key=path` pairs separated by `,` | none |
//!
//! `source-max-pages` (a cap on pages per run) is read by the importer,
//! which counts pages across deliveries of a resumed run.
//!
//! A missing, malformed or contradictory setting is a [`ConfigError`] that
//! names the key — a pagination setting of another style than the one
//! chosen is a contradiction, not something to ignore. It never repeats the
//! value: a token pasted under the wrong key would reach the history.
//!
//! This component is an instance of its own, so it registers its own
//! secrets: every value read goes to [`assets_redact::register_setting`]
//! (`source-headers` values, the user-info and query values of
//! `source-url`, any key named like a credential) before any message is
//! made, and every message it makes hides them by value.

use crate::mapping::Mapping;
use crate::pagination::Pagination;
use crate::path::Path;
use std::fmt;
use url::Url;

/// A setting that is missing, malformed or contradicts another; the message
/// names the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Everything the source needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The configured first URL.
    pub url: Url,
    /// Where the records list is; `None`: the body is the list.
    pub records: Option<Path>,
    /// How to find the next page.
    pub pagination: Pagination,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Per-request timeout.
    pub timeout_ms: u32,
    /// Records to objects.
    pub mapping: Mapping,
}

/// Pagination keys and the style each belongs to.
const STYLE_KEYS: [(&str, &str); 11] = [
    ("source-next-field", "next-url"),
    ("source-cursor-field", "cursor"),
    ("source-cursor-param", "cursor"),
    ("source-page-param", "page"),
    ("source-page-start", "page"),
    ("source-page-size-param", "page"),
    ("source-page-size", "page"),
    ("source-offset-param", "offset"),
    ("source-limit-param", "offset"),
    ("source-limit", "offset"),
    ("source-total-field", "offset"),
];

struct Reader<F: Fn(&str) -> Option<String>> {
    get: F,
}

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// The trimmed value of `key`, if set; its secrets registered first.
    fn optional(&self, key: &str) -> Option<String> {
        let value = (self.get)(key)?;
        assets_redact::register_setting(key, &value);
        Some(value.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn required(&self, key: &str, what: &str) -> Result<String, ConfigError> {
        self.optional(key)
            .ok_or_else(|| ConfigError(format!("{key} is not set: it must be {what}")))
    }

    fn path(&self, key: &str, default: Option<&str>) -> Result<Option<Path>, ConfigError> {
        match self.optional(key).or(default.map(str::to_owned)) {
            None => Ok(None),
            Some(text) => Path::parse(&text).map(Some).map_err(|_| bad_path(key)),
        }
    }

    fn number(&self, key: &str, default: u64, min: u64) -> Result<u64, ConfigError> {
        match self.optional(key) {
            None => Ok(default),
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= min)
                .ok_or_else(|| ConfigError(format!("{key} must be a whole number of at least {min}"))),
        }
    }

    fn name(&self, key: &str, default: &str) -> String {
        self.optional(key).unwrap_or_else(|| default.to_owned())
    }
}

/// The values of `source-pagination`.
const STYLES: [&str; 6] = ["none", "next-url", "link-header", "cursor", "page", "offset"];

fn bad_style() -> ConfigError {
    ConfigError(format!("source-pagination must be one of {}", STYLES.join(", ")))
}

/// The error for a setting that is not a field path; the path itself is
/// not repeated.
fn bad_path(key: &str) -> ConfigError {
    ConfigError(format!(
        "{key} is not a field path: write field names separated by `.`, `field[]` for every element of a list, `field.0` for one"
    ))
}

fn short_page_ends<F: Fn(&str) -> Option<String>>(r: &Reader<F>) -> Result<bool, ConfigError> {
    match r.optional("source-short-page-ends").as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ConfigError("source-short-page-ends must be true or false".into())),
    }
}

impl Settings {
    /// Reads and checks every setting through `get`.
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let r = Reader { get };
        // Registered before anything can fail, so no message made after
        // this shows them.
        r.optional("source-headers");
        let url_text = r.required("source-url", "the first page's absolute http(s) URL")?;
        let url = Url::parse(&url_text)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| {
                ConfigError("source-url must be an absolute http(s) URL, like https://api.example.com/v1/hosts".into())
            })?;
        let style = r.name("source-pagination", "none");
        // Checked first, so the messages below only ever show a valid style.
        if !STYLES.contains(&style.as_str()) {
            return Err(bad_style());
        }
        for (key, owner) in STYLE_KEYS {
            if owner != style && r.optional(key).is_some() {
                return Err(ConfigError(format!(
                    "{key} is set, but source-pagination is {style:?}; {key} belongs to source-pagination={owner}"
                )));
            }
        }
        if r.optional("source-short-page-ends").is_some() && !matches!(style.as_str(), "page" | "offset") {
            return Err(ConfigError(format!(
                "source-short-page-ends is set, but source-pagination is {style:?}; it belongs to source-pagination=page or offset"
            )));
        }
        let pagination = match style.as_str() {
            "none" => Pagination::None,
            "next-url" => Pagination::NextUrl {
                field: r.path("source-next-field", Some("next"))?.expect("defaulted"),
            },
            "link-header" => Pagination::LinkHeader,
            "cursor" => Pagination::Cursor {
                field: r
                    .path("source-cursor-field", None)?
                    .ok_or_else(|| ConfigError("source-cursor-field is not set: source-pagination=cursor needs the path of the next cursor in the body".into()))?,
                param: r.name("source-cursor-param", "cursor"),
            },
            "page" => Pagination::Page {
                param: r.name("source-page-param", "page"),
                start: r.number("source-page-start", 1, 0)?,
                size: match (r.optional("source-page-size-param"), r.optional("source-page-size")) {
                    (Some(param), Some(_)) => Some((param, r.number("source-page-size", 0, 1)?)),
                    (None, None) => None,
                    (Some(_), None) => {
                        return Err(ConfigError(
                            "source-page-size is not set: source-page-size-param needs the page size to ask for".into(),
                        ))
                    }
                    (None, Some(_)) => {
                        return Err(ConfigError(
                            "source-page-size-param is not set: source-page-size needs the parameter that carries it".into(),
                        ))
                    }
                },
                short_page_ends: short_page_ends(&r)?,
            },
            "offset" => Pagination::Offset {
                param: r.name("source-offset-param", "offset"),
                limit_param: r.name("source-limit-param", "limit"),
                limit: r.number("source-limit", 100, 1)?,
                total: r.path("source-total-field", None)?,
                short_page_ends: short_page_ends(&r)?,
            },
            _ => return Err(bad_style()),
        };
        let headers = match r.optional("source-headers") {
            None => Vec::new(),
            Some(text) => text
                .split([';', '\n'])
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .enumerate()
                .map(|(i, h)| {
                    // The entry is not quoted: without its colon, it may be
                    // a bare token.
                    h.split_once(':')
                        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                        .filter(|(n, _)| !n.is_empty() && !n.contains(char::is_whitespace))
                        .ok_or_else(|| {
                            ConfigError(format!(
                                "source-headers: entry {} is not `Name: value` (entries are separated by `;` or new lines)",
                                i + 1
                            ))
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        let attributes = match r.optional("map-attributes") {
            None => Vec::new(),
            Some(text) => text
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .enumerate()
                .map(|(i, pair)| {
                    let entry = i + 1;
                    let (key, path) = pair.split_once('=').ok_or_else(|| {
                        ConfigError(format!(
                            "map-attributes: entry {entry} is not `key=path` (entries are separated by `,`)"
                        ))
                    })?;
                    let path = Path::parse(path).map_err(|_| bad_path(&format!("map-attributes: entry {entry}")))?;
                    Ok((key.trim().to_owned(), path))
                })
                .collect::<Result<_, ConfigError>>()?,
        };
        let mapping = Mapping {
            object_type_id: r.required("map-object-type", "the Assets object type id of the imported objects")?,
            external_id: r.path("map-external-id", None)?.ok_or_else(|| {
                ConfigError("map-external-id is not set: it must be the path of each record's id, e.g. `id`".into())
            })?,
            label: r.path("map-label", None)?.ok_or_else(|| {
                ConfigError("map-label is not set: it must be the path of each record's name, e.g. `name`".into())
            })?,
            attributes,
        };
        Ok(Settings {
            url,
            records: r.path("source-records", None)?,
            pagination,
            headers,
            timeout_ms: r.number("source-timeout-ms", 30_000, 1)?.min(u64::from(u32::MAX)) as u32,
            mapping,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The NetBox example's settings, for the other modules' tests.
    pub(crate) fn netbox() -> Settings {
        read(NETBOX).unwrap()
    }

    fn read(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        Settings::read(|k| map.get(k).cloned())
    }

    const NETBOX: &[(&str, &str)] = &[
        ("source-url", "https://netbox.example.com/api/dcim/devices/?limit=50"),
        ("source-records", "results"),
        ("source-pagination", "next-url"),
        ("map-object-type", "device"),
        ("map-external-id", "id"),
        ("map-label", "name"),
        ("map-attributes", "serial=serial, site=site.name, tags=tags[].name"),
    ];

    #[test]
    fn the_netbox_configuration_reads() {
        let s = read(NETBOX).unwrap();
        assert_eq!(s.mapping.attributes.len(), 3);
        assert_eq!(s.records.unwrap().as_str(), "results");
        assert!(matches!(s.pagination, Pagination::NextUrl { .. }));
        assert_eq!(s.timeout_ms, 30_000);
    }

    #[test]
    fn the_shipped_netbox_file_reads() {
        let text = include_str!("../netbox.conf");
        let map: HashMap<String, String> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                (k.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        Settings::read(|k| map.get(k).cloned()).unwrap();
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        read(pairs).unwrap_err().0
    }

    fn netbox_with(change: (&str, &str)) -> Vec<(&'static str, String)> {
        NETBOX
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    if *k == change.0 {
                        change.1.to_owned()
                    } else {
                        (*v).to_owned()
                    },
                )
            })
            .collect()
    }

    #[test]
    fn each_missing_or_contradictory_setting_names_its_key() {
        let without = |key: &str| -> Vec<(&str, &str)> { NETBOX.iter().filter(|(k, _)| *k != key).cloned().collect() };
        for key in ["source-url", "map-object-type", "map-external-id", "map-label"] {
            let e = error(&without(key));
            assert!(e.starts_with(key), "{key}: {e}");
        }
        let e = error(&[NETBOX, &[("source-cursor-field", "meta.cursor")]].concat());
        assert!(e.contains("source-cursor-field") && e.contains("next-url"), "{e}");
        let bad_url = netbox_with(("source-url", "ftp://x"));
        let bad_url: Vec<(&str, &str)> = bad_url.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert!(error(&bad_url).starts_with("source-url"));
        let e = error(&[NETBOX, &[("source-timeout-ms", "soon")]].concat());
        assert!(e.starts_with("source-timeout-ms"), "{e}");
        let e = error(&[&NETBOX[..2], &[("source-pagination", "cursor")], &NETBOX[3..]].concat());
        assert!(e.starts_with("source-cursor-field"), "{e}");
        let e = error(&[NETBOX, &[("source-headers", "no colon here")]].concat());
        assert!(e.starts_with("source-headers"), "{e}");
        let e = error(&[&NETBOX[..6], &[("map-attributes", "serial")]].concat());
        assert!(e.starts_with("map-attributes"), "{e}");
    }

    #[test]
    fn a_malformed_setting_names_the_key_and_never_its_value() {
        let secret = "ghp-SECRET1234";
        for (key, value) in [
            ("source-headers", format!("Accept: application/json; {secret}")),
            ("source-url", format!("{secret}.example.com")),
            ("source-timeout-ms", secret.to_owned()),
            ("source-pagination", secret.to_owned()),
            ("map-attributes", format!("serial=serial, {secret}")),
            ("map-attributes", format!("serial=serial, x={secret}..y")),
            ("source-records", format!("{secret}..results")),
        ] {
            let pairs: Vec<(&str, &str)> = NETBOX
                .iter()
                .filter(|(k, _)| *k != key)
                .cloned()
                .chain([(key, value.as_str())])
                .collect();
            let e = error(&pairs);
            assert!(e.starts_with(key), "{key}: {e}");
            assert!(!e.contains("SECRET") && !e.contains("ghp"), "{key}: {e}");
        }
        let e = error(&[NETBOX, &[("source-headers", "Authorization: Bearer x; ghp-SECRET1234")]].concat());
        assert!(e.contains("entry 2"), "the entry is named by its place: {e}");
    }

    #[test]
    fn reading_the_settings_registers_the_sources_secrets() {
        // A thread of its own: its registry is fresh and seen by no other test.
        std::thread::spawn(|| {
            let prose = "key SUPERSECRET123 is over quota for tok-abcdef";
            assert_eq!(assets_redact::redact(prose), prose);
            read(
                &[
                    NETBOX,
                    &[
                        ("source-url", "https://api.example.com/v1/hosts?key=SUPERSECRET123"),
                        ("source-headers", "Authorization: Bearer tok-abcdef"),
                    ],
                ]
                .concat(),
            )
            .unwrap();
            assert_eq!(assets_redact::redact(prose), "key *** is over quota for ***");
        })
        .join()
        .unwrap();
    }
}
