//! A Bloom filter over every committed transfer id, so the writer can prove
//! most ids new without a lookup.
//!
//! Why: before each commit the writer must refuse an id committed by an
//! earlier batch (the log has no unique index). Asking the tables for every
//! id of every batch was a B-tree probe per transfer on the commit path.
//! A Bloom filter has no false negatives, so an id it does not contain was
//! never committed; an id it may contain (about 1 % of new ids, more once
//! the filter is fuller than it was sized for) is looked up as before.
//! Correctness never depends on the filter, only the share of lookups does.

use std::hash::{BuildHasher, Hasher};

/// Bits per id the filter is sized for: about 1 % false positives with
/// `PROBES` probes.
const BITS_PER_ID: u64 = 10;
const PROBES: usize = 7;
const BLOCK_BITS: u64 = 512;
/// Ids of headroom beyond those stored at open: the filter keeps its
/// rate until the ledger has grown by this much (a restart resizes it).
const HEADROOM_IDS: u64 = 1_000_000;
/// The memory bound: 64 MiB of bits (about 50 million ids at 1 %). Beyond
/// that the false-positive rate grows and more ids are looked up.
const BITS_MAX: u64 = 64 * 1024 * 1024 * 8;

pub(crate) struct IdFilter {
    bits: Vec<u64>,
    /// The bit count (a power of two) less one.
    mask: u64,
    hasher: std::hash::RandomState,
}

impl IdFilter {
    /// A filter sized for `stored` ids plus headroom.
    pub(crate) fn with_capacity(stored: u64) -> IdFilter {
        let wanted = stored
            .saturating_mul(2)
            .saturating_add(HEADROOM_IDS)
            .saturating_mul(BITS_PER_ID)
            .clamp(BLOCK_BITS, BITS_MAX)
            .next_power_of_two()
            .min(BITS_MAX);
        IdFilter {
            bits: vec![0; (wanted / 64) as usize],
            mask: wanted - 1,
            hasher: std::hash::RandomState::new(),
        }
    }

    /// The bits of `id`: all in one 512-bit block (a cache line), so a test
    /// or an insert costs one cache miss rather than one per probe (a
    /// "blocked" Bloom filter; a slightly higher false-positive rate).
    fn probes(&self, id: &str) -> [u64; PROBES] {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(id.as_bytes());
        let hash = hasher.finish();
        let block = (hash & self.mask) & !(BLOCK_BITS - 1);
        // Double hashing (Kirsch–Mitzenmacher) within the block: h1 + i·h2,
        // h2 odd so the probes differ.
        let (h1, h2) = (hash >> 32, (hash >> 41) | 1);
        let mut probes = [0; PROBES];
        let mut at = h1;
        for probe in &mut probes {
            *probe = block + (at & (BLOCK_BITS - 1));
            at = at.wrapping_add(h2);
        }
        probes
    }

    pub(crate) fn insert(&mut self, id: &str) {
        for bit in self.probes(id) {
            self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// `false`: the id was certainly never inserted.
    pub(crate) fn may_contain(&self, id: &str) -> bool {
        self.probes(id)
            .into_iter()
            .all(|bit| self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_ids_are_always_found_and_most_others_are_not() {
        let mut filter = IdFilter::with_capacity(0);
        for i in 0..100_000 {
            filter.insert(&format!("t-{i}"));
        }
        assert!((0..100_000).all(|i| filter.may_contain(&format!("t-{i}"))));
        let false_positives = (0..100_000)
            .filter(|i| filter.may_contain(&format!("other-{i}")))
            .count();
        assert!(false_positives < 2_000, "{false_positives}");
    }
}
