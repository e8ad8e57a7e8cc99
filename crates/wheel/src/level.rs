//! Level and slot arithmetic of the hierarchical wheel, as pure functions.
//!
//! Owns the mapping from (`now`, `deadline`) to the list an entry is filed in,
//! and from a level slot back to the first tick it covers. It holds no state
//! and never allocates.
//!
//! Ticks are split into 6-bit digits. Level `L` (0-based) has 64 slots, one
//! per value of digit `L`, so a level-`L` slot covers `64^L` ticks and the
//! whole level covers `64^(L+1)`. An entry is filed at the level of the most
//! significant digit in which its deadline differs from `now`, in the slot
//! named by the deadline's digit there. Hence, for every filed entry:
//!
//! - the deadline agrees with `now` on every digit above its level, and its
//!   digit at its level is strictly greater than `now`'s, so no level ever
//!   wraps and slot `s` of level `L` starts at a tick strictly after `now`;
//! - every occupied slot of level `L` starts before every occupied slot of
//!   level `L + 1`, so the lowest non-empty level holds the earliest slot.
//!
//! A deadline that differs from `now` above the top level goes to the
//! overflow list; one at or before `now` goes to the due list.

/// Bits per level digit.
pub(crate) const SLOT_BITS: u32 = 6;
/// Slots per level.
pub(crate) const SLOTS: usize = 1 << SLOT_BITS;
/// Number of levels. `64^8 = 2^48` ticks: a 2^32 s session expiry at a 1 ms
/// tick (about 2^42 ticks) fits with room to spare.
pub const LEVELS: usize = 8;
/// Ticks covered by the whole wheel (all levels), a power of two.
pub(crate) const WHEEL_SPAN_BITS: u32 = SLOT_BITS * LEVELS as u32;
/// List index of the overflow list (deadlines beyond the top level).
pub(crate) const LOC_OVERFLOW: u16 = (LEVELS * SLOTS) as u16;
/// List index of the due list (deadlines at or before `now`).
pub(crate) const LOC_DUE: u16 = LOC_OVERFLOW + 1;
/// Number of lists: every level slot, then overflow, then due.
pub(crate) const LOC_COUNT: usize = LOC_DUE as usize + 1;

/// Which digit (level) is the most significant one set in `x`, capped at
/// `LEVELS` (meaning "above the top level"). `x` must be non-zero.
#[inline]
pub(crate) fn level_of_diff(x: u64) -> usize {
    debug_assert!(x != 0);
    let bit = 63 - x.leading_zeros();
    ((bit / SLOT_BITS) as usize).min(LEVELS)
}

/// Digit `level` of `tick` (the slot index it names at that level).
#[inline]
pub(crate) fn digit(tick: u64, level: usize) -> usize {
    debug_assert!(level < LEVELS);
    ((tick >> (SLOT_BITS * level as u32)) & (SLOTS as u64 - 1)) as usize
}

/// The list an entry with `deadline` belongs in when the wheel is at `now`:
/// `level * 64 + slot`, `LOC_OVERFLOW` or `LOC_DUE`.
#[inline]
pub(crate) fn locate(now: u64, deadline: u64) -> u16 {
    if deadline <= now {
        return LOC_DUE;
    }
    let level = level_of_diff(now ^ deadline);
    if level >= LEVELS {
        return LOC_OVERFLOW;
    }
    (level * SLOTS + digit(deadline, level)) as u16
}

/// First tick covered by `slot` of `level` while the wheel is at `now`.
/// For an occupied slot this is strictly after `now` and at or before every
/// deadline filed there.
#[inline]
pub(crate) fn slot_start(now: u64, level: usize, slot: usize) -> u64 {
    debug_assert!(level < LEVELS && slot < SLOTS);
    let shift = SLOT_BITS * level as u32;
    // Bits above this level come from `now`; `shift + 6 <= 48 < 64`.
    let above = now & !((1u64 << (shift + SLOT_BITS)) - 1);
    above | ((slot as u64) << shift)
}

/// First tick of the whole-wheel span (`2^48`-tick block) holding `tick`.
/// For an overflow entry filed at `now` this is strictly after `now` and at
/// or before its deadline: the earliest tick it can need attention.
#[inline]
pub(crate) fn wheel_span_start(tick: u64) -> u64 {
    tick & !((1u64 << WHEEL_SPAN_BITS) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference placement by division, independent of the xor trick: the
    /// lowest level whose current span (the `64^(L+1)` block holding `now`)
    /// also holds `deadline`.
    fn naive_locate(now: u64, deadline: u64) -> u16 {
        if deadline <= now {
            return LOC_DUE;
        }
        for level in 0..LEVELS {
            let span = 1u128 << (SLOT_BITS as usize * (level + 1));
            let block_end = (now as u128 / span + 1) * span;
            if (deadline as u128) < block_end {
                let slot_len = 1u128 << (SLOT_BITS as usize * level);
                let slot = (deadline as u128 / slot_len) % SLOTS as u128;
                return (level * SLOTS) as u16 + slot as u16;
            }
        }
        LOC_OVERFLOW
    }

    /// Checks `locate` against the reference and the filing invariants.
    fn check(now: u64, deadline: u64) {
        let loc = locate(now, deadline);
        assert_eq!(
            loc,
            naive_locate(now, deadline),
            "now={now} deadline={deadline}"
        );
        if loc >= LOC_OVERFLOW {
            if loc == LOC_OVERFLOW {
                let start = wheel_span_start(deadline);
                assert!(
                    start > now && start <= deadline,
                    "now={now} deadline={deadline}"
                );
            }
            return;
        }
        let level = loc as usize / SLOTS;
        let slot = loc as usize % SLOTS;
        let start = slot_start(now, level, slot);
        let len = 1u128 << (SLOT_BITS as usize * level);
        assert!(
            start > now,
            "slot starts after now: now={now} deadline={deadline}"
        );
        assert!(start <= deadline, "now={now} deadline={deadline}");
        assert!(
            (deadline as u128) < start as u128 + len,
            "now={now} deadline={deadline}"
        );
        assert!(
            slot > digit(now, level),
            "no wrap: now={now} deadline={deadline}"
        );
        if level == 0 {
            assert_eq!(start, deadline);
        }
    }

    #[test]
    fn every_pair_in_the_first_two_levels() {
        // Every now and deadline in [0, 64^2 + 130): covers slot 63 -> 0 at
        // level 0 and level 1, and the level 0 -> 1 -> 2 crossings.
        let end = (SLOTS * SLOTS + 130) as u64;
        for now in 0..end {
            for deadline in now.saturating_sub(2)..end {
                check(now, deadline);
            }
        }
    }

    #[test]
    fn every_level_boundary() {
        // Around each multiple of 64^L (L = 1..=LEVELS, the last being the
        // overflow boundary) and around a few multiples of it, for now and
        // deadline on both sides, including u64::MAX.
        let mut points = vec![0u64, 1, u64::MAX - 1, u64::MAX];
        for level in 1..=LEVELS as u32 {
            let unit = 1u64 << (SLOT_BITS * level);
            for k in [1u64, 2, 63, 64, 65, 1000] {
                if let Some(b) = unit.checked_mul(k) {
                    for d in 0..3u64 {
                        points.push(b - 1 - d);
                        points.push(b + d);
                    }
                }
            }
            points.push(u64::MAX - unit);
            points.push(u64::MAX - unit + 1);
        }
        for &now in &points {
            for &deadline in &points {
                check(now, deadline);
            }
        }
    }

    #[test]
    fn slot_63_wraps_to_a_higher_level() {
        // now in slot 62 of level 0: 63 is level 0, 64 (next block) level 1.
        assert_eq!(locate(62, 63), 63);
        assert_eq!(locate(62, 64), SLOTS as u16 + 1);
        // now at 63: 64 starts a new level-0 block, so it goes to level 1
        // slot 1 and fires when that slot cascades at 64.
        assert_eq!(locate(63, 64), SLOTS as u16 + 1);
        assert_eq!(slot_start(63, 1, 1), 64);
        // now at 64: 127 stays in level 0, 128 is level 1 slot 2.
        assert_eq!(locate(64, 127), 63);
        assert_eq!(locate(64, 128), SLOTS as u16 + 2);
    }

    #[test]
    fn top_level_and_overflow() {
        let top = (LEVELS - 1) * SLOTS;
        let span = 1u64 << WHEEL_SPAN_BITS;
        // Last tick of the wheel span from 0 is in the top level's slot 63.
        assert_eq!(locate(0, span - 1), (top + 63) as u16);
        assert_eq!(locate(0, span), LOC_OVERFLOW);
        assert_eq!(locate(span - 1, span), LOC_OVERFLOW);
        assert_eq!(locate(span, span + 1), 1);
        assert_eq!(locate(0, u64::MAX), LOC_OVERFLOW);
        assert_eq!(wheel_span_start(span - 1), 0);
        assert_eq!(wheel_span_start(span), span);
        assert_eq!(wheel_span_start(u64::MAX), u64::MAX - span + 1);
        // In the last span nothing can overflow.
        assert_eq!(locate(u64::MAX - span + 1, u64::MAX), (top + 63) as u16);
    }

    #[test]
    fn due_and_digits() {
        assert_eq!(locate(5, 5), LOC_DUE);
        assert_eq!(locate(5, 0), LOC_DUE);
        assert_eq!(locate(u64::MAX, u64::MAX), LOC_DUE);
        assert_eq!(level_of_diff(1), 0);
        assert_eq!(level_of_diff(63), 0);
        assert_eq!(level_of_diff(64), 1);
        assert_eq!(level_of_diff(1 << 47), LEVELS - 1);
        assert_eq!(level_of_diff(1 << 48), LEVELS);
        assert_eq!(level_of_diff(u64::MAX), LEVELS);
        assert_eq!(digit(0xFFF, 0), 63);
        assert_eq!(digit(0xFFF, 1), 63);
        assert_eq!(digit(0x1000, 2), 1);
    }
}
