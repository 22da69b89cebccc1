//! App storage: the small key-value store each app keeps across triggers
//! (the sandbox's equivalent of the platform's app storage), the default
//! [`Storage`] of [`Grants`](crate::Grants).
//!
//! Bounded by [`StorageLimits`], so one app cannot grow the host's memory
//! or disk without limit: each key and value, the number of keys, and the
//! bytes of all keys and values together. Each refusal names its limit.

use crate::capabilities::Storage;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Longest key, in bytes, by default.
pub const MAX_KEY_BYTES: usize = 256;
/// Longest value, in bytes, by default.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most keys per app, by default.
pub const MAX_KEYS: usize = 100_000;
/// Most bytes of keys and values per app together, by default.
pub const MAX_TOTAL_BYTES: usize = 64 << 20;

/// How much one app may keep in its storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageLimits {
    /// Longest key, in bytes.
    pub key_bytes: usize,
    /// Longest value, in bytes.
    pub value_bytes: usize,
    /// Most keys.
    pub keys: usize,
    /// Most bytes of all keys and values together.
    pub total_bytes: usize,
}

impl Default for StorageLimits {
    /// 256-byte keys, 64 KiB values, 100,000 keys, 64 MiB in all.
    fn default() -> Self {
        StorageLimits {
            key_bytes: MAX_KEY_BYTES,
            value_bytes: MAX_VALUE_BYTES,
            keys: MAX_KEYS,
            total_bytes: MAX_TOTAL_BYTES,
        }
    }
}

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
    entries: Arc<Mutex<Entries>>,
    backing: Option<Arc<dyn StorageBacking>>,
    limits: StorageLimits,
}

/// The keys and values, and the bytes they take together.
#[derive(Default)]
struct Entries {
    map: HashMap<String, String>,
    bytes: usize,
}

impl Entries {
    fn new(map: HashMap<String, String>) -> Entries {
        let bytes = map.iter().map(|(k, v)| k.len() + v.len()).sum();
        Entries { map, bytes }
    }

    fn insert(&mut self, key: String, value: String) {
        self.bytes += key.len() + value.len();
        if let Some(old) = self.map.insert(key.clone(), value) {
            self.bytes -= key.len() + old.len();
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.map.remove(key) {
            self.bytes -= key.len() + old.len();
        }
    }
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
            entries: Arc::new(Mutex::new(Entries::new(entries))),
            backing: Some(backing),
            limits: StorageLimits::default(),
        }
    }

    /// The same storage under `limits` (storage already over them keeps
    /// what it holds, and takes nothing more until it is under).
    pub fn with_limits(mut self, limits: StorageLimits) -> AppStorage {
        self.limits = limits;
        self
    }

    /// The limits it is under.
    pub fn limits(&self) -> StorageLimits {
        self.limits
    }

    /// Bytes of all keys and values together.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
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
                    }
                    return value;
                }
                // The contract's get cannot fail: answer from this host's
                // copy, and say so.
                Err(why) => tracing::error!(key, %why, "app storage read from this host's copy"),
            }
        }
        self.lock().map.get(key).cloned()
    }

    /// Stores `value` under `key`, or says which limit refused it.
    pub fn set(&self, key: String, value: String) -> Result<(), String> {
        let limits = self.limits;
        if key.len() > limits.key_bytes {
            return Err(format!(
                "storage key of {} bytes is over the {}-byte limit",
                key.len(),
                limits.key_bytes
            ));
        }
        if value.len() > limits.value_bytes {
            return Err(format!(
                "storage value of {} bytes is over the {}-byte limit",
                value.len(),
                limits.value_bytes
            ));
        }
        let mut entries = self.lock();
        let replaced = entries.map.get(&key).map(|old| key.len() + old.len());
        if replaced.is_none() && entries.map.len() >= limits.keys {
            return Err(format!(
                "app storage is full ({} keys); delete keys to store more",
                limits.keys
            ));
        }
        let after = entries.bytes - replaced.unwrap_or(0) + key.len() + value.len();
        if after > limits.total_bytes {
            return Err(format!(
                "app storage would hold {after} bytes, over its {}-byte limit; delete keys to store more",
                limits.total_bytes
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
        self.lock().map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
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

    #[test]
    fn the_bytes_of_all_keys_and_values_are_bounded() {
        let limits = StorageLimits {
            total_bytes: 100,
            ..StorageLimits::default()
        };
        let storage = AppStorage::default().with_limits(limits);
        storage.set("a".into(), "x".repeat(49)).unwrap();
        storage.set("b".into(), "x".repeat(49)).unwrap();
        assert_eq!(storage.bytes(), 100);
        let refused = storage.set("c".into(), String::new()).unwrap_err();
        assert!(refused.contains("100-byte limit"), "{refused}");
        // Replacing a value counts the new one, not both.
        storage.set("a".into(), "y".repeat(49)).unwrap();
        assert!(storage.set("a".into(), "y".repeat(50)).is_err());
        storage.delete("b");
        assert_eq!(storage.bytes(), 50);
        storage.set("c".into(), "z".repeat(49)).unwrap();
    }
}
