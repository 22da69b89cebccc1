//! Reading request bodies into typed structs, with errors that name the field.
//!
//! `serde_path_to_error` gives the path of the value that failed
//! (`objects[3].attributes.serial[0]`), so a wrong type deep in a 10 MB chunk
//! still points at the one bad value.

use super::ApiError;
use serde::de::DeserializeOwned;

/// Parses `body` as JSON into `T`: a body that is empty, not JSON, not a
/// JSON object, or of the wrong shape is a 400 naming the field at fault.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    expect_object(body)?;
    // Fast path: plain serde_json. Only a body that fails is parsed again
    // with path tracking, which costs on every field, to name the field.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        describe(path, inner)
    })?;
    de.end()
        .map_err(|e| ApiError::invalid_body(format!("request body is not valid JSON: {e}")))?;
    Ok(value)
}

/// Parses an optional body: empty means `T::default()`.
pub fn parse_or_default<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse(body)
    }
}

/// `body` as `T` when it is a JSON object of `T`'s shape, else `None`,
/// without naming what is wrong: a cheap first try for a body that may be
/// in one of two forms, [`parse`] then naming the errors in the form it
/// means to be in.
pub fn try_parse<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    expect_object(body).ok()?;
    serde_json::from_slice(body).ok()
}

/// Every body is a JSON object: 400 for anything else, saying what it is.
/// serde's derived structs also read a JSON array, as their fields in
/// order (`[5]` for `{"seconds": 5}`), and nothing the API takes is meant
/// to be sent that way; refusing it here refuses it for every body at once.
fn expect_object(body: &[u8]) -> Result<(), ApiError> {
    let Some(first) = body.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Err(ApiError::invalid_body("request body is empty; expected a JSON object"));
    };
    if *first == b'{' {
        return Ok(());
    }
    // What it is, when it is JSON at all; read without keeping anything.
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        return Err(ApiError::invalid_body(format!("request body is not valid JSON: {e}")));
    }
    let sent = match first {
        b'[' => "a JSON array",
        b'"' => "a JSON string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        _ => "a number",
    };
    Err(ApiError::invalid_body(format!(
        "request body must be a JSON object ({{\"field\": value, …}}); it is {sent}"
    )))
}

fn describe(path: String, error: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::invalid_body(format!("request body is not valid JSON: {error}"))
        }
        Category::Data => {
            let message = error.to_string();
            // The path ends at the struct for "missing field `x`"; the field's
            // name is only in the message, so make it part of the path.
            let named = message
                .split('`')
                .nth(1)
                .filter(|_| message.starts_with("missing field"));
            let field = match (path.as_str(), named) {
                (".", Some(name)) => name.to_owned(),
                (".", None) => "(body)".to_owned(),
                (p, Some(name)) => format!("{p}.{name}"),
                (p, None) => p.to_owned(),
            };
            // serde's "at line 1 column 57" is noise next to the field path.
            let message = match message.rfind(" at line ") {
                Some(i) => message[..i].to_owned(),
                None => message,
            };
            ApiError::invalid_field(field.clone(), format!("{field}: {message}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        items: Vec<Inner>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        id: String,
    }

    fn err(body: &str) -> ApiError {
        parse::<Outer>(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err(r#"{"items":[]}"#).field.as_deref(), Some("name"));
        assert_eq!(
            err(r#"{"name":"a","items":[{"id":"x"},{}]}"#).field.as_deref(),
            Some("items[1].id")
        );
        assert_eq!(err(r#"{"name":5,"items":[]}"#).field.as_deref(), Some("name"));
        let e = err(r#"{"name":"a","items":[],"nmae":1}"#);
        assert_eq!(e.field.as_deref(), Some("nmae"));
        assert!(e.message.contains("unknown field"), "{}", e.message);
    }

    #[test]
    fn non_json_is_an_invalid_body() {
        for body in [
            "",
            "   ",
            "not json",
            "{\"name\":",
            r#"{"name":"a","items":[]} trailing"#,
        ] {
            let e = err(body);
            assert_eq!((e.status, e.code), (400, "INVALID_BODY"), "{body:?}: {e}");
        }
    }

    #[derive(Debug, Default, Deserialize)]
    #[allow(dead_code)]
    struct Seconds {
        seconds: u64,
    }

    /// serde reads a JSON array as a struct's fields in order: `[5]` was
    /// `{"seconds": 5}`.
    #[test]
    fn only_a_json_object_is_a_body() {
        for (body, kind) in [
            ("[5]", "a JSON array"),
            (" \n[5]", "a JSON array"),
            ("\"5\"", "a JSON string"),
            ("5", "a number"),
            ("-5", "a number"),
            ("true", "a boolean"),
            ("null", "null"),
        ] {
            for e in [
                parse::<Seconds>(body.as_bytes()).unwrap_err(),
                parse_or_default::<Seconds>(body.as_bytes()).unwrap_err(),
            ] {
                assert_eq!((e.status, e.code), (400, "INVALID_BODY"), "{body:?}: {e}");
                assert!(e.message.contains("a JSON object"), "{body:?}: {e}");
                assert!(e.message.contains(kind), "{body:?}: {e}");
            }
        }
        // Broken JSON says so, whatever it starts with.
        let e = parse::<Seconds>(b"[5").unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{e}");
        assert_eq!(parse::<Seconds>(b" {\"seconds\": 5}").unwrap().seconds, 5);
        assert_eq!(parse_or_default::<Seconds>(b"  ").unwrap().seconds, 0);
    }
}
