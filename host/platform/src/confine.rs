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
//! It is also where the platform says which delivery a create-execution
//! call comes from ([`ConfinedAssets::for_delivery`]): the app's body goes
//! on with the delivery written into it, over whatever the app put there,
//! so an execution's creator is the platform's word, not the app's.

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
    /// The delivery these calls belong to, written into each create call.
    delivery: Option<Delivery>,
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

    /// Marks every execution these calls create as created by `delivery`.
    pub fn for_delivery(mut self, delivery: Delivery) -> ConfinedAssets {
        self.delivery = Some(delivery);
        self
    }

    /// The body of a create-execution call with the delivery written in:
    /// an empty body is `{}`, a JSON object gets (or loses) its `delivery`
    /// field; anything else goes on as it is, for the API to refuse.
    fn with_delivery(&self, body: Option<&str>) -> Option<String> {
        let mut object = match body.map(str::trim) {
            None | Some("") => serde_json::Map::new(),
            Some(text) => match serde_json::from_str(text) {
                Ok(serde_json::Value::Object(object)) => object,
                _ => return None,
            },
        };
        match &self.delivery {
            Some(delivery) => object.insert("delivery".into(), serde_json::to_value(delivery).ok()?),
            None => object.remove("delivery"),
        };
        Some(serde_json::Value::Object(object).to_string())
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
        let creates = matches!(method, Method::Post) && path.segments().eq(["importsource", source_id, "executions"]);
        let tagged = creates.then(|| self.with_delivery(body)).flatten();
        self.inner.call(method, path, tagged.as_deref().or(body))
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
            assets.state().ingesting(&theirs).is_none(),
            "nothing reached the other source"
        );
    }
}
