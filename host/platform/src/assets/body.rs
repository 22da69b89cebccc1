//! Reading request bodies into typed structs, with errors that name the field.
//!
//! `serde_path_to_error` gives the path of the value that failed
//! (`objects[3].attributes.serial[0]`), so a wrong type deep in a 10 MB chunk
//! still points at the one bad value.

use super::ApiError;
use serde::de::DeserializeOwned;

/// Parses `body` as JSON into `T`: a body that is empty, not JSON, or of the
/// wrong shape is a 400 naming the field at fault.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_body("request body is empty; expected a JSON object"));
    }
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
}
