//! The wheel proper: a slab of entries linked into per-slot lists.
//!
//! Owns the entries and the lists; never reads a clock, never allocates
//! except when the slab grows. Invariants:
//!
//! - every live entry is in exactly one list: lane `index % LANES` of the
//!   slot `level::locate(now, deadline)` named when it was last filed, and
//!   its `loc` field says which slot; lists are doubly linked by slab index
//!   with `NIL` at both ends;
//! - bit `loc % 64` of `occupied[loc / 64]` is set exactly when some lane of
//!   slot `loc` is non-empty (word `LEVELS` covers the overflow and due
//!   lists);
//! - the filing invariants of `level` hold against the current `now`:
//!   advancing re-files (cascades) a slot the moment `now` enters it, and
//!   fires everything it passes;
//! - free slab slots form a singly linked free list through `next_free`;
//!   `len` counts live entries.
//!
//! Why lanes: walking a linked list is a chain of dependent loads, and with
//! a million timers nearly every one misses the cache (100-300 ns each on
//! the bench machine). Splitting each slot into `LANES` lists by slab index
//! and walking them in step keeps `LANES` independent misses in flight, so
//! firing and cascading a slot costs a fraction of a miss per entry
//! (`advance_rearm` at 1M timers in benches/wheel.rs: about 10 us per tick
//! with one list per slot, 2.5 us with 8 lanes). Insert, cancel and
//! reschedule still touch one list.

use std::fmt;
use std::mem;

use crate::level::{
    digit, level_of_diff, locate, slot_start, wheel_span_start, LEVELS, LOC_COUNT, LOC_DUE,
    LOC_OVERFLOW, SLOTS,
};
use crate::{Tick, TimerKey};

/// End-of-list marker and "no free slot".
const NIL: u32 = u32::MAX;

/// Lists per slot, a power of two; an entry's lane is its slab index modulo
/// this.
const LANES: usize = 8;

/// Occupancy bit of the overflow list in `occupied[LEVELS]`.
const OVERFLOW_BIT: u64 = 1 << (LOC_OVERFLOW as usize % SLOTS);
/// Occupancy bit of the due list in `occupied[LEVELS]`.
const DUE_BIT: u64 = 1 << (LOC_DUE as usize % SLOTS);

/// Index in `heads` of the list for slot `loc`, lane of entry `index`.
#[inline]
fn head_of(loc: u16, index: u32) -> usize {
    loc as usize * LANES + (index as usize & (LANES - 1))
}

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
        /// Slot the entry is filed in (`level * 64 + slot`, `LOC_OVERFLOW`
        /// or `LOC_DUE`).
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
/// 4, slot index and tag 4). The wheel adds a fixed ~16 KiB of list heads
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
    /// Occupancy bitmaps: one word per level, then one for overflow and due.
    occupied: [u64; LEVELS + 1],
    /// Head of every lane of every slot (`head_of`), or `NIL`.
    heads: Box<[u32; LOC_COUNT * LANES]>,
    /// At or before the earliest deadline in the overflow list (it may be
    /// stale-early after a cancel); `u64::MAX` when nothing was filed there
    /// since the last re-file.
    overflow_min: u64,
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
            occupied: [0; LEVELS + 1],
            heads: Box::new([NIL; LOC_COUNT * LANES]),
            overflow_min: u64::MAX,
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

    /// Heap and inline bytes the wheel owns: the struct, its list heads and
    /// the slab's whole capacity (payloads included, anything `T` points to
    /// excluded).
    pub fn memory_bytes(&self) -> usize {
        mem::size_of::<Self>()
            + mem::size_of::<[u32; LOC_COUNT * LANES]>()
            + self.slab.capacity() * Self::entry_bytes()
    }

    /// Arms a timer for `deadline`. A deadline at or before `now()` fires at
    /// the next `advance`.
    ///
    /// # Panics
    ///
    /// If more than `u32::MAX - 1` timers are armed at once.
    pub fn insert(&mut self, deadline: Tick, value: T) -> TimerKey {
        let loc = locate(self.now, deadline.0);
        let index = self.free_head;
        let (index, generation) = if index == NIL {
            let index = self.slab.len();
            assert!(
                index < NIL as usize,
                "ringmq-wheel: more than u32::MAX - 1 timers"
            );
            let index = index as u32;
            self.slab.push(Entry::Live {
                deadline: deadline.0,
                next: self.heads[head_of(loc, index)],
                prev: NIL,
                generation: 0,
                loc,
                value,
            });
            (index, 0)
        } else {
            let next = self.heads[head_of(loc, index)];
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
                next,
                prev: NIL,
                generation,
                loc,
                value,
            };
            self.free_head = next_free;
            (index, generation)
        };
        let head = mem::replace(&mut self.heads[head_of(loc, index)], index);
        if head != NIL {
            self.set_prev(head, index);
        }
        self.mark(loc, deadline.0);
        self.len += 1;
        TimerKey::new(index, generation)
    }

    /// Disarms a timer and returns its value; `None` (and no change) if the
    /// key has fired, was cancelled, or its slot was reused.
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        self.live_loc(key)?;
        self.unlink(key.slot());
        self.release(key.slot()).map(|(_, value)| value)
    }

    /// Moves a live timer to `deadline`, keeping its key; `false` (and no
    /// change) if the key is stale. A deadline at or before `now()` fires at
    /// the next `advance`.
    pub fn reschedule(&mut self, key: TimerKey, deadline: Tick) -> bool {
        let Some(old_loc) = self.live_loc(key) else {
            return false;
        };
        let new_loc = locate(self.now, deadline.0);
        if new_loc == old_loc {
            if let Entry::Live { deadline: d, .. } = &mut self.slab[key.slot() as usize] {
                *d = deadline.0;
            }
            if new_loc == LOC_OVERFLOW {
                self.overflow_min = self.overflow_min.min(deadline.0);
            }
        } else {
            self.unlink(key.slot());
            self.link(key.slot(), new_loc, deadline.0);
        }
        true
    }

    /// The deadline of a live timer; `None` if the key is stale.
    pub fn deadline(&self, key: TimerKey) -> Option<Tick> {
        match self.slab.get(key.slot() as usize)? {
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
        if self.occupied[LEVELS] & DUE_BIT != 0 {
            self.drain(LOC_DUE, false, fired);
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
            if self.occupied[top] & (1u64 << new_digit) != 0 {
                self.drain((top * SLOTS + new_digit) as u16, true, fired);
            }
        } else {
            // `now` left the whole-wheel span: re-file the overflow list.
            self.overflow_min = u64::MAX;
            if self.occupied[LEVELS] & OVERFLOW_BIT != 0 {
                self.drain(LOC_OVERFLOW, true, fired);
            }
        }
    }

    /// The earliest tick at which something may be due: exact when the
    /// earliest timer sits in level 0 or the due list, otherwise the start of
    /// the coarse slot (or `2^48`-tick span) holding it, which is never later
    /// than the true earliest deadline. `None` when the wheel is empty.
    /// Sleeping until this tick and advancing to it, repeatedly, reaches the
    /// earliest deadline in at most `LEVELS + 2` steps.
    pub fn next_deadline(&self) -> Option<Tick> {
        let special = self.occupied[LEVELS];
        if special & DUE_BIT != 0 {
            return Some(Tick(self.now));
        }
        for (level, &bits) in self.occupied[..LEVELS].iter().enumerate() {
            if bits != 0 {
                let slot = bits.trailing_zeros() as usize;
                return Some(Tick(slot_start(self.now, level, slot)));
            }
        }
        if special & OVERFLOW_BIT != 0 {
            debug_assert!(wheel_span_start(self.overflow_min) > self.now);
            return Some(Tick(wheel_span_start(self.overflow_min)));
        }
        None
    }

    /// The slot a live key's entry is in; `None` for a stale key.
    #[inline]
    fn live_loc(&self, key: TimerKey) -> Option<u16> {
        match self.slab.get(key.slot() as usize)? {
            Entry::Live {
                generation, loc, ..
            } if *generation == key.generation => Some(*loc),
            _ => None,
        }
    }

    /// Records that an entry due at `deadline` joined slot `loc`: sets its
    /// occupancy bit, and for overflow lowers the overflow minimum.
    #[inline]
    fn mark(&mut self, loc: u16, deadline: u64) {
        let loc_index = loc as usize;
        self.occupied[loc_index / SLOTS] |= 1u64 << (loc_index % SLOTS);
        if loc == LOC_OVERFLOW {
            self.overflow_min = self.overflow_min.min(deadline);
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

    /// Pushes live entry `index` (currently in no list) onto its lane of
    /// slot `loc`, setting its deadline.
    #[inline]
    fn link(&mut self, index: u32, loc: u16, deadline: u64) {
        let head = self.heads[head_of(loc, index)];
        if let Entry::Live {
            deadline: d,
            next,
            prev,
            loc: l,
            ..
        } = &mut self.slab[index as usize]
        {
            *d = deadline;
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
        self.heads[head_of(loc, index)] = index;
        self.mark(loc, deadline);
    }

    /// Removes live entry `index` from its list, clearing the slot's
    /// occupancy bit when its last lane empties.
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
            return;
        }
        self.heads[head_of(loc, index)] = next;
        if next == NIL {
            let first = loc as usize * LANES;
            if self.heads[first..first + LANES].iter().all(|&h| h == NIL) {
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

    /// Fires every occupied slot of `level` selected by `mask`.
    fn fire_level(&mut self, level: usize, mask: u64, fired: &mut Vec<(TimerKey, T)>) {
        let mut bits = self.occupied[level] & mask;
        while bits != 0 {
            let slot = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            self.drain((level * SLOTS + slot) as u16, false, fired);
        }
    }

    /// Empties slot `loc`, clearing its occupancy bit. Entries are fired,
    /// except, when `refile` is set, those not yet due, which are filed
    /// again against the current tick. The lanes are walked in step so their
    /// cache misses overlap.
    fn drain(&mut self, loc: u16, refile: bool, fired: &mut Vec<(TimerKey, T)>) {
        let first = loc as usize * LANES;
        let mut cursors = [NIL; LANES];
        for (cursor, head) in cursors
            .iter_mut()
            .zip(&mut self.heads[first..first + LANES])
        {
            *cursor = mem::replace(head, NIL);
        }
        let loc_index = loc as usize;
        self.occupied[loc_index / SLOTS] &= !(1u64 << (loc_index % SLOTS));
        loop {
            // Read one entry per lane first: these loads do not depend on
            // each other, so their misses overlap. Then do the work, which
            // finds those lines in cache.
            let mut batch = [(NIL, 0u64); LANES];
            let mut walking = false;
            for (cursor, item) in cursors.iter_mut().zip(&mut batch) {
                let index = *cursor;
                if index == NIL {
                    continue;
                }
                walking = true;
                match self.slab[index as usize] {
                    Entry::Live { next, deadline, .. } => {
                        *cursor = next;
                        *item = (index, deadline);
                    }
                    Entry::Free { .. } => {
                        debug_assert!(false, "list links a free entry");
                        *cursor = NIL;
                    }
                }
            }
            if !walking {
                break;
            }
            for &(index, deadline) in &batch {
                if index == NIL {
                    continue;
                }
                if refile && deadline > self.now {
                    let to = locate(self.now, deadline);
                    debug_assert!(to != loc || loc == LOC_OVERFLOW);
                    self.link(index, to, deadline);
                } else if let Some((generation, value)) = self.release(index) {
                    fired.push((TimerKey::new(index, generation), value));
                }
            }
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
    use crate::level::WHEEL_SPAN_BITS;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn advance_collect<T>(wheel: &mut Wheel<T>, now: u64) -> Vec<(TimerKey, T)> {
        let mut fired = Vec::new();
        wheel.advance(Tick(now), &mut fired);
        fired
    }

    /// Values of the entries fired by advancing to `now`, sorted.
    fn advance_values(wheel: &mut Wheel<u64>, now: u64) -> Vec<u64> {
        let mut values: Vec<u64> = advance_collect(wheel, now)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        values.sort_unstable();
        values
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
        let wheel: Wheel<u64> = Wheel::with_capacity(Tick(0), 1000);
        assert!(wheel.capacity() >= 1000);
        assert_eq!(
            wheel.memory_bytes(),
            mem::size_of::<Wheel<u64>>() + LOC_COUNT * LANES * 4 + wheel.capacity() * 32
        );
    }

    #[test]
    fn fires_at_deadline_not_before() {
        let mut wheel = Wheel::new(Tick(0));
        let key = wheel.insert(Tick(10), "a");
        assert_eq!(wheel.len(), 1);
        assert_eq!(wheel.deadline(key), Some(Tick(10)));
        assert!(advance_collect(&mut wheel, 9).is_empty());
        assert_eq!(wheel.now(), Tick(9));
        assert_eq!(advance_collect(&mut wheel, 10), vec![(key, "a")]);
        assert!(wheel.is_empty());
        assert_eq!(wheel.cancel(key), None);
        assert_eq!(wheel.deadline(key), None);
        assert_eq!(wheel.next_deadline(), None);
    }

    /// Starting ticks that put the wheel just before a slot, level, top
    /// level or overflow boundary.
    fn boundary_starts() -> Vec<u64> {
        let mut starts = vec![0, 1, 62, 63, 64, 65, 4095, 4096];
        for level in 3..=LEVELS as u32 {
            let unit = 1u64 << (6 * level);
            starts.extend([unit - 4097, unit - 65, unit - 64, unit - 1]);
        }
        starts.extend([u64::MAX - 10_000, u64::MAX - 4100]);
        starts
    }

    #[test]
    fn tick_by_tick_every_deadline_fires_exactly_on_time() {
        // One entry per deadline in (start - 2, start + 64^2 + 70], stepping
        // one tick at a time across every slot 63 -> 0 and level crossing
        // reachable from each boundary start.
        for start in boundary_starts() {
            let mut wheel = Wheel::new(Tick(start));
            let first = start.saturating_sub(2);
            let last = start.saturating_add(64 * 64 + 70);
            for d in first..=last {
                wheel.insert(Tick(d), d);
            }
            let due: Vec<u64> = (first..=start).collect();
            assert_eq!(wheel.next_deadline(), Some(Tick(start)));
            assert_eq!(advance_values(&mut wheel, start), due, "start={start}");
            for now in start + 1..=last {
                let next = wheel.next_deadline().expect("entries remain");
                assert!(next.0 > start && next.0 <= now, "start={start} now={now}");
                assert_eq!(advance_values(&mut wheel, now), vec![now], "start={start}");
            }
            assert!(wheel.is_empty());
        }
    }

    #[test]
    fn jumps_of_every_boundary_size_fire_exactly_the_passed_entries() {
        let jumps = [
            1u64, 2, 63, 64, 65, 127, 128, 4095, 4096, 4097, 262_143, 262_145,
        ];
        for start in boundary_starts() {
            for &jump in &jumps {
                let mut wheel = Wheel::new(Tick(start));
                let last = start.saturating_add(300_000);
                // A spread of deadlines: dense near start, sparse later.
                let mut deadlines: Vec<u64> = (start..=start.saturating_add(200)).collect();
                deadlines.extend((start..=last).step_by(997));
                deadlines.sort_unstable();
                deadlines.dedup();
                for &d in &deadlines {
                    wheel.insert(Tick(d), d);
                }
                let mut now = start;
                let mut expected = deadlines.iter().copied().peekable();
                loop {
                    let mut want = Vec::new();
                    while let Some(d) = expected.next_if(|&d| d <= now) {
                        want.push(d);
                    }
                    assert_eq!(
                        advance_values(&mut wheel, now),
                        want,
                        "start={start} jump={jump}"
                    );
                    if now >= last {
                        break;
                    }
                    now = now.saturating_add(jump).min(last);
                }
                assert!(wheel.is_empty(), "start={start} jump={jump}");
            }
        }
    }

    #[test]
    fn overflow_entries_are_refiled_when_their_span_begins() {
        let span = 1u64 << WHEEL_SPAN_BITS;
        let mut wheel = Wheel::new(Tick(0));
        wheel.insert(Tick(span + 5), 1u64);
        wheel.insert(Tick(3 * span + 7), 2);
        wheel.insert(Tick(u64::MAX), 3);
        assert_eq!(wheel.next_deadline(), Some(Tick(span)));
        assert!(advance_values(&mut wheel, span - 1).is_empty());
        assert!(advance_values(&mut wheel, span).is_empty());
        assert_eq!(wheel.next_deadline(), Some(Tick(span + 5)));
        assert_eq!(advance_values(&mut wheel, span + 5), vec![1]);
        // The overflow minimum lets a sleeper skip the empty span.
        assert_eq!(wheel.next_deadline(), Some(Tick(3 * span)));
        // One jump over two whole spans lands in the entry's slot exactly.
        assert_eq!(advance_values(&mut wheel, 3 * span + 7), vec![2]);
        assert_eq!(advance_values(&mut wheel, u64::MAX - 1), Vec::<u64>::new());
        assert_eq!(wheel.next_deadline(), Some(Tick(u64::MAX)));
        assert_eq!(advance_values(&mut wheel, u64::MAX), vec![3]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn one_huge_jump_fires_everything_in_every_level() {
        let mut wheel = Wheel::new(Tick(17));
        let mut deadlines = Vec::new();
        for bit in 0..64 {
            deadlines.push(17u64.saturating_add(1 << bit));
        }
        deadlines.push(u64::MAX);
        for &d in &deadlines {
            wheel.insert(Tick(d), d);
        }
        deadlines.sort_unstable();
        assert_eq!(advance_values(&mut wheel, u64::MAX), deadlines);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn stale_keys_are_harmless() {
        let mut wheel = Wheel::new(Tick(0));
        let fired_key = wheel.insert(Tick(1), 1u64);
        assert_eq!(advance_values(&mut wheel, 1), vec![1]);
        // The freed slot is reused with a new generation.
        let reused = wheel.insert(Tick(5), 2);
        assert_eq!(reused.slot(), fired_key.slot());
        assert_ne!(reused, fired_key);
        assert_eq!(wheel.cancel(fired_key), None);
        assert!(!wheel.reschedule(fired_key, Tick(2)));
        assert_eq!(wheel.deadline(fired_key), None);
        assert_eq!(wheel.deadline(reused), Some(Tick(5)));
        // Cancelled keys are stale too.
        assert_eq!(wheel.cancel(reused), Some(2));
        assert_eq!(wheel.cancel(reused), None);
        assert!(!wheel.reschedule(reused, Tick(9)));
        // A key from a slot never allocated is stale.
        let foreign = TimerKey::new(1000, 0);
        assert_eq!(wheel.cancel(foreign), None);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn cancel_unlinks_head_middle_and_tail_in_every_lane() {
        // Three entries per lane in one slot (slab indices i, i + LANES,
        // i + 2 * LANES share lane i), cancelled in several orders: the slot
        // stays occupied until its last entry in any lane goes, and the
        // survivors still fire.
        let count = 3 * LANES;
        let mut orders: Vec<Vec<usize>> = vec![
            (0..count).collect(),
            (0..count).rev().collect(),
            (0..count).map(|i| (i % 3) * LANES + i / 3).collect(),
        ];
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..8 {
            let mut order: Vec<usize> = (0..count).collect();
            for i in (1..count).rev() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                order.swap(i, (rng % (i as u64 + 1)) as usize);
            }
            orders.push(order);
        }
        for order in orders {
            for keep in [0, 1, count / 2] {
                let mut wheel = Wheel::new(Tick(0));
                let keys: Vec<TimerKey> = (0..count as u64)
                    .map(|v| wheel.insert(Tick(100), v))
                    .collect();
                for (n, &i) in order[..count - keep].iter().enumerate() {
                    assert_eq!(wheel.next_deadline(), Some(Tick(64)));
                    assert_eq!(wheel.cancel(keys[i]), Some(i as u64));
                    assert_eq!(wheel.cancel(keys[i]), None);
                    assert_eq!(wheel.len(), count - 1 - n);
                }
                let mut survivors: Vec<u64> =
                    order[count - keep..].iter().map(|&i| i as u64).collect();
                survivors.sort_unstable();
                if keep == 0 {
                    assert_eq!(wheel.next_deadline(), None);
                }
                assert!(advance_values(&mut wheel, 99).is_empty());
                assert_eq!(advance_values(&mut wheel, 100), survivors);
                assert!(wheel.is_empty());
            }
        }
    }

    #[test]
    fn reschedule_moves_between_levels_due_and_overflow() {
        let mut wheel = Wheel::new(Tick(1000));
        let a = wheel.insert(Tick(5000), 1u64);
        let b = wheel.insert(Tick(1001), 2);
        assert!(wheel.reschedule(a, Tick(1002)));
        assert!(wheel.reschedule(b, Tick(u64::MAX)));
        assert_eq!(wheel.deadline(a), Some(Tick(1002)));
        assert_eq!(advance_values(&mut wheel, 1001), Vec::<u64>::new());
        // Into the past: due at the next advance, even one to the same tick.
        assert!(wheel.reschedule(b, Tick(3)));
        assert_eq!(wheel.next_deadline(), Some(Tick(1001)));
        assert_eq!(advance_values(&mut wheel, 1001), vec![2]);
        // Same slot: only the deadline changes.
        assert!(wheel.reschedule(a, Tick(1003)));
        assert_eq!(advance_values(&mut wheel, 1002), Vec::<u64>::new());
        assert_eq!(advance_values(&mut wheel, 1003), vec![1]);
    }

    #[test]
    fn advance_backwards_is_a_no_op_and_same_tick_fires_due() {
        let mut wheel = Wheel::new(Tick(500));
        wheel.insert(Tick(400), 1u64);
        wheel.insert(Tick(600), 2);
        assert!(advance_values(&mut wheel, 499).is_empty());
        assert_eq!(wheel.now(), Tick(500));
        assert_eq!(wheel.len(), 2);
        assert_eq!(advance_values(&mut wheel, 500), vec![1]);
        assert_eq!(advance_values(&mut wheel, 600), vec![2]);
    }

    /// A starting tick: zero, small, or close to a level, top-level or
    /// `u64::MAX` boundary.
    fn start_tick() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            0u64..5000,
            (1u32..=LEVELS as u32, 0u64..300)
                .prop_map(|(l, d)| (1u64 << (6 * l)).saturating_sub(150) + d),
            (0u64..70_000).prop_map(|d| u64::MAX - d),
            any::<u64>(),
        ]
    }

    /// A deadline relative to the wheel's tick when the op runs.
    #[derive(Clone, Debug)]
    enum When {
        /// `now - n` (saturating): already due.
        Past(u64),
        /// `now + n`.
        Ahead(u64),
        /// An absolute tick.
        At(u64),
    }

    impl When {
        fn resolve(&self, now: u64) -> u64 {
            match *self {
                When::Past(n) => now.saturating_sub(n),
                When::Ahead(n) => now.saturating_add(n),
                When::At(t) => t,
            }
        }
    }

    fn when() -> impl Strategy<Value = When> {
        prop_oneof![
            (0u64..4).prop_map(When::Past),
            (0u64..130).prop_map(When::Ahead),
            (0u64..5000).prop_map(When::Ahead),
            (0u64..1 << 20).prop_map(When::Ahead),
            (0u64..1 << 50).prop_map(When::Ahead),
            any::<u64>().prop_map(When::At),
        ]
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(When),
        Cancel(usize),
        Reschedule(usize, When),
        /// Advance to `now + n` (saturating).
        Advance(u64),
        /// Advance to `next_deadline()`, as a sleeping shard would.
        Sleep,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => when().prop_map(Op::Insert),
            1 => any::<usize>().prop_map(Op::Cancel),
            1 => (any::<usize>(), when()).prop_map(|(i, w)| Op::Reschedule(i, w)),
            1 => Just(Op::Advance(0)),
            2 => (0u64..3).prop_map(Op::Advance),
            2 => (0u64..130).prop_map(Op::Advance),
            1 => (0u64..5000).prop_map(Op::Advance),
            1 => (0u64..1 << 20).prop_map(Op::Advance),
            1 => (0u64..1 << 50).prop_map(Op::Advance),
            1 => any::<u64>().prop_map(Op::Advance),
            2 => Just(Op::Sleep),
        ]
    }

    /// Checks the wheel against the model after every op.
    fn check_state(wheel: &Wheel<u64>, model: &BTreeMap<u64, u64>, keys: &[TimerKey]) {
        assert_eq!(wheel.len(), model.len());
        for (&id, &deadline) in model {
            assert_eq!(wheel.deadline(keys[id as usize]), Some(Tick(deadline)));
        }
        let now = wheel.now().0;
        match (wheel.next_deadline(), model.values().min()) {
            (None, None) => {}
            (Some(next), Some(&earliest)) => {
                assert!(next.0 >= now, "next_deadline {next:?} before now {now}");
                assert!(
                    next.0 <= earliest.max(now),
                    "next_deadline {next:?} after earliest {earliest}"
                );
            }
            (next, earliest) => panic!("next_deadline {next:?} vs earliest {earliest:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Random ops against a map of id -> deadline: the same entries fire
        /// at every advance (so none early, none late), cancel and
        /// reschedule agree on liveness, and next_deadline never overshoots.
        #[test]
        fn matches_naive_model(start in start_tick(), ops in prop::collection::vec(op(), 1..120)) {
            let mut wheel: Wheel<u64> = Wheel::new(Tick(start));
            let mut model: BTreeMap<u64, u64> = BTreeMap::new();
            let mut keys: Vec<TimerKey> = Vec::new();
            let mut fired = Vec::new();
            for op in ops {
                let now = wheel.now().0;
                match op {
                    Op::Insert(w) => {
                        let id = keys.len() as u64;
                        let deadline = w.resolve(now);
                        keys.push(wheel.insert(Tick(deadline), id));
                        model.insert(id, deadline);
                    }
                    Op::Cancel(i) if !keys.is_empty() => {
                        let id = (i % keys.len()) as u64;
                        let want = model.remove(&id).map(|_| id);
                        prop_assert_eq!(wheel.cancel(keys[id as usize]), want);
                    }
                    Op::Reschedule(i, w) if !keys.is_empty() => {
                        let id = (i % keys.len()) as u64;
                        let deadline = w.resolve(now);
                        let live = model.contains_key(&id);
                        if live {
                            model.insert(id, deadline);
                        }
                        prop_assert_eq!(wheel.reschedule(keys[id as usize], Tick(deadline)), live);
                    }
                    Op::Cancel(_) | Op::Reschedule(..) => {}
                    Op::Advance(_) | Op::Sleep => {
                        let to = match op {
                            Op::Advance(n) => now.saturating_add(n),
                            _ => wheel.next_deadline().map_or(now, |t| t.0),
                        };
                        fired.clear();
                        wheel.advance(Tick(to), &mut fired);
                        let mut got: Vec<u64> = fired.iter().map(|&(_, id)| id).collect();
                        got.sort_unstable();
                        let want: Vec<u64> =
                            model.iter().filter(|&(_, &d)| d <= to).map(|(&id, _)| id).collect();
                        prop_assert_eq!(&got, &want, "advance {} -> {}", now, to);
                        for &(key, id) in &fired {
                            prop_assert_eq!(key, keys[id as usize]);
                            model.remove(&id);
                        }
                        prop_assert_eq!(wheel.now().0, to);
                    }
                }
                check_state(&wheel, &model, &keys);
            }
            fired.clear();
            wheel.advance(Tick(u64::MAX), &mut fired);
            prop_assert_eq!(fired.len(), model.len());
            prop_assert!(wheel.is_empty());
            prop_assert_eq!(wheel.next_deadline(), None);
        }

        /// A shard that sleeps until next_deadline and advances there reaches
        /// the earliest deadline exactly, within LEVELS + 2 wake-ups, and
        /// fires nothing before it.
        #[test]
        fn sleeping_until_next_deadline_converges(
            start in start_tick(),
            deadlines in prop::collection::vec(when(), 1..40),
        ) {
            let mut wheel = Wheel::new(Tick(start));
            let mut all = Vec::new();
            for w in deadlines {
                let d = w.resolve(start);
                all.push(d);
                wheel.insert(Tick(d), d);
            }
            all.sort_unstable();
            let earliest = all[0];
            let mut fired = Vec::new();
            let mut wakeups = 0;
            while fired.is_empty() {
                let next = wheel.next_deadline().expect("entries remain").0;
                prop_assert!(next <= earliest.max(start));
                wheel.advance(Tick(next), &mut fired);
                wakeups += 1;
                prop_assert!(wakeups <= LEVELS + 2, "{} wake-ups", wakeups);
            }
            let now = wheel.now().0;
            prop_assert_eq!(now, earliest.max(start));
            let mut got: Vec<u64> = fired.iter().map(|&(_, d)| d).collect();
            got.sort_unstable();
            let want: Vec<u64> = all.iter().copied().filter(|&d| d <= now).collect();
            prop_assert_eq!(got, want);
        }
    }
}
