//! The smallest useful data source: a computed inventory of racks, one page
//! per site. Composed into the importer by `make compose`, it shows how
//! little an app author writes: one function, `next-page`.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ world: "asset-source", path: "../../wit" });

    use assets::scheduled_import::types::{AssetObject, Attribute, ObjectBatch};
    use exports::assets::scheduled_import::data_source::{Guest, Page, SourceError};

    const SITES: [&str; 3] = ["ams1", "fra2", "lon3"];
    const RACKS_PER_SITE: u32 = 4;

    struct Racks;

    impl Guest for Racks {
        /// The cursor is the index of the next site; none means the first.
        fn next_page(cursor: Option<String>) -> Result<Page, SourceError> {
            let site = match cursor {
                None => 0,
                Some(c) => c.parse().map_err(|_| SourceError::Other(format!("bad cursor {c:?}")))?,
            };
            let name = SITES
                .get(site)
                .ok_or_else(|| SourceError::Other(format!("no site {site}")))?;
            let objects = (1..=RACKS_PER_SITE)
                .map(|n| AssetObject {
                    external_id: format!("{name}-rack-{n}"),
                    label: format!("Rack {n} ({name})"),
                    attributes: vec![Attribute {
                        key: "site".into(),
                        values: vec![name.to_string()],
                    }],
                })
                .collect();
            Ok(Page {
                batches: vec![ObjectBatch {
                    object_type_id: "rack".into(),
                    objects,
                }],
                next_cursor: (site + 1 < SITES.len()).then(|| (site + 1).to_string()),
            })
        }
    }

    export!(Racks);
}
