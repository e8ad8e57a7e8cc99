//! The wheel proper: a slab of entries linked into per-slot lists.
//!
//! Owns the entries and the lists; never reads a clock, never allocates
//! except when the slab grows. Invariants:
//!
//! - every live entry is in exactly one list, the one `level::locate(now,
//!   deadline)` named when it was last filed, and its `loc` field says which;
//!   lists are doubly linked by slab index with `NIL` at both ends;
//! - bit `s` of `occupied[L]` is set exactly when list `L * 64 + s` is
//!   non-empty;
//! - the filing invariants of `level` hold against the current `now`:
//!   advancing re-files (cascades) a slot the moment `now` enters it, and
//!   fires everything it passes;
//! - free slab slots form a singly linked free list through `next_free`;
//!   `len` counts live entries.

use std::fmt;
use std::mem;

use crate::level::{
    digit, level_of_diff, locate, next_wheel_span, slot_start, LEVELS, LOC_COUNT, LOC_DUE,
    LOC_OVERFLOW, SLOTS,
};
use crate::{Tick, TimerKey};

/// End-of-list marker and "no free slot".
const NIL: u32 = u32::MAX;

/// One slab slot. The fields sit directly in the variants (not in a nested
/// struct) so the compiler can pack `loc` next to the tag: with `T = u64`
/// an entry is 32 bytes, of which 24 are wheel overhead.
enum Entry<T> {
    /// An armed timer.
    Live {
        /// Absolute deadline tick.
        deadline: u64,
        /// Next entry in the same list, or `NIL`.
        next: u32,
        /// Previous entry in the same list, or `NIL` (then it is the head).
        prev: u32,
        /// Generation the entry's key carries.
        generation: u32,
        /// Index of the list the entry is in (`level * 64 + slot`,
        /// `LOC_OVERFLOW` or `LOC_DUE`).
        loc: u16,
        /// The caller's payload.
        value: T,
    },
    /// A free slot.
    Free {
        /// Next free slot, or `NIL`.
        next_free: u32,
        /// Generation the next occupant will get.
        generation: u32,
    },
}

/// A hierarchical timing wheel holding values of type `T` until their
/// deadline tick.
///
/// Eight levels of 64 slots cover `2^48` ticks ahead of `now`; later
/// deadlines wait in an overflow list and are re-filed when `now` reaches
/// their span. Deadlines at or before `now` are kept in a due list and fire
/// at the next [`advance`](Wheel::advance).
///
/// Memory: each timer takes one slab entry of
/// [`entry_bytes`](Wheel::entry_bytes) bytes, at most `size_of::<T>() + 32`
/// (24 bytes of overhead for `T = u64`: deadline 8, two links 8, generation
/// 4, list index and tag 4). The wheel adds a fixed ~2.1 KiB of list heads
/// and bitmaps, and the slab `Vec` may hold up to twice `len` entries after
/// growing (none with [`with_capacity`](Wheel::with_capacity) sized right);
/// [`memory_bytes`](Wheel::memory_bytes) counts all of it.
pub struct Wheel<T> {
    /// Current tick: everything with a deadline at or before it has fired,
    /// except entries in the due list.
    now: u64,
    /// Number of live entries.
    len: usize,
    /// Entry storage; `TimerKey::index` points here.
    slab: Vec<Entry<T>>,
    /// Head of the free list, or `NIL`.
    free_head: u32,
    /// Per level, bit `s` set when slot `s` is non-empty.
    occupied: [u64; LEVELS],
    /// Head of every list (level slots, overflow, due), or `NIL`.
    heads: [u32; LOC_COUNT],
}

impl<T> Wheel<T> {
    /// An empty wheel whose current tick is `now`.
    pub fn new(now: Tick) -> Self {
        Self::with_capacity(now, 0)
    }

    /// An empty wheel that can hold `capacity` timers before allocating.
    pub fn with_capacity(now: Tick, capacity: usize) -> Self {
        Wheel {
            now: now.0,
            len: 0,
            slab: Vec::with_capacity(capacity),
            free_head: NIL,
            occupied: [0; LEVELS],
            heads: [NIL; LOC_COUNT],
        }
    }

    /// The wheel's current tick (the last `now` given to `advance`).
    pub fn now(&self) -> Tick {
        Tick(self.now)
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of timers the slab holds without reallocating.
    pub fn capacity(&self) -> usize {
        self.slab.capacity()
    }

    /// Bytes one slab entry takes: `size_of::<T>()` plus the wheel's
    /// per-timer overhead.
    pub const fn entry_bytes() -> usize {
        mem::size_of::<Entry<T>>()
    }

    /// Heap and inline bytes the wheel owns: the struct itself plus the
    /// slab's whole capacity (payloads included, anything `T` points to
    /// excluded).
    pub fn memory_bytes(&self) -> usize {
        mem::size_of::<Self>() + self.slab.capacity() * Self::entry_bytes()
    }

    /// Arms a timer for `deadline`. A deadline at or before `now()` fires at
    /// the next `advance`.
    ///
    /// # Panics
    ///
    /// If more than `u32::MAX - 1` timers are armed at once.
    pub fn insert(&mut self, deadline: Tick, value: T) -> TimerKey {
        let loc = locate(self.now, deadline.0);
        let head = self.heads[loc as usize];
        let index = self.free_head;
        let (index, generation) = if index == NIL {
            let index = self.slab.len();
            assert!(
                index < NIL as usize,
                "ringmq-wheel: more than u32::MAX - 1 timers"
            );
            self.slab.push(Entry::Live {
                deadline: deadline.0,
                next: head,
                prev: NIL,
                generation: 0,
                loc,
                value,
            });
            (index as u32, 0)
        } else {
            let slot = &mut self.slab[index as usize];
            let (next_free, generation) = match *slot {
                Entry::Free {
                    next_free,
                    generation,
                } => (next_free, generation),
                // Invariant: the free list only links free slots.
                Entry::Live { .. } => unreachable!("free list links a live entry"),
            };
            *slot = Entry::Live {
                deadline: deadline.0,
                next: head,
                prev: NIL,
                generation,
                loc,
                value,
            };
            self.free_head = next_free;
            (index, generation)
        };
        if head != NIL {
            self.set_prev(head, index);
        }
        self.heads[loc as usize] = index;
        self.mark(loc);
        self.len += 1;
        TimerKey { index, generation }
    }

    /// Disarms a timer and returns its value; `None` (and no change) if the
    /// key has fired, was cancelled, or its slot was reused.
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        self.live_loc(key)?;
        self.unlink(key.index);
        self.release(key.index).map(|(_, value)| value)
    }

    /// Moves a live timer to `deadline`, keeping its key; `false` (and no
    /// change) if the key is stale. A deadline at or before `now()` fires at
    /// the next `advance`.
    pub fn reschedule(&mut self, key: TimerKey, deadline: Tick) -> bool {
        let Some(old_loc) = self.live_loc(key) else {
            return false;
        };
        let new_loc = locate(self.now, deadline.0);
        if new_loc != old_loc {
            self.unlink(key.index);
            self.link(key.index, new_loc);
        }
        if let Entry::Live { deadline: d, .. } = &mut self.slab[key.index as usize] {
            *d = deadline.0;
        }
        true
    }

    /// The deadline of a live timer; `None` if the key is stale.
    pub fn deadline(&self, key: TimerKey) -> Option<Tick> {
        match self.slab.get(key.index as usize)? {
            Entry::Live {
                deadline,
                generation,
                ..
            } if *generation == key.generation => Some(Tick(*deadline)),
            _ => None,
        }
    }

    /// Fires every timer whose deadline is at or before `now`, pushing
    /// `(key, value)` onto `fired` in no particular order, and makes `now`
    /// the wheel's current tick. A `now` earlier than `now()` does nothing.
    ///
    /// Cost: O(fired + levels crossed + entries cascaded); a step with
    /// nothing due is a few bitmap operations.
    pub fn advance(&mut self, now: Tick, fired: &mut Vec<(TimerKey, T)>) {
        let target = now.0;
        if target < self.now {
            return;
        }
        if self.heads[LOC_DUE as usize] != NIL {
            self.fire_list(LOC_DUE, fired);
        }
        if target == self.now {
            return;
        }
        let old = self.now;
        self.now = target;
        // Highest digit in which the old and new tick differ. Every entry in
        // a lower level lies inside the old tick's block at that digit, which
        // ends at or before `target`: all of them are due.
        let top = level_of_diff(old ^ target);
        for level in 0..top.min(LEVELS) {
            self.fire_level(level, u64::MAX, fired);
        }
        if top < LEVELS {
            // At level `top`, slots strictly between the old and new digit
            // are wholly due; the slot `now` enters cascades into the levels
            // just emptied; later slots stay valid against the new tick.
            let old_digit = digit(old, top);
            let new_digit = digit(target, top);
            debug_assert!(new_digit > old_digit);
            debug_assert!(self.occupied[top] & ((2u64 << old_digit) - 1) == 0);
            self.fire_level(top, (1u64 << new_digit) - 1, fired);
            let bit = 1u64 << new_digit;
            if self.occupied[top] & bit != 0 {
                self.occupied[top] &= !bit;
                self.cascade_list((top * SLOTS + new_digit) as u16, fired);
            }
        } else if self.heads[LOC_OVERFLOW as usize] != NIL {
            // `now` left the whole-wheel span: re-file the overflow list.
            self.cascade_list(LOC_OVERFLOW, fired);
        }
    }

    /// The earliest tick at which something may be due: exact when the
    /// earliest timer sits in level 0 or the due list, otherwise the start of
    /// the coarse slot (or wheel span) holding it, which is never later than
    /// the true earliest deadline. `None` when the wheel is empty. Sleeping
    /// until this tick and advancing to it, repeatedly, reaches the earliest
    /// deadline in at most `LEVELS + 1` steps.
    pub fn next_deadline(&self) -> Option<Tick> {
        if self.heads[LOC_DUE as usize] != NIL {
            return Some(Tick(self.now));
        }
        for (level, &bits) in self.occupied.iter().enumerate() {
            if bits != 0 {
                let slot = bits.trailing_zeros() as usize;
                return Some(Tick(slot_start(self.now, level, slot)));
            }
        }
        if self.heads[LOC_OVERFLOW as usize] != NIL {
            return next_wheel_span(self.now).map(Tick);
        }
        None
    }

    /// The list a live key's entry is in; `None` for a stale key.
    #[inline]
    fn live_loc(&self, key: TimerKey) -> Option<u16> {
        match self.slab.get(key.index as usize)? {
            Entry::Live {
                generation, loc, ..
            } if *generation == key.generation => Some(*loc),
            _ => None,
        }
    }

    /// Sets the occupancy bit of a level-slot list (no-op for the others).
    #[inline]
    fn mark(&mut self, loc: u16) {
        if loc < LOC_OVERFLOW {
            let loc = loc as usize;
            self.occupied[loc / SLOTS] |= 1u64 << (loc % SLOTS);
        }
    }

    /// Sets `prev` of live entry `index`.
    #[inline]
    fn set_prev(&mut self, index: u32, to: u32) {
        if let Entry::Live { prev, .. } = &mut self.slab[index as usize] {
            *prev = to;
        } else {
            debug_assert!(false, "list links a free entry");
        }
    }

    /// Sets `next` of live entry `index`.
    #[inline]
    fn set_next(&mut self, index: u32, to: u32) {
        if let Entry::Live { next, .. } = &mut self.slab[index as usize] {
            *next = to;
        } else {
            debug_assert!(false, "list links a free entry");
        }
    }

    /// Pushes live entry `index` (currently in no list) onto list `loc`.
    #[inline]
    fn link(&mut self, index: u32, loc: u16) {
        let head = self.heads[loc as usize];
        if let Entry::Live {
            next, prev, loc: l, ..
        } = &mut self.slab[index as usize]
        {
            *next = head;
            *prev = NIL;
            *l = loc;
        } else {
            debug_assert!(false, "linking a free entry");
            return;
        }
        if head != NIL {
            self.set_prev(head, index);
        }
        self.heads[loc as usize] = index;
        self.mark(loc);
    }

    /// Removes live entry `index` from its list, clearing the slot's
    /// occupancy bit when the list empties.
    #[inline]
    fn unlink(&mut self, index: u32) {
        let (next, prev, loc) = match self.slab[index as usize] {
            Entry::Live {
                next, prev, loc, ..
            } => (next, prev, loc),
            Entry::Free { .. } => {
                debug_assert!(false, "unlinking a free entry");
                return;
            }
        };
        if next != NIL {
            self.set_prev(next, prev);
        }
        if prev != NIL {
            self.set_next(prev, next);
        } else {
            self.heads[loc as usize] = next;
            if next == NIL && loc < LOC_OVERFLOW {
                let loc = loc as usize;
                self.occupied[loc / SLOTS] &= !(1u64 << (loc % SLOTS));
            }
        }
    }

    /// Frees slot `index` (already unlinked), returning the generation its
    /// key carried and its value.
    #[inline]
    fn release(&mut self, index: u32) -> Option<(u32, T)> {
        let slot = &mut self.slab[index as usize];
        let generation = match slot {
            Entry::Live { generation, .. } => *generation,
            Entry::Free { .. } => return None,
        };
        let old = mem::replace(
            slot,
            Entry::Free {
                next_free: self.free_head,
                generation: generation.wrapping_add(1),
            },
        );
        self.free_head = index;
        self.len -= 1;
        match old {
            Entry::Live { value, .. } => Some((generation, value)),
            Entry::Free { .. } => None,
        }
    }

    /// Fires every entry of list `loc`, leaving it empty (the caller fixes
    /// the occupancy bit).
    fn fire_list(&mut self, loc: u16, fired: &mut Vec<(TimerKey, T)>) {
        let mut index = mem::replace(&mut self.heads[loc as usize], NIL);
        while index != NIL {
            let next = match self.slab[index as usize] {
                Entry::Live { next, .. } => next,
                Entry::Free { .. } => NIL,
            };
            if let Some((generation, value)) = self.release(index) {
                fired.push((TimerKey { index, generation }, value));
            }
            index = next;
        }
    }

    /// Fires every occupied slot of `level` selected by `mask`.
    fn fire_level(&mut self, level: usize, mask: u64, fired: &mut Vec<(TimerKey, T)>) {
        let mut bits = self.occupied[level] & mask;
        self.occupied[level] &= !mask;
        while bits != 0 {
            let slot = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            self.fire_list((level * SLOTS + slot) as u16, fired);
        }
    }

    /// Empties list `loc` (the caller fixes its occupancy bit), firing the
    /// entries now due and re-filing the rest against the current tick.
    fn cascade_list(&mut self, loc: u16, fired: &mut Vec<(TimerKey, T)>) {
        let mut index = mem::replace(&mut self.heads[loc as usize], NIL);
        while index != NIL {
            let (next, deadline) = match self.slab[index as usize] {
                Entry::Live { next, deadline, .. } => (next, deadline),
                Entry::Free { .. } => {
                    debug_assert!(false, "list links a free entry");
                    return;
                }
            };
            if deadline <= self.now {
                if let Some((generation, value)) = self.release(index) {
                    fired.push((TimerKey { index, generation }, value));
                }
            } else {
                let to = locate(self.now, deadline);
                debug_assert!(to != loc || loc == LOC_OVERFLOW);
                self.link(index, to);
            }
            index = next;
        }
    }
}

impl<T> fmt::Debug for Wheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wheel")
            .field("now", &self.now)
            .field("len", &self.len)
            .field("capacity", &self.slab.capacity())
            .field("next_deadline", &self.next_deadline())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advance_collect<T>(wheel: &mut Wheel<T>, now: u64) -> Vec<(TimerKey, T)> {
        let mut fired = Vec::new();
        wheel.advance(Tick(now), &mut fired);
        fired
    }

    #[test]
    fn overhead_is_at_most_32_bytes() {
        fn overhead<T>() -> usize {
            Wheel::<T>::entry_bytes() - mem::size_of::<T>()
        }
        assert_eq!(Wheel::<u64>::entry_bytes(), 32);
        assert!(overhead::<()>() <= 32);
        assert!(overhead::<u8>() <= 32);
        assert!(overhead::<u32>() <= 32);
        assert!(overhead::<u64>() <= 32);
        assert!(overhead::<(u32, u8)>() <= 32);
        assert!(overhead::<[u64; 2]>() <= 32);
        assert!(overhead::<u128>() <= 32);
        assert!(overhead::<Box<u8>>() <= 32);
    }

    #[test]
    fn fires_at_deadline_not_before() {
        let mut wheel = Wheel::new(Tick(0));
        let key = wheel.insert(Tick(10), "a");
        assert_eq!(wheel.len(), 1);
        assert!(advance_collect(&mut wheel, 9).is_empty());
        assert_eq!(advance_collect(&mut wheel, 10), vec![(key, "a")]);
        assert!(wheel.is_empty());
        assert_eq!(wheel.cancel(key), None);
    }
}
