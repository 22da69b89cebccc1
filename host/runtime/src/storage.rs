//! App storage: the small key-value store each app keeps across triggers
//! (the sandbox's equivalent of the platform's app storage), the default
//! [`Storage`] of [`Grants`](crate::Grants).
//!
//! Bounded, so one app cannot grow the host without limit: keys of at most
//! 256 bytes, values of at most 64 KiB, at most 100,000 keys per app.

use crate::capabilities::Storage;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Longest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most keys per app.
pub const MAX_KEYS: usize = 100_000;

/// Where an app's storage is kept beyond the process (e.g. a database).
pub trait StorageBacking: Send + Sync {
    /// Writes `key` (`None` deletes it) before the change is acknowledged.
    fn put(&self, key: &str, value: Option<&str>) -> Result<(), String>;

    /// The value stored under `key`, when other hosts write the same rows
    /// (so this process's copy may be behind): `Some(Ok(None))` for none.
    /// `None`, the default, when this process is the only writer and its
    /// copy is the whole truth.
    fn read(&self, _key: &str) -> Option<Result<Option<String>, String>> {
        None
    }
}

/// One app's storage; clones share it.
#[derive(Clone, Default)]
pub struct AppStorage {
    entries: Arc<Mutex<HashMap<String, String>>>,
    backing: Option<Arc<dyn StorageBacking>>,
}

impl std::fmt::Debug for AppStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppStorage")
            .field("keys", &self.len())
            .field("durable", &self.backing.is_some())
            .finish()
    }
}

impl AppStorage {
    /// Storage holding `entries`, writing every change through to `backing`.
    pub fn durable(entries: HashMap<String, String>, backing: Arc<dyn StorageBacking>) -> AppStorage {
        AppStorage {
            entries: Arc::new(Mutex::new(entries)),
            backing: Some(backing),
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        if let Some(read) = self.backing.as_ref().and_then(|b| b.read(key)) {
            match read {
                Ok(value) => {
                    let mut entries = self.lock();
                    match &value {
                        Some(v) => entries.insert(key.to_owned(), v.clone()),
                        None => entries.remove(key),
                    };
                    return value;
                }
                // The contract's get cannot fail: answer from this host's
                // copy, and say so.
                Err(why) => tracing::error!(key, %why, "app storage read from this host's copy"),
            }
        }
        self.lock().get(key).cloned()
    }

    /// Stores `value` under `key`, or says which limit refused it.
    pub fn set(&self, key: String, value: String) -> Result<(), String> {
        if key.len() > MAX_KEY_BYTES {
            return Err(format!(
                "storage key of {} bytes is over the {MAX_KEY_BYTES}-byte limit",
                key.len()
            ));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(format!(
                "storage value of {} bytes is over the {MAX_VALUE_BYTES}-byte limit",
                value.len()
            ));
        }
        let mut entries = self.lock();
        if entries.len() >= MAX_KEYS && !entries.contains_key(&key) {
            return Err(format!(
                "app storage is full ({MAX_KEYS} keys); delete keys to store more"
            ));
        }
        if let Some(backing) = &self.backing {
            backing.put(&key, Some(&value))?;
        }
        entries.insert(key, value);
        Ok(())
    }

    /// Removes `key`.
    pub fn delete(&self, key: &str) {
        let mut entries = self.lock();
        if let Some(backing) = &self.backing {
            if let Err(why) = backing.put(key, None) {
                // The guest's delete cannot fail in the contract; keep the
                // key so memory and disk agree, and say so.
                tracing::error!(key, %why, "app storage delete not saved");
                return;
            }
        }
        entries.remove(key);
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Storage for AppStorage {
    fn get(&self, key: &str) -> Option<String> {
        AppStorage::get(self, key)
    }
    fn set(&self, key: String, value: String) -> Result<(), String> {
        AppStorage::set(self, key, value)
    }
    fn delete(&self, key: &str) {
        AppStorage::delete(self, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_enforced_with_reasons() {
        let storage = AppStorage::default();
        assert!(storage.set("k".into(), "v".into()).is_ok());
        assert_eq!(storage.get("k").as_deref(), Some("v"));
        assert!(storage
            .set("k".repeat(300), "v".into())
            .unwrap_err()
            .contains("256-byte"));
        assert!(storage
            .set("big".into(), "x".repeat(MAX_VALUE_BYTES + 1))
            .unwrap_err()
            .contains("65536-byte"));
        storage.delete("k");
        assert!(storage.is_empty());
    }
}
