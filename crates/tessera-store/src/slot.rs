//! Uses of a shared record counted beside it, without a lock: [`UseSlot`].

use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Bits of the slot's word that count uses; the rest say which registration it is.
const COUNT_BITS: u32 = 24;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
/// No registration: the slot is free.
const FREE: u64 = 0;
/// Being claimed or closed: neither counted into nor claimable until the owner finishes.
const BUSY: u64 = u64::MAX;
/// The highest registration number (the one above is [`BUSY`]'s).
const LAST_REGISTRATION: u64 = (1 << (64 - COUNT_BITS)) - 2;

/// Registration numbers: unique in the process, never [`FREE`] or [`BUSY`].
static REGISTRATIONS: AtomicU64 = AtomicU64::new(1);

/// Uses of a [`SharedRecord`](crate::SharedRecord) counted beside it by one owner (a service's
/// usage ledger) while the owner has it registered: a repeated use of a record already
/// registered touches only the record, not the owner's tables.
///
/// An owner [claims](Self::claim) a free slot with a *key* (what a use must match to be
/// counted here: its owner, its kind of use, its address) and the time of the use that
/// claimed it; [`add`](Self::add) then counts uses matching that key within a window of that
/// time, lock-free, and refuses everything else (the owner counts those itself);
/// [`settle`](Self::settle) takes the count so far and [`close`](Self::close) takes it and
/// frees the slot. Each claim gets a number unique in the process, so a use never lands in a
/// later registration than the one it checked.
///
/// A clone is a free slot, and two slots compare equal: the slot is bookkeeping beside the
/// record, not part of it.
pub struct UseSlot {
    /// The registration number (high bits) and the uses counted since the last settle.
    word: AtomicU64,
    /// The key: owner and kind of use.
    tag: AtomicU64,
    /// The key: the address, if the use carries one.
    addr: [AtomicU64; 2],
    /// Unix nanoseconds of the use that claimed the slot.
    first: AtomicI64,
    /// Unix nanoseconds of the latest use counted (the claim's, at first).
    last: AtomicI64,
}

/// What a registration counted: uses, and the latest one's time (Unix nanoseconds).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct SlotCount {
    /// Uses counted since the last settle.
    pub uses: u64,
    /// The latest use's time counted by the registration (the claim's at least).
    pub last: i64,
}

/// What a use must match to be counted in a slot: chosen by the owner.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct SlotKey {
    /// The owner and the kind of use (the owner's own encoding).
    pub tag: u64,
    /// The address the use carries, if the kind has one.
    pub addr: u128,
}

impl UseSlot {
    /// A free slot.
    pub const fn new() -> Self {
        Self {
            word: AtomicU64::new(FREE),
            tag: AtomicU64::new(0),
            addr: [AtomicU64::new(0), AtomicU64::new(0)],
            first: AtomicI64::new(0),
            last: AtomicI64::new(0),
        }
    }

    /// Register the slot to `key`, for uses from `first` on: the registration number, or
    /// `None` when the slot is taken (another owner's, or being closed).
    pub fn claim(&self, key: SlotKey, first: i64) -> Option<u64> {
        self.word
            .compare_exchange(FREE, BUSY, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        self.tag.store(key.tag, Ordering::Relaxed);
        #[allow(clippy::cast_possible_truncation, reason = "the two halves")]
        {
            self.addr[0].store(key.addr as u64, Ordering::Relaxed);
            self.addr[1].store((key.addr >> 64) as u64, Ordering::Relaxed);
        }
        self.first.store(first, Ordering::Relaxed);
        self.last.store(first, Ordering::Relaxed);
        let number = loop {
            let n = REGISTRATIONS.fetch_add(1, Ordering::Relaxed) % (LAST_REGISTRATION + 1);
            if n != FREE {
                break n;
            }
        };
        // Publishes the key with the registration.
        self.word.store(number << COUNT_BITS, Ordering::Release);
        Some(number)
    }

    /// Count a use at `at` (Unix nanoseconds) if the slot is registered to `key` and `at` lies
    /// within `window` nanoseconds from the claim on: `false` when it was not counted (the
    /// caller counts it itself).
    pub fn add(&self, key: SlotKey, at: i64, window: i64) -> bool {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            if word == FREE || word == BUSY || word & COUNT_MAX == COUNT_MAX {
                return false;
            }
            let since = at.wrapping_sub(self.first.load(Ordering::Relaxed));
            if self.tag.load(Ordering::Relaxed) != key.tag
                || self.addr() != key.addr
                || !(0..window).contains(&since)
            {
                return false;
            }
            // The time first: whoever takes this use's count (the word, below) then sees it.
            self.last.fetch_max(at, Ordering::AcqRel);
            // Succeeds only if the registration read above still holds (numbers are unique).
            match self.word.compare_exchange_weak(
                word,
                word + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => word = now,
            }
        }
    }

    /// Take the uses counted so far by registration `number`, leaving it registered: `None`
    /// when the slot holds another registration.
    pub fn settle(&self, number: u64) -> Option<SlotCount> {
        self.take(number, number << COUNT_BITS)
    }

    /// Take the uses counted by registration `number` and free the slot: `None` when the slot
    /// holds another registration.
    pub fn close(&self, number: u64) -> Option<SlotCount> {
        self.take(number, FREE)
    }

    fn take(&self, number: u64, then: u64) -> Option<SlotCount> {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            if word == BUSY || word >> COUNT_BITS != number || number == FREE {
                return None;
            }
            // Busy while the time is read: no use counts in between, no other owner claims.
            match self
                .word
                .compare_exchange_weak(word, BUSY, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => word = now,
            }
        }
        let last = self.last.load(Ordering::Acquire);
        self.word.store(then, Ordering::Release);
        Some(SlotCount {
            uses: word & COUNT_MAX,
            last,
        })
    }

    fn addr(&self) -> u128 {
        u128::from(self.addr[0].load(Ordering::Relaxed))
            | (u128::from(self.addr[1].load(Ordering::Relaxed)) << 64)
    }
}

impl Default for UseSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for UseSlot {
    /// A free slot: the count belongs to the original's registration.
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl PartialEq for UseSlot {
    /// Always: the slot is bookkeeping beside a record, not part of it.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for UseSlot {}

impl core::fmt::Debug for UseSlot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let word = self.word.load(Ordering::Relaxed);
        f.debug_struct("UseSlot")
            .field("registered", &(word != FREE && word != BUSY))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: SlotKey = SlotKey { tag: 7, addr: 42 };

    #[test]
    fn counts_only_its_key_within_its_window() {
        let s = UseSlot::new();
        assert!(!s.add(KEY, 10, 100), "a free slot counts nothing");
        let n = s.claim(KEY, 10).unwrap();
        assert!(s.claim(KEY, 10).is_none(), "claimed once");
        assert!(s.add(KEY, 20, 100));
        assert!(s.add(KEY, 15, 100));
        assert!(!s.add(SlotKey { tag: 8, ..KEY }, 20, 100), "another owner");
        assert!(
            !s.add(SlotKey { addr: 43, ..KEY }, 20, 100),
            "another address"
        );
        assert!(!s.add(KEY, 110, 100), "past the window");
        assert!(!s.add(KEY, 9, 100), "before the claim");
        assert_eq!(s.settle(n), Some(SlotCount { uses: 2, last: 20 }));
        assert_eq!(s.settle(n + 1), None, "another registration");
        assert!(s.add(KEY, 30, 100));
        assert_eq!(s.close(n), Some(SlotCount { uses: 1, last: 30 }));
        assert!(!s.add(KEY, 40, 100), "closed");
        assert_eq!(s.close(n), None);
        let m = s.claim(KEY, 50).unwrap();
        assert_ne!(m, n, "a new number");
        assert_eq!(s.close(m), Some(SlotCount { uses: 0, last: 50 }));
    }

    #[test]
    fn a_clone_is_free_and_slots_compare_equal() {
        let s = UseSlot::new();
        let n = s.claim(KEY, 1).unwrap();
        assert!(s.add(KEY, 2, 10));
        let c = s.clone();
        assert!(!c.add(KEY, 2, 10));
        assert_eq!(c, s);
        assert_eq!(s.close(n).unwrap().uses, 1);
    }

    #[test]
    fn concurrent_uses_and_settles_count_every_use_once() {
        let s = std::sync::Arc::new(UseSlot::new());
        let n = s.claim(KEY, 0).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = std::sync::Arc::clone(&s);
                std::thread::spawn(move || {
                    let mut counted = 0u64;
                    for i in 0..50_000 {
                        if s.add(KEY, i, i64::MAX) {
                            counted += 1;
                        }
                    }
                    counted
                })
            })
            .collect();
        let mut settled = 0;
        for _ in 0..1_000 {
            settled += s.settle(n).unwrap().uses;
        }
        let counted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        settled += s.close(n).unwrap().uses;
        assert_eq!(settled, counted);
        assert!(counted > 0);
    }
}
