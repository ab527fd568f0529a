//! The bounded maps behind the router's caches: a least-recently-used map bounded by the total
//! weight of its entries, and the lock every cache map is taken with.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

/// Locks a cache map. Nothing that runs under these locks panics halfway through an update, so a
/// poisoned lock still guards a consistent map and is used as is.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Least-recently-used entries with weights, bounded by their total weight.
pub(crate) struct Lru<K, V> {
    entries: HashMap<K, LruEntry<V>>,
    /// Entries by last use, oldest first.
    order: BTreeMap<u64, K>,
    clock: u64,
    weight: u64,
    budget: u64,
    evictions: u64,
}

struct LruEntry<V> {
    value: V,
    weight: u64,
    used: u64,
}

impl<K: Eq + Hash + Clone, V: Clone> Lru<K, V> {
    pub(crate) fn new(budget: u64) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
            weight: 0,
            budget,
            evictions: 0,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// The total weight of the entries.
    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    /// How many entries were evicted to make room, ever.
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions
    }

    pub(crate) fn get(&mut self, key: &K) -> Option<V> {
        let entry = self.entries.get_mut(key)?;
        let k = self.order.remove(&entry.used).expect("every entry is in the order");
        self.clock += 1;
        entry.used = self.clock;
        self.order.insert(self.clock, k);
        Some(entry.value.clone())
    }

    /// Inserts (or replaces), evicting the least recently used entries to make room. A value
    /// heavier than the whole budget is not kept.
    pub(crate) fn insert(&mut self, key: K, value: V, weight: u64) {
        self.remove(&key);
        if weight > self.budget {
            return;
        }
        while self.weight + weight > self.budget {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(evicted) = self.entries.remove(&oldest) {
                self.weight -= evicted.weight;
                self.evictions += 1;
            }
        }
        self.clock += 1;
        self.order.insert(self.clock, key.clone());
        self.entries.insert(
            key,
            LruEntry {
                value,
                weight,
                used: self.clock,
            },
        );
        self.weight += weight;
    }

    pub(crate) fn remove(&mut self, key: &K) {
        if let Some(entry) = self.entries.remove(key) {
            self.order.remove(&entry.used);
            self.weight -= entry.weight;
        }
    }
}
