//! Per-app confinement of the Assets API: an app's calls reach only the
//! import sources installed for it.
//!
//! The sandbox already keeps a guest's paths inside its workspace
//! ([`assets_runtime::ApiPath`]), but several apps may share
//! one workspace, and every call carries the host's credential. Without this
//! check an app could cancel or fail another app's executions or rewrite its
//! schedule. [`ConfinedAssets`] sits between the guest and the real backend
//! and lets through only calls to the trigger's own import source or to a
//! source recorded as performed by the app; any other source id gets the
//! very 404 an unknown id gets, so an app cannot even learn that it exists,
//! and a path under no source gets the router's 404 without being sent.
//!
//! It is also where the platform says which delivery the calls come from
//! ([`ConfinedAssets::for_delivery`]): each call goes on with the delivery
//! beside it ([`AssetsBackend::call_for`]), out of the app's reach, so an
//! execution's creator is the platform's word, not the app's, and the API
//! fences every execution write by the delivery's attempt.

use crate::assets::{ApiError, AssetsService, Delivery};
use assets_runtime::bindings::assets_api::{CallError, Method, Response};
use assets_runtime::{method_name, ApiPath, AssetsBackend};
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
    /// The delivery these calls belong to, as sent beside each call.
    delivery: Option<String>,
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
            delivery: None,
        }
    }

    /// Makes every call these make one of `delivery`: the executions they
    /// create are `delivery`'s, and their writes are fenced by its attempt.
    pub fn for_delivery(mut self, delivery: Delivery) -> ConfinedAssets {
        self.delivery = Some(delivery.header());
        self
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

impl AssetsBackend for ConfinedAssets {
    fn call(&self, method: Method, path: &ApiPath, body: Option<&str>) -> Result<Response, CallError> {
        // Decided on the very value the backend sends: an `ApiPath` has no
        // empty, dot or escaped segment, so its source is the router's. An
        // app's API is its sources' endpoints; a path under no source is
        // answered as the router answers one (404), without sending it.
        let Some(source_id) = path.import_source() else {
            return Ok(ApiError::not_found(format!(
                "no endpoint at {}; import endpoints live under /jsm/assets/workspace/{{workspaceId}}/v1/importsource/{{importSourceId}}",
                path.path()
            ))
            .into_response()
            .into());
        };
        if !self.may_reach(source_id) {
            tracing::warn!(app = %self.app, source = %source_id, method = method_name(method), "refused an app's call to an import source it does not perform");
            return Ok(ApiError::unknown_source(path.workspace_id(), source_id)
                .into_response()
                .into());
        }
        self.inner.call_for(method, path, body, self.delivery.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let call = |method: Method, source: &str, rest: &str| {
            let path = ApiPath::parse(&ws, &format!("importsource/{source}{rest}")).unwrap();
            confined.call(method, &path, Some(r#"{"scheduled":true}"#)).unwrap()
        };
        assert_eq!(call(Method::Get, &mine, "").status, 200);
        assert_eq!(
            call(Method::Get, &also_mine, "").status,
            200,
            "every source the app performs"
        );
        let refused = call(Method::Post, &theirs, "/executions");
        assert_eq!(refused.status, 404, "{}", refused.body);
        let unknown = call(Method::Post, "no-such-source", "/executions");
        assert_eq!(
            refused.body.replace(&theirs, "ID"),
            unknown.body.replace("no-such-source", "ID"),
            "another app's source and an unknown one answer alike"
        );
        assert!(
            assets.read().unwrap().ingesting(&theirs).is_none(),
            "nothing reached the other source"
        );
    }
}
