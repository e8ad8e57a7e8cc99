//! ringmq-wheel: a hierarchical timing wheel over integer ticks.
//!
//! A shard files every connection deadline here (CONNECT timeout,
//! keep-alive, will delay, session expiry) and asks [`Wheel::next_deadline`]
//! how long it may sleep. The crate knows no clock: time is a [`Tick`] the
//! caller derives from its own monotonic clock, and deadlines should be
//! rounded up to a tick so that nothing expires early.
//!
//! Guarantees: an entry never fires before its deadline, and it fires at the
//! first [`Wheel::advance`] whose `now` reaches its deadline, however far that
//! call jumps. Insert, cancel and reschedule are O(1) and allocate nothing
//! once the slab has grown; a tick with nothing due costs a few bitmap
//! operations. The crate has no dependencies and no `unsafe` code.
//!
//! Module map: `level` holds the digit, slot and level arithmetic; `wheel`
//! holds the slab, the slot lists and the public [`Wheel`].
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod level;
mod wheel;

pub use level::LEVELS;
pub use wheel::Wheel;

/// A point in time, in ticks of the caller's choosing (for example 1 ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tick(pub u64);

impl Tick {
    /// `self + ticks`, saturating at `u64::MAX` (a deadline that far away
    /// simply never fires).
    #[must_use]
    pub const fn saturating_add(self, ticks: u64) -> Tick {
        Tick(self.0.saturating_add(ticks))
    }
}

/// Handle to one armed timer, returned by [`Wheel::insert`].
///
/// It names a slab slot and that slot's generation at insert time; the
/// generation changes whenever the entry fires or is cancelled, so a stale
/// key never touches the slot's next occupant (until the 32-bit generation
/// of that one slot wraps, after 2^32 reuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerKey {
    /// Slab index + 1 (never 0, so `Option<TimerKey>` is 8 bytes).
    index: std::num::NonZeroU32,
    generation: u32,
}

impl TimerKey {
    pub(crate) fn new(index: u32, generation: u32) -> TimerKey {
        let index =
            std::num::NonZeroU32::new(index.wrapping_add(1)).expect("slab index < u32::MAX");
        TimerKey { index, generation }
    }

    /// The slab index.
    pub(crate) fn slot(self) -> u32 {
        self.index.get() - 1
    }
}
