//! The compactor's key → latest offset map, in memory of a fixed size.
//!
//! Keys are not stored: each is reduced to a 128-bit hash (two SipHash-1-3
//! values with different prefixes), so an entry is 24 bytes whatever the key's
//! size, and `log.cleaner.dedupe.buffer.size` bytes hold a known number of
//! keys. Two keys sharing 128 bits of hash is far less likely than a disk
//! error. Open addressing with linear probing; the map reports itself full at
//! 90% load (Kafka's `log.cleaner.io.buffer.load.factor`), and the cleaner then
//! stops reading the dirty part of the log there and cleans what it has.

use std::hash::{DefaultHasher, Hash, Hasher};

const ENTRY_BYTES: usize = 24;
const LOAD_FACTOR: f64 = 0.9;
const EMPTY: i64 = -1;

pub struct OffsetMap {
    /// (hash high, hash low, offset); offset -1 marks an empty slot.
    slots: Vec<(u64, u64, i64)>,
    used: usize,
    limit: usize,
}

fn hash(key: &[u8]) -> (u64, u64) {
    let mut a = DefaultHasher::new();
    0u8.hash(&mut a);
    key.hash(&mut a);
    let mut b = DefaultHasher::new();
    1u8.hash(&mut b);
    key.hash(&mut b);
    (a.finish(), b.finish())
}

impl OffsetMap {
    /// A map of at most `memory_bytes`, sized down to what `expected_keys`
    /// needs so a small log does not allocate the whole buffer.
    pub fn new(memory_bytes: u64, expected_keys: usize) -> Self {
        let most = (memory_bytes as usize / ENTRY_BYTES).max(2);
        let wanted = ((expected_keys as f64 / LOAD_FACTOR) as usize + 1).max(16);
        let slots = most.min(wanted);
        Self {
            slots: vec![(0, 0, EMPTY); slots],
            used: 0,
            limit: ((slots as f64 * LOAD_FACTOR) as usize).max(1),
        }
    }

    /// Bytes the map occupies.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * ENTRY_BYTES
    }

    pub fn len(&self) -> usize {
        self.used
    }

    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// No more new keys fit.
    pub fn is_full(&self) -> bool {
        self.used >= self.limit
    }

    /// `n` more keys, all new, would still fit.
    pub fn has_room_for(&self, n: usize) -> bool {
        self.used + n <= self.limit
    }

    fn slot(&self, h: (u64, u64)) -> usize {
        let n = self.slots.len();
        let mut i = (h.1 as usize) % n;
        loop {
            let s = self.slots[i];
            if s.2 == EMPTY || (s.0, s.1) == h {
                return i;
            }
            i = (i + 1) % n;
        }
    }

    /// Records `offset` as the latest for `key`. Returns false, changing
    /// nothing, when the key is new and the map is full.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let h = hash(key);
        let i = self.slot(h);
        if self.slots[i].2 == EMPTY {
            if self.is_full() {
                return false;
            }
            self.used += 1;
        }
        self.slots[i] = (h.0, h.1, offset);
        true
    }

    /// The latest offset recorded for `key`.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let s = self.slots[self.slot(hash(key))];
        (s.2 != EMPTY).then_some(s.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_offset_wins_and_the_memory_bound_holds() {
        let mut m = OffsetMap::new(24 * 1000, 1_000_000);
        assert_eq!(m.memory_bytes(), 24 * 1000);
        for round in 0..3 {
            for k in 0..800 {
                assert!(m.put(format!("key-{k}").as_bytes(), round * 1000 + k));
            }
        }
        assert_eq!(m.len(), 800);
        for k in 0..800 {
            assert_eq!(m.get(format!("key-{k}").as_bytes()), Some(2000 + k));
        }
        assert_eq!(m.get(b"never"), None);
        // 900 of 1000 slots may be used; a new key past that is refused,
        // an update of a known key is not.
        for k in 800..900 {
            assert!(m.put(format!("key-{k}").as_bytes(), k));
        }
        assert!(m.is_full());
        assert!(!m.put(b"one more", 1));
        assert_eq!(m.get(b"one more"), None);
        assert!(m.put(b"key-5", 99_999));
        assert_eq!(m.get(b"key-5"), Some(99_999));
    }

    #[test]
    fn a_small_log_gets_a_small_map() {
        let m = OffsetMap::new(128 << 20, 100);
        assert!(m.memory_bytes() < 24 * 200);
    }
}
