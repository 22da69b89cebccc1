//! An app's third-party HTTP request, read once into what will be sent.
//!
//! The guest's `outbound-http.request` is untrusted text. It becomes an
//! [`OutboundRequest`] here, before anything else sees it: the method is
//! one of a closed set (the WIT enum, mapped to [`http::Method`]), the URL
//! is read once into an [`egress::Target`] (what the allowlist decides on
//! is what the client sends), header names and values are `http`'s types
//! (no line break can reach the wire, so no second request can be smuggled
//! in), the headers the platform owns (`host`, the connection's own) are
//! refused rather than passed on, and the timeout is never longer than the
//! invocation has left. [`OutboundHttp`](crate::OutboundHttp)
//! implementations receive only this type.

use crate::bindings::outbound_http::{HttpError, Method, Request};
use crate::egress::Target;
use std::time::Duration;

/// A third-party call's timeout when the app gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers the platform sets itself (RFC 9110's connection-specific fields
/// and the framing ones). An app that sets one is refused: a guest `Host`
/// would address another site on the same connection, and a framing header
/// could make the third party read a second request.
pub const RESERVED_HEADERS: [&str; 11] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

/// A request checked and ready to send; it can hold nothing else.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// The method.
    pub method: http::Method,
    /// The URL, read once.
    pub target: Target,
    /// The app's headers: valid names and values, none of
    /// [`RESERVED_HEADERS`].
    pub headers: http::HeaderMap,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
    /// How long the whole exchange may take: the app's timeout (or
    /// [`DEFAULT_TIMEOUT`]), cut to the invocation's time left.
    pub timeout: Duration,
}

/// The `http` method of a WIT method.
pub fn method(method: Method) -> http::Method {
    match method {
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Patch => http::Method::PATCH,
        Method::Delete => http::Method::DELETE,
        Method::Options => http::Method::OPTIONS,
    }
}

/// `text` quoted with control characters escaped, cut to 80 characters.
fn shown(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let cut: String = text.chars().take(80).collect();
    match text.chars().count() > 80 {
        true => format!("{cut:?}…"),
        false => format!("{cut:?}"),
    }
}

impl OutboundRequest {
    /// Reads the guest's `request`, allowed `time_left` of its invocation;
    /// refuses it, naming the part at fault, when it cannot be sent as
    /// given. Nothing is sent either way.
    pub fn from_guest(request: Request, time_left: Duration) -> Result<OutboundRequest, HttpError> {
        let target = Target::parse(&request.url).map_err(HttpError::InvalidUrl)?;
        let mut headers = http::HeaderMap::with_capacity(request.headers.len());
        for (name, value) in &request.headers {
            let refuse = |why: &str| {
                HttpError::InvalidRequest(format!(
                    "header {}: {why}; nothing was sent to {}",
                    shown(name.as_bytes()),
                    target.url()
                ))
            };
            let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| refuse("not a valid header name"))?;
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(refuse("the platform sets this header itself"));
            }
            // Visible ASCII, space and tab only: no line break, no NUL, and
            // nothing a client would have to re-encode (`from_str` alone
            // would let bytes over 127 through, which clients refuse).
            let plain = value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
            let value = http::HeaderValue::from_str(value)
                .ok()
                .filter(|_| plain)
                .ok_or_else(|| refuse("the value has a character other than visible ASCII, space or tab"))?;
            headers.append(name, value);
        }
        if time_left.is_zero() {
            return Err(HttpError::Timeout(format!(
                "{}: not sent: the invocation has no time left",
                target.url()
            )));
        }
        let asked = request
            .timeout_ms
            .map_or(DEFAULT_TIMEOUT, |ms| Duration::from_millis(ms.into()));
        Ok(OutboundRequest {
            method: method(request.method),
            target,
            headers,
            body: request.body,
            timeout: asked.min(time_left),
        })
    }

    /// The URL, as sent.
    pub fn url(&self) -> &url::Url {
        self.target.url()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], timeout_ms: Option<u32>) -> Request {
        Request {
            method: Method::Get,
            url: "https://api.example.com/items".into(),
            headers: headers.iter().map(|(n, v)| ((*n).into(), (*v).into())).collect(),
            body: None,
            timeout_ms,
        }
    }

    #[test]
    fn a_plain_request_is_read_as_given() {
        let r =
            OutboundRequest::from_guest(request(&[("Accept", "application/json")], Some(5000)), Duration::MAX).unwrap();
        assert_eq!(r.method, http::Method::GET);
        assert_eq!(r.url().as_str(), "https://api.example.com/items");
        assert_eq!(r.headers["accept"], "application/json");
        assert_eq!(r.timeout, Duration::from_secs(5));
    }

    #[test]
    fn headers_the_platform_owns_or_that_break_framing_are_refused() {
        for (name, value) in [
            ("Host", "evil.example.net"),
            ("HOST", "x"),
            ("transfer-encoding", "chunked"),
            ("Content-Length", "0"),
            ("Connection", "keep-alive"),
            ("x-a", "1\r\nHost: evil"),
            ("x-a", "1\nGET /second HTTP/1.1"),
            ("x-a\r\nHost", "evil"),
            ("x a", "1"),
            ("", "1"),
            ("x-a", "nul\0"),
            ("x-a", "caf\u{e9}"),
            ("x-a", "del\u{7f}"),
        ] {
            let refused = OutboundRequest::from_guest(request(&[(name, value)], None), Duration::MAX).unwrap_err();
            assert!(matches!(refused, HttpError::InvalidRequest(_)), "{name:?}: {refused:?}");
        }
    }

    #[test]
    fn the_timeout_is_cut_to_the_time_left() {
        let left = Duration::from_millis(1500);
        assert_eq!(
            OutboundRequest::from_guest(request(&[], Some(600_000)), left)
                .unwrap()
                .timeout,
            left
        );
        assert_eq!(
            OutboundRequest::from_guest(request(&[], None), left).unwrap().timeout,
            left
        );
        assert!(matches!(
            OutboundRequest::from_guest(request(&[], None), Duration::ZERO),
            Err(HttpError::Timeout(_))
        ));
    }
}
