//! Mutations of a client's byte stream, frame by frame, and the random
//! read sizes a socket would hand the server.
//!
//! A stream is a list of frames (each meant to be one packet). Mutations
//! work on the frames (flip bits, set bytes, truncate, extend, splice in
//! bytes of another frame, corrupt the remaining length or make it
//! non-minimal, duplicate, reorder, drop, insert garbage) and some repair
//! the remaining length afterwards, so that a damaged body still arrives
//! as a well-framed packet and reaches the body decoders instead of
//! stopping at the fixed header.

use super::rng::Rng;

/// Bytes worth writing over a random one.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x02, 0x03, 0x7F, 0x80, 0xFF, 0x10, 0x23, 0x26, 0x0B,
];

/// The remaining length of `frame` and where its body starts, if its fixed
/// header is well-formed.
fn header(frame: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for i in 0..4 {
        let b = *frame.get(1 + i)?;
        value |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, 2 + i));
        }
    }
    None
}

/// A variable byte integer, minimal (`extra` = 0) or padded with `extra`
/// continuation bytes (non-minimal, MQTT-1.5.5-1; 5+ bytes is malformed).
fn varint(mut value: usize, extra: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 || extra > 0 {
            b |= 0x80;
        }
        out.push(b);
        if value == 0 {
            break;
        }
    }
    for i in 0..extra {
        out.push(if i + 1 == extra { 0x00 } else { 0x80 });
    }
    out
}

/// `frame` with its remaining length rewritten to match its body.
fn reframe(frame: &[u8]) -> Vec<u8> {
    let Some((_, start)) = header(frame) else {
        return frame.to_vec();
    };
    let body = &frame[start..];
    let mut out = vec![frame[0]];
    out.extend(varint(body.len(), 0));
    out.extend_from_slice(body);
    out
}

/// One mutation applied to `frames` in place.
fn mutate_once(rng: &mut Rng, frames: &mut Vec<Vec<u8>>) {
    if frames.is_empty() {
        frames.push(rng.bytes_up_to(1, 8));
        return;
    }
    let i = rng.below(frames.len() as u64) as usize;
    // Skip the CONNECT most of the time: a stream dead at its first byte
    // tests little past the first gate.
    let i = if i == 0 && frames.len() > 1 && rng.chance(3, 4) {
        rng.size(1, frames.len() - 1)
    } else {
        i
    };
    let fix = rng.coin();
    match rng.below(12) {
        0 | 1 => {
            let f = &mut frames[i];
            if !f.is_empty() {
                for _ in 0..rng.size(1, 3) {
                    let at = rng.below(f.len() as u64) as usize;
                    f[at] ^= 1 << rng.below(8);
                }
            }
        }
        2 => {
            let f = &mut frames[i];
            if !f.is_empty() {
                let at = rng.below(f.len() as u64) as usize;
                f[at] = rng.pick(INTERESTING);
            }
        }
        3 => {
            // Truncate; repaired or not.
            let f = &mut frames[i];
            let keep = rng.size(0, f.len().saturating_sub(1));
            f.truncate(keep);
            if fix {
                *f = reframe(f);
            }
        }
        4 => {
            // Trailing bytes; repaired or not.
            let extra = rng.bytes_up_to(1, 6);
            frames[i].extend(extra);
            if fix {
                frames[i] = reframe(&frames[i]);
            }
        }
        5 => {
            // Splice bytes of another frame (or random ones) into this one.
            let j = rng.below(frames.len() as u64) as usize;
            let donor = frames[j].clone();
            let piece: Vec<u8> = if donor.is_empty() || rng.chance(1, 4) {
                rng.bytes_up_to(1, 8)
            } else {
                let a = rng.below(donor.len() as u64) as usize;
                let b = rng.size(a, donor.len());
                donor[a..b].to_vec()
            };
            let f = &mut frames[i];
            let at = rng.size(1.min(f.len()), f.len());
            f.splice(at..at, piece);
            if fix {
                *f = reframe(f);
            }
        }
        6 => {
            // Corrupt the remaining length.
            let f = &frames[i];
            if let Some((len, start)) = header(f) {
                let body = f[start..].to_vec();
                let new_len = match rng.below(5) {
                    0 => len + rng.size(1, 4),
                    1 => len.saturating_sub(rng.size(1, 4)),
                    2 => rng.size(0, 268_435_455),
                    _ => len,
                };
                let extra = match rng.below(4) {
                    0 => 1,
                    1 => rng.size(2, 4),
                    _ => 0,
                };
                let mut out = vec![f[0]];
                out.extend(varint(new_len, extra));
                out.extend(body);
                frames[i] = out;
            }
        }
        7 => {
            let copy = frames[i].clone();
            let at = rng.size(i, frames.len());
            frames.insert(at, copy);
        }
        8 => {
            let j = rng.below(frames.len() as u64) as usize;
            frames.swap(i, j);
        }
        9 => {
            frames.remove(i);
        }
        10 => {
            // A random frame, well-framed or not.
            let first = if rng.coin() {
                rng.byte()
            } else {
                (rng.range(1, 15) as u8) << 4 | rng.pick(&[0, 0, 2, 8, 0xA])
            };
            let body = rng.bytes_up_to(0, 12);
            let mut f = vec![first];
            f.extend(varint(body.len(), 0));
            f.extend(body);
            if !fix {
                f.truncate(rng.size(1, f.len()));
            }
            frames.insert(i, f);
        }
        _ => {
            // Change the type nibble or the flags of the first byte.
            let f = &mut frames[i];
            if let Some(b) = f.first_mut() {
                *b = if rng.coin() {
                    (*b & 0x0F) | ((rng.below(16) as u8) << 4)
                } else {
                    (*b & 0xF0) | rng.below(16) as u8
                };
            }
        }
    }
}

/// Applies 1 to 4 mutations.
pub fn mutate(rng: &mut Rng, frames: &mut Vec<Vec<u8>>) {
    for _ in 0..rng.size(1, 4) {
        mutate_once(rng, frames);
    }
}

/// How many bytes the next read hands over, out of `left`.
pub fn read_size(rng: &mut Rng, left: usize) -> usize {
    let n = match rng.below(8) {
        0 => 1,
        1 => rng.size(1, 3),
        2 | 3 => rng.size(1, 16),
        4 => rng.size(1, 128),
        _ => left,
    };
    n.clamp(1.min(left), left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_reframing() {
        assert_eq!(varint(0, 0), [0x00]);
        assert_eq!(varint(127, 0), [0x7F]);
        assert_eq!(varint(128, 0), [0x80, 0x01]);
        assert_eq!(varint(0, 1), [0x80, 0x00]);
        assert_eq!(varint(5, 2), [0x85, 0x80, 0x00]);
        assert_eq!(header(&[0x30, 0x80, 0x01]), Some((128, 3)));
        assert_eq!(header(&[0x30, 0x80, 0x80, 0x80, 0x80]), None);
        assert_eq!(reframe(&[0xC0, 0x05, 1, 2]), [0xC0, 0x02, 1, 2]);
    }
}
