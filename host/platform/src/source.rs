//! The built-in data source: deterministic synthetic asset records.
//!
//! Used when no source component is composed into the importer. Object `i`
//! is always the same record, so an end-to-end test can check that every
//! object arrived exactly once. It can be told to time out after a page, to
//! show the failure path.

use assets_runtime::bindings::data_source::{Page, SourceError};
use assets_runtime::bindings::types::{AssetObject, Attribute, ObjectBatch};

pub use assets_runtime::DataSourceProvider;

/// What the synthetic source produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticSource {
    /// Total objects.
    pub objects: u64,
    /// Objects per page.
    pub page_size: u32,
    /// Object types; object `i` has type `object_types[i % len]`.
    pub object_types: Vec<String>,
    /// Attributes per object, at most [`ATTRIBUTE_KEYS`]`.len()`.
    pub attributes: usize,
    /// When set, pages after this one (1-based) time out.
    pub fail_after_page: Option<u32>,
}

/// Attribute keys, in the order they are given to objects.
pub const ATTRIBUTE_KEYS: [&str; 8] = [
    "hostname",
    "ipAddress",
    "os",
    "owner",
    "serial",
    "location",
    "model",
    "tags",
];

/// The third-party endpoint the synthetic source pretends to call; it appears
/// in failure messages so they read like a real source's.
pub const SYNTHETIC_ENDPOINT: &str = "https://inventory.example.com/api/v2/hosts";

impl Default for SyntheticSource {
    fn default() -> Self {
        SyntheticSource {
            objects: 1000,
            page_size: 250,
            object_types: vec!["server".into()],
            attributes: 5,
            fail_after_page: None,
        }
    }
}

impl SyntheticSource {
    /// The record with index `i`.
    pub fn object(&self, i: u64) -> (String, AssetObject) {
        let object_type = self.object_types[(i % self.object_types.len() as u64) as usize].clone();
        let attributes = ATTRIBUTE_KEYS
            .iter()
            .take(self.attributes)
            .map(|key| Attribute {
                key: (*key).to_owned(),
                values: attribute_values(key, i),
            })
            .collect();
        let object = AssetObject {
            external_id: format!("host-{i:07}"),
            label: format!("Host {i}"),
            attributes,
        };
        (object_type, object)
    }
}

fn attribute_values(key: &str, i: u64) -> Vec<String> {
    match key {
        "hostname" => vec![format!("host-{i}.example.com")],
        "ipAddress" => vec![format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)],
        "os" => {
            vec![["Ubuntu 24.04", "RHEL 9", "Windows Server 2022"][(i % 3) as usize].to_owned()]
        }
        "owner" => vec![format!("team-{}", i % 17)],
        "serial" => vec![format!("SN{i:010}")],
        "location" => vec![["Sydney", "Berlin", "Austin"][(i % 3) as usize].to_owned()],
        "model" => vec![format!("R{}", 600 + i % 50)],
        _ => vec!["prod".to_owned(), format!("rack-{}", i % 40)],
    }
}

impl DataSourceProvider for SyntheticSource {
    fn next_page(&self, cursor: Option<&str>) -> Result<Page, SourceError> {
        let offset = match cursor {
            None => 0,
            Some(c) => c
                .parse::<u64>()
                .ok()
                .filter(|o| *o <= self.objects)
                .ok_or_else(|| SourceError::Other(format!("cursor {c:?} was not issued by this source")))?,
        };
        let page_size = u64::from(self.page_size.max(1));
        let page_number = offset / page_size + 1;
        if let Some(k) = self.fail_after_page {
            if page_number > u64::from(k) {
                return Err(SourceError::Timeout(format!(
                    "GET {SYNTHETIC_ENDPOINT}?offset={offset}&limit={page_size}: no answer within 30 s"
                )));
            }
        }
        let end = (offset + page_size).min(self.objects);
        let mut batches: Vec<ObjectBatch> = Vec::new();
        for i in offset..end {
            let (object_type, object) = self.object(i);
            match batches.iter_mut().find(|b| b.object_type_id == object_type) {
                Some(batch) => batch.objects.push(object),
                None => batches.push(ObjectBatch {
                    object_type_id: object_type,
                    objects: vec![object],
                }),
            }
        }
        Ok(Page {
            batches,
            next_cursor: (end < self.objects).then(|| end.to_string()),
        })
    }
}

/// A source that spends `latency` of the platform's clock on every page, as
/// a slow third-party API does: on a virtual clock the wait is simulated
/// time, so a long import's time limits can be tried in seconds; on the
/// [`SystemClock`](crate::clock::SystemClock) it is real time, and like a
/// server that ignores the caller's deadline, a read is not cut short when
/// the invocation's time runs out (the guest must not start a page it has
/// no time to finish).
pub struct SlowSource {
    /// The pages.
    pub inner: std::sync::Arc<dyn DataSourceProvider>,
    /// Whose time the wait takes.
    pub clock: std::sync::Arc<dyn crate::clock::Clock>,
    /// The wait per page.
    pub latency: std::time::Duration,
}

impl DataSourceProvider for SlowSource {
    fn next_page(&self, cursor: Option<&str>) -> Result<Page, SourceError> {
        self.clock.sleep(self.latency);
        self.inner.next_page(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(source: &SyntheticSource) -> Result<Vec<String>, SourceError> {
        let mut ids = Vec::new();
        let mut cursor = None;
        loop {
            let page = source.next_page(cursor.as_deref())?;
            for b in page.batches {
                ids.extend(b.objects.into_iter().map(|o| o.external_id));
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(ids),
            }
        }
    }

    #[test]
    fn pages_cover_every_object_once() {
        let source = SyntheticSource {
            objects: 1001,
            page_size: 100,
            ..Default::default()
        };
        let mut ids = read_all(&source).unwrap();
        assert_eq!(ids.len(), 1001);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 1001);
    }

    #[test]
    fn a_page_groups_objects_by_type() {
        let source = SyntheticSource {
            objects: 10,
            page_size: 10,
            object_types: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        let page = source.next_page(None).unwrap();
        let shape: Vec<_> = page
            .batches
            .iter()
            .map(|b| (b.object_type_id.as_str(), b.objects.len()))
            .collect();
        assert_eq!(shape, vec![("a", 5), ("b", 5)]);
    }

    #[test]
    fn it_times_out_after_the_given_page() {
        let source = SyntheticSource {
            objects: 1000,
            page_size: 100,
            fail_after_page: Some(2),
            ..Default::default()
        };
        assert!(source.next_page(Some("100")).is_ok());
        let Err(SourceError::Timeout(message)) = source.next_page(Some("200")) else {
            panic!()
        };
        assert!(message.contains("inventory.example.com"), "{message}");
    }

    #[test]
    fn a_foreign_cursor_is_refused() {
        let source = SyntheticSource::default();
        assert!(matches!(source.next_page(Some("abc")), Err(SourceError::Other(_))));
        assert!(matches!(source.next_page(Some("999999")), Err(SourceError::Other(_))));
    }
}
