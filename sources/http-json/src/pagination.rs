//! Where the next page is.
//!
//! Five ways APIs page, chosen by `source-pagination`:
//!
//! - `next-url`: the body names the next page's URL (`next` by default, as
//!   NetBox and Django REST Framework do); `null` or absent ends the list.
//!   Relative URLs are resolved against the current one.
//! - `link-header`: the `Link: <…>; rel="next"` response header (RFC 8288:
//!   GitHub, Okta, Shopify…) names the next page; no `next` link ends it,
//!   and a header that cannot be read is an error, never the end
//!   ([`link_next`]).
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
use nom_language::error::VerboseError;
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

/// Where a response's `Link` header fields say the next page is: the target
/// of the first link whose `rel` names `next`, resolved against `current`
/// (the request URL, which is the link's context). `None` when no field has
/// such a link.
///
/// Each field is parsed by RFC 8288's grammar ([`nom_rfc8288`]): a target
/// runs to its `>` whatever commas it holds, quoted parameter values keep
/// their commas and semicolons, empty list elements are skipped. This layer
/// adds what the grammar leaves to the reader (RFC 8288 §3.3): parameter
/// names and relation types compare without regard to case, `rel` may list
/// several types separated by spaces (`rel="next last"`), and a second `rel`
/// in one link is ignored. An `anchor` parameter is not consulted: APIs that
/// page by `Link` do not set one.
///
/// A field that does not parse is an error only when no other field names
/// the next page: ending the list there would call a partial import complete.
pub fn link_next<'a>(current: &Url, fields: impl IntoIterator<Item = &'a str>) -> Result<Option<Url>, String> {
    let mut unreadable = None;
    for field in fields {
        let links = match nom_rfc8288::complete::link_lenient::<VerboseError<&str>>(field.trim()) {
            Ok(links) => links,
            Err(e) => {
                unreadable.get_or_insert_with(|| {
                    format!(
                        "the Link header {field:?} is not valid RFC 8288 ({e}), so the next page is unknown; \
                         ask the API's owner to fix the header, or page by another source-pagination"
                    )
                });
                continue;
            }
        };
        let next = links.into_iter().flatten().find(|link| {
            link.params
                .iter()
                .find(|param| param.key.eq_ignore_ascii_case("rel"))
                .and_then(|rel| rel.val.as_deref())
                .is_some_and(|types| types.split_ascii_whitespace().any(|t| t.eq_ignore_ascii_case("next")))
        });
        if let Some(link) = next {
            return current
                .join(link.url)
                .map(Some)
                .map_err(|e| format!("the Link header's next target {:?} is not a URL ({e})", link.url));
        }
    }
    unreadable.map_or(Ok(None), Err)
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
            Pagination::LinkHeader => link_next(
                current,
                headers
                    .iter()
                    .filter(|(name, _)| name.eq_ignore_ascii_case("link"))
                    .map(|(_, value)| value.as_str()),
            ),
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

    /// The next page by `Link` header paging, after `current` answered with
    /// these `Link` header fields.
    fn next_by_link(current: &str, fields: &[&str]) -> Result<Option<String>, String> {
        let headers: Vec<(String, String)> = fields.iter().map(|f| ("link".to_owned(), (*f).to_owned())).collect();
        Pagination::LinkHeader
            .next_url(&url(current), &headers, &json!([]), 1)
            .map(|next| next.map(String::from))
    }

    #[test]
    fn the_link_header_names_the_next_page() {
        let github = r#"<https://api.github.com/repositories/1/issues?page=2>; rel="next", <https://api.github.com/repositories/1/issues?page=5>; rel="last""#;
        assert_eq!(
            next_by_link("https://api.github.com/repositories/1/issues", &[github]).unwrap(),
            Some("https://api.github.com/repositories/1/issues?page=2".to_owned())
        );
        assert_eq!(
            next_by_link("https://x/?page=2", &[r#"<https://x/?page=1>; rel="prev first""#]).unwrap(),
            None
        );
        let okta = r#"</api/v1/users?after=00u1&limit=200>; rel="next""#;
        assert_eq!(
            next_by_link("https://okta.example.com/api/v1/users?limit=200", &[okta]).unwrap(),
            Some("https://okta.example.com/api/v1/users?after=00u1&limit=200".to_owned())
        );
        assert_eq!(
            next_by_link("https://x/?page=3", &[]).unwrap(),
            None,
            "no Link header: the last page"
        );
    }

    /// Finding 2 of issue 25: a comma in the target split the link, and the
    /// import completed after page 1.
    #[test]
    fn a_comma_in_the_target_does_not_lose_the_next_page() {
        assert_eq!(
            next_by_link(
                "https://x/d?fields=id,name",
                &[r#"<https://x/d?fields=id,name&page=2>; rel="next""#]
            )
            .unwrap(),
            Some("https://x/d?fields=id,name&page=2".to_owned())
        );
        let with_prev =
            r#"<https://x/d?fields=id,name&page=1>; rel="prev", <https://x/d?fields=id,name&page=3>; rel="next""#;
        assert_eq!(
            next_by_link("https://x/d?fields=id,name&page=2", &[with_prev]).unwrap(),
            Some("https://x/d?fields=id,name&page=3".to_owned())
        );
    }

    #[test]
    fn parameter_names_and_relation_types_ignore_case() {
        for link in [
            r#"<https://x/d?page=2>; REL="next""#,
            r#"<https://x/d?page=2>; Rel=NEXT"#,
            r#"<https://x/d?page=2>;rel=next"#,
            "<https://x/d?page=2> ;\trel=\"Next\"",
        ] {
            assert_eq!(
                next_by_link("https://x/d", &[link]).unwrap(),
                Some("https://x/d?page=2".to_owned()),
                "{link}"
            );
        }
    }

    #[test]
    fn quoted_commas_and_semicolons_in_parameters_do_not_split_links() {
        let link =
            r#"<https://x/d?page=1>; rel="prev"; title="a, b; c", <https://x/d?page=3>; title="x,y"; rel="next""#;
        assert_eq!(
            next_by_link("https://x/d?page=2", &[link]).unwrap(),
            Some("https://x/d?page=3".to_owned())
        );
        let escaped = r#"<https://x/d?page=1>; rel="prev"; title="say \"a, <b>\"", <https://x/d?page=3>; rel=next"#;
        assert_eq!(
            next_by_link("https://x/d?page=2", &[escaped]).unwrap(),
            Some("https://x/d?page=3".to_owned())
        );
    }

    #[test]
    fn a_rel_may_name_several_types_and_only_the_first_rel_counts() {
        for link in [
            r#"<https://x/d?page=9>; rel="next last""#,
            r#"<https://x/d?page=9>; rel="last  next""#,
        ] {
            assert_eq!(
                next_by_link("https://x/d?page=8", &[link]).unwrap(),
                Some("https://x/d?page=9".to_owned()),
                "{link}"
            );
        }
        // RFC 8288 §3.3: occurrences of `rel` after the first are ignored.
        assert_eq!(
            next_by_link("https://x/d", &[r#"<https://x/d?page=2>; rel="prev"; rel="next""#]).unwrap(),
            None
        );
    }

    #[test]
    fn every_link_header_field_is_read() {
        let fields = [
            r#"<https://x/d?page=1>; rel="first""#,
            r#"<https://x/d?page=3>; rel="next", <https://x/d?page=9>; rel="last""#,
        ];
        assert_eq!(
            next_by_link("https://x/d?page=2", &fields).unwrap(),
            Some("https://x/d?page=3".to_owned())
        );
    }

    #[test]
    fn relative_targets_resolve_against_the_request_url() {
        let here = "https://api.example.com/v1/users/?limit=2&after=a";
        for (target, resolved) in [
            ("/v1/users?after=b", "https://api.example.com/v1/users?after=b"),
            ("?limit=2&after=b", "https://api.example.com/v1/users/?limit=2&after=b"),
            ("page2", "https://api.example.com/v1/users/page2"),
            ("//other.example.com/x", "https://other.example.com/x"),
        ] {
            assert_eq!(
                next_by_link(here, &[&format!("<{target}>; rel=\"next\"")]).unwrap(),
                Some(resolved.to_owned()),
                "{target}"
            );
        }
    }

    #[test]
    fn empty_list_elements_are_skipped() {
        let link = r#"<https://x/d?page=1>; rel="prev",, <https://x/d?page=3>; rel="next","#;
        assert_eq!(
            next_by_link("https://x/d?page=2", &[link]).unwrap(),
            Some("https://x/d?page=3".to_owned())
        );
    }

    /// The examples of RFC 8288 §3.5, each as the whole header, read from
    /// `http://example.com/TheBook/chapter3`.
    #[test]
    fn the_rfc_8288_examples_parse_and_only_a_next_link_is_followed() {
        let here = "http://example.com/TheBook/chapter3";
        let no_next = [
            r#"<http://example.com/TheBook/chapter2>; rel="previous"; title="previous chapter""#,
            r#"</>; rel="http://example.net/foo""#,
            r##"</terms>; rel="copyright"; anchor="#foo""##,
            r#"<http://example.org/>; rel="start http://example.net/relation/other""#,
            r#"<https://example.org/>; rel="start", <https://example.org/index>; rel="index""#,
        ];
        for link in no_next {
            assert_eq!(next_by_link(here, &[link]), Ok(None), "{link}");
        }
        let chapters = "</TheBook/chapter2>; rel=\"previous\"; title*=UTF-8'de'letztes%20Kapitel, \
                        </TheBook/chapter4>; rel=\"next\"; title*=UTF-8'de'n%c3%a4chstes%20Kapitel";
        assert_eq!(
            next_by_link(here, &[chapters]).unwrap(),
            Some("http://example.com/TheBook/chapter4".to_owned())
        );
        // The last example's two links, as two header fields (§3.5: equivalent).
        assert_eq!(
            next_by_link(
                here,
                &[
                    r#"<https://example.org/>; rel="start""#,
                    r#"<https://example.org/index>; rel="index""#
                ]
            ),
            Ok(None)
        );
        // Example 5's relation list, with `next` among the types.
        assert_eq!(
            next_by_link(
                here,
                &[r#"<http://example.org/4>; rel="http://example.net/relation/other next""#]
            )
            .unwrap(),
            Some("http://example.org/4".to_owned())
        );
    }

    #[test]
    fn an_unreadable_link_header_is_an_error_not_the_last_page() {
        let broken = r#"<https://x/d?page=3; rel="next""#;
        let e = next_by_link("https://x/d?page=2", &[broken]).unwrap_err();
        assert!(
            e.contains("not valid RFC 8288") && e.contains("source-pagination"),
            "{e}"
        );
        // Another field naming the next page is enough.
        assert_eq!(
            next_by_link("https://x/d?page=2", &[broken, r#"<https://x/d?page=3>; rel="next""#]).unwrap(),
            Some("https://x/d?page=3".to_owned())
        );
    }
}
