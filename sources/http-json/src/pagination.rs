//! Where the next page is.
//!
//! Five ways APIs page, chosen by `source-pagination`:
//!
//! - `next-url`: the body names the next page's URL (`next` by default, as
//!   NetBox and Django REST Framework do); `null` or absent ends the list.
//!   Relative URLs are resolved against the current one.
//! - `link-header`: the `Link: <…>; rel="next"` response header (RFC 8288:
//!   GitHub, Okta, Shopify…) names the next page; no `next` link ends it.
//! - `cursor`: the body holds a cursor (`source-cursor-field`), sent back as
//!   a query parameter (`source-cursor-param`); empty or absent ends it.
//! - `page`: a page-number parameter counts up from `source-page-start`.
//! - `offset`: an offset parameter moves by the records received, with a
//!   limit parameter.
//!
//! For `page` and `offset`, the list ends at an empty page, or (`offset`)
//! when the total the body states at `source-total-field` is reached. A page
//! shorter than asked for is **not** the end: many APIs cap the page size
//! below what was asked and say nothing, and stopping there would import
//! part of the data and call it complete. `source-short-page-ends = true`
//! says the API never does that, saving the final empty request. `none`
//! reads one page.

use crate::path::Path;
use serde_json::Value;
use url::Url;

/// A pagination style and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pagination {
    /// One page only.
    None,
    /// The next page's URL is in the body at `field`.
    NextUrl {
        /// Where the URL is.
        field: Path,
    },
    /// The next page's URL is the `Link` header's `rel="next"` target.
    LinkHeader,
    /// A cursor in the body at `field`, sent back as query parameter `param`.
    Cursor {
        /// Where the cursor is.
        field: Path,
        /// The query parameter that carries it.
        param: String,
    },
    /// A page-number query parameter.
    Page {
        /// Its name.
        param: String,
        /// The first page's number.
        start: u64,
        /// The page-size parameter and the size asked for, if any.
        size: Option<(String, u64)>,
        /// A page shorter than asked for is the last (`source-short-page-ends`).
        short_page_ends: bool,
    },
    /// An offset query parameter and a limit.
    Offset {
        /// The offset parameter's name.
        param: String,
        /// The limit parameter's name.
        limit_param: String,
        /// Records asked for per page.
        limit: u64,
        /// Where the body states the total number of records, if it does.
        total: Option<Path>,
        /// A page shorter than asked for is the last (`source-short-page-ends`).
        short_page_ends: bool,
    },
}

/// The `rel="next"` target of a `Link` header value (RFC 8288), e.g.
/// `<https://api.github.com/x?page=2>; rel="next", <…>; rel="last"`.
pub fn link_next(value: &str) -> Option<&str> {
    value.split(',').find_map(|link| {
        let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
        let next = params.split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=")
                .or_else(|| p.strip_prefix("rel ="))
                .is_some_and(|rel| {
                    rel.trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
                })
        });
        next.then_some(target.trim())
    })
}

/// Sets query parameter `name` to `value`, replacing any earlier one.
pub fn set_param(url: &Url, name: &str, value: &str) -> Url {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut next = url.clone();
    next.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(name, value);
    next
}

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

impl Pagination {
    /// The first page's URL: `url` with the page or offset parameters added.
    pub fn first_url(&self, url: &Url) -> Url {
        match self {
            Pagination::None | Pagination::NextUrl { .. } | Pagination::LinkHeader | Pagination::Cursor { .. } => {
                url.clone()
            }
            Pagination::Page { param, start, size, .. } => {
                let first = set_param(url, param, &start.to_string());
                match size {
                    Some((size_param, size)) => set_param(&first, size_param, &size.to_string()),
                    None => first,
                }
            }
            Pagination::Offset {
                param,
                limit_param,
                limit,
                ..
            } => set_param(&set_param(url, param, "0"), limit_param, &limit.to_string()),
        }
    }

    /// The URL after `current`, whose answer had `headers` and `body`
    /// holding `records` records; `None` when `current` was the last page.
    pub fn next_url(
        &self,
        current: &Url,
        headers: &[(String, String)],
        body: &Value,
        records: usize,
    ) -> Result<Option<Url>, String> {
        let records = records as u64;
        match self {
            Pagination::None => Ok(None),
            Pagination::LinkHeader => {
                let next = headers
                    .iter()
                    .filter(|(name, _)| name.eq_ignore_ascii_case("link"))
                    .find_map(|(_, value)| link_next(value));
                match next {
                    None => Ok(None),
                    Some(next) => current
                        .join(next)
                        .map(Some)
                        .map_err(|e| format!("the Link header's next target {next:?} is not a URL ({e})")),
                }
            }
            Pagination::NextUrl { field } => match field.resolve(body).as_slice() {
                [] => Ok(None),
                [Value::String(next)] if next.trim().is_empty() => Ok(None),
                [Value::String(next)] => current
                    .join(next)
                    .map(Some)
                    .map_err(|e| format!("the next-page link `{field}` = {next:?} is not a URL ({e})")),
                other => Err(format!(
                    "the next-page link `{field}` is not one URL string (found {})",
                    Value::Array(other.iter().map(|v| (*v).clone()).collect())
                )),
            },
            Pagination::Cursor { field, param } => match field.resolve(body).as_slice() {
                [] => Ok(None),
                [Value::String(c)] if c.is_empty() => Ok(None),
                [Value::String(c)] => Ok(Some(set_param(current, param, c))),
                [Value::Number(n)] => Ok(Some(set_param(current, param, &n.to_string()))),
                _ => Err(format!("the cursor `{field}` is not one string or number")),
            },
            Pagination::Page {
                param: name,
                start,
                size,
                short_page_ends,
            } => {
                let asked = size.as_ref().map(|(_, s)| *s);
                if records == 0 || (*short_page_ends && asked.is_some_and(|s| records < s)) {
                    return Ok(None);
                }
                let page = param(current, name)
                    .and_then(|p| p.parse::<u64>().ok())
                    .unwrap_or(*start);
                Ok(Some(set_param(current, name, &(page + 1).to_string())))
            }
            Pagination::Offset {
                param: name,
                limit,
                total,
                short_page_ends,
                ..
            } => {
                if records == 0 || (*short_page_ends && records < *limit) {
                    return Ok(None);
                }
                let offset = param(current, name).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0);
                let read = offset + records;
                if let Some(path) = total {
                    match path.resolve(body).as_slice() {
                        [Value::Number(n)] if n.as_u64().is_some_and(|n| read >= n) => return Ok(None),
                        [Value::Number(_)] => {}
                        _ => return Err(format!("no total number of records at `{path}` (source-total-field)")),
                    }
                }
                Ok(Some(set_param(current, name, &read.to_string())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn next_url_follows_absolute_and_relative_links_and_stops_at_null() {
        let p = Pagination::NextUrl {
            field: Path::parse("next").unwrap(),
        };
        let here = url("https://netbox.example.com/api/dcim/devices/?limit=50");
        let next = p
            .next_url(
                &here,
                &[],
                &json!({"next": "https://netbox.example.com/api/dcim/devices/?limit=50&offset=50"}),
                50,
            )
            .unwrap();
        assert_eq!(
            next.unwrap().as_str(),
            "https://netbox.example.com/api/dcim/devices/?limit=50&offset=50"
        );
        let next = p
            .next_url(&here, &[], &json!({"next": "?limit=50&offset=100"}), 50)
            .unwrap();
        assert_eq!(
            next.unwrap().as_str(),
            "https://netbox.example.com/api/dcim/devices/?limit=50&offset=100"
        );
        assert_eq!(p.next_url(&here, &[], &json!({"next": null}), 7).unwrap(), None);
        assert!(p.next_url(&here, &[], &json!({"next": 3}), 7).is_err());
    }

    #[test]
    fn a_cursor_is_sent_back_as_a_parameter() {
        let p = Pagination::Cursor {
            field: Path::parse("meta.next_cursor").unwrap(),
            param: "after".into(),
        };
        let here = url("https://api.example.com/hosts?after=abc&kind=server");
        let next = p
            .next_url(&here, &[], &json!({"meta": {"next_cursor": "def"}}), 10)
            .unwrap()
            .unwrap();
        assert_eq!(next.as_str(), "https://api.example.com/hosts?kind=server&after=def");
        assert_eq!(
            p.next_url(&here, &[], &json!({"meta": {"next_cursor": ""}}), 10)
                .unwrap(),
            None
        );
        assert_eq!(p.next_url(&here, &[], &json!({"meta": {}}), 10).unwrap(), None);
    }

    #[test]
    fn pages_and_offsets_count_up_until_an_empty_page_not_a_short_one() {
        let page = Pagination::Page {
            param: "page".into(),
            start: 1,
            size: Some(("per_page".into(), 100)),
            short_page_ends: false,
        };
        let first = page.first_url(&url("https://api.example.com/hosts"));
        assert_eq!(first.as_str(), "https://api.example.com/hosts?page=1&per_page=100");
        let second = page.next_url(&first, &[], &json!([]), 100).unwrap().unwrap();
        assert_eq!(second.as_str(), "https://api.example.com/hosts?per_page=100&page=2");
        // The API capped the page at 50: not the end.
        let third = page.next_url(&second, &[], &json!([]), 50).unwrap().unwrap();
        assert_eq!(third.as_str(), "https://api.example.com/hosts?per_page=100&page=3");
        assert_eq!(page.next_url(&third, &[], &json!([]), 0).unwrap(), None);

        let offset = Pagination::Offset {
            param: "offset".into(),
            limit_param: "limit".into(),
            limit: 50,
            total: None,
            short_page_ends: false,
        };
        let first = offset.first_url(&url("https://api.example.com/hosts"));
        assert_eq!(first.as_str(), "https://api.example.com/hosts?offset=0&limit=50");
        let second = offset.next_url(&first, &[], &json!([]), 20).unwrap().unwrap();
        assert_eq!(second.as_str(), "https://api.example.com/hosts?limit=50&offset=20");
        assert_eq!(offset.next_url(&second, &[], &json!([]), 0).unwrap(), None);
    }

    #[test]
    fn a_short_page_ends_only_when_a_setting_says_so_or_the_total_is_reached() {
        let short = Pagination::Page {
            param: "page".into(),
            start: 1,
            size: Some(("per_page".into(), 100)),
            short_page_ends: true,
        };
        let first = short.first_url(&url("https://api.example.com/hosts"));
        assert_eq!(short.next_url(&first, &[], &json!([]), 99).unwrap(), None);
        let total = Pagination::Offset {
            param: "offset".into(),
            limit_param: "limit".into(),
            limit: 100,
            total: Some(Path::parse("meta.total").unwrap()),
            short_page_ends: false,
        };
        let first = total.first_url(&url("https://api.example.com/hosts"));
        let body = json!({"meta": {"total": 130}});
        let second = total.next_url(&first, &[], &body, 80).unwrap().unwrap();
        assert_eq!(total.next_url(&second, &[], &body, 50).unwrap(), None, "80 + 50 ≥ 130");
        assert!(total
            .next_url(&first, &[], &json!({}), 80)
            .unwrap_err()
            .contains("source-total-field"));
    }

    #[test]
    fn the_link_header_names_the_next_page() {
        let value = r#"<https://api.github.com/repositories/1/issues?page=2>; rel="next", <https://api.github.com/repositories/1/issues?page=5>; rel="last""#;
        assert_eq!(
            link_next(value),
            Some("https://api.github.com/repositories/1/issues?page=2")
        );
        assert_eq!(link_next(r#"<https://x/?page=1>; rel="prev first""#), None);
        assert_eq!(link_next(r#"</items?after=abc>; rel="next""#), Some("/items?after=abc"));
        let p = Pagination::LinkHeader;
        let here = url("https://okta.example.com/api/v1/users?limit=200");
        let headers = vec![(
            "link".to_owned(),
            r#"</api/v1/users?after=00u1&limit=200>; rel="next""#.to_owned(),
        )];
        let next = p.next_url(&here, &headers, &json!([]), 200).unwrap().unwrap();
        assert_eq!(
            next.as_str(),
            "https://okta.example.com/api/v1/users?after=00u1&limit=200"
        );
        assert_eq!(p.next_url(&next, &[], &json!([]), 200).unwrap(), None);
    }
}
