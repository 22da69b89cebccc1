//! Per-app confinement of the Assets API: an app's calls reach only the
//! import sources installed for it.
//!
//! The sandbox already keeps a guest's paths inside its workspace
//! ([`assets_runtime::sandbox::confine_path`]), but several apps may share
//! one workspace, and every call carries the host's credential. Without this
//! check an app could cancel or fail another app's executions or rewrite its
//! schedule. [`ConfinedAssets`] sits between the guest and the real backend
//! and lets through only calls to the trigger's own import source or to a
//! source recorded as performed by the app; any other source id gets the
//! very 404 an unknown id gets, so an app cannot even learn that it exists.

use crate::assets::{ApiError, AssetsService};
use assets_runtime::bindings::assets_api::{CallError, Response};
use assets_runtime::AssetsBackend;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// An [`AssetsBackend`] that refuses, as "not found", every import source
/// the app does not perform.
pub struct ConfinedAssets {
    inner: Arc<dyn AssetsBackend>,
    assets: Arc<AssetsService>,
    app: String,
    /// Sources already found to be the app's: an owner never changes, so a
    /// yes is remembered and the state is read once per source.
    reachable: Mutex<HashSet<String>>,
}

impl ConfinedAssets {
    /// Confines `app`'s calls through `inner` to `trigger_source` (the
    /// source it was triggered for) and the sources `assets` records as
    /// performed by `app`.
    pub fn new(
        inner: Arc<dyn AssetsBackend>,
        assets: Arc<AssetsService>,
        app: impl Into<String>,
        trigger_source: impl Into<String>,
    ) -> ConfinedAssets {
        ConfinedAssets {
            inner,
            assets,
            app: app.into(),
            reachable: Mutex::new(HashSet::from([trigger_source.into()])),
        }
    }

    fn may_reach(&self, source_id: &str) -> bool {
        let mut reachable = self.reachable.lock().unwrap_or_else(|e| e.into_inner());
        if reachable.contains(source_id) {
            return true;
        }
        let owned = self
            .assets
            .state()
            .source_by_id(source_id)
            .is_some_and(|s| s.app.as_deref() == Some(self.app.as_str()));
        if owned {
            reachable.insert(source_id.to_owned());
        }
        owned
    }
}

/// The workspace and import source a confined API path names, read the way
/// the mock's router reads it (query and fragment dropped, empty segments
/// skipped), so no spelling of a path reaches a source this check missed.
pub fn source_of(path: &str) -> Option<(&str, &str)> {
    let bare = path.split(['?', '#']).next().unwrap_or_default();
    let mut segments = bare.split('/').filter(|s| !s.is_empty());
    match [(); 7].map(|_| segments.next()) {
        [Some("jsm"), Some("assets"), Some("workspace"), Some(ws), Some("v1"), Some("importsource"), Some(src)] => {
            Some((ws, src))
        }
        _ => None,
    }
}

impl AssetsBackend for ConfinedAssets {
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<Response, CallError> {
        if let Some((workspace_id, source_id)) = source_of(path) {
            if !self.may_reach(source_id) {
                tracing::warn!(app = %self.app, source = %source_id, %method, "refused an app's call to an import source it does not perform");
                return Ok(ApiError::unknown_source(workspace_id, source_id).into_response().into());
            }
        }
        self.inner.call(method, path, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_read_as_the_router_reads_it() {
        let p = "/jsm/assets/workspace/w/v1/importsource/s/executions?x=1";
        assert_eq!(source_of(p), Some(("w", "s")));
        assert_eq!(
            source_of("/jsm/assets/workspace/w/v1/importsource//s2/executions"),
            Some(("w", "s2"))
        );
        assert_eq!(
            source_of("/jsm/assets/workspace/w/v1/importsource/s#frag"),
            Some(("w", "s"))
        );
        assert_eq!(source_of("/jsm/assets/workspace/w/v1/importsource"), None);
        assert_eq!(source_of("/jsm/assets/workspace/w/v1/other/s"), None);
    }

    #[test]
    fn another_apps_source_reads_as_unknown() {
        use crate::assets::{InProcessAssets, SourceType};
        use crate::clock::SystemClock;
        let assets = Arc::new(AssetsService::new(Arc::new(SystemClock)));
        let ws = assets.create_workspace();
        let mine = assets
            .create_import_source(&ws, SourceType::External, Some("a".into()))
            .unwrap();
        let also_mine = assets
            .create_import_source(&ws, SourceType::External, Some("a".into()))
            .unwrap();
        let theirs = assets
            .create_import_source(&ws, SourceType::External, Some("b".into()))
            .unwrap();
        let confined = ConfinedAssets::new(
            Arc::new(InProcessAssets::new(assets.clone())),
            assets.clone(),
            "a",
            mine.clone(),
        );
        let call = |method: &str, source: &str, rest: &str| {
            let path = format!("/jsm/assets/workspace/{ws}/v1/importsource/{source}{rest}");
            confined.call(method, &path, Some(r#"{"scheduled":true}"#)).unwrap()
        };
        assert_eq!(call("GET", &mine, "").status, 200);
        assert_eq!(call("GET", &also_mine, "").status, 200, "every source the app performs");
        let refused = call("POST", &theirs, "/executions");
        assert_eq!(refused.status, 404, "{}", refused.body);
        let unknown = call("POST", "no-such-source", "/executions");
        assert_eq!(
            refused.body.replace(&theirs, "ID"),
            unknown.body.replace("no-such-source", "ID"),
            "another app's source and an unknown one answer alike"
        );
        assert!(
            assets.state().ingesting(&theirs).is_none(),
            "nothing reached the other source"
        );
    }
}
