//! Criterion benches of ringmq-wheel against two baselines: a `BinaryHeap`
//! with lazy deletion and a `BTreeMap` keyed by (deadline, sequence).
//!
//! For 10k, 100k and 1M armed timers (built once per size, never per
//! iteration) it measures, per operation: insert, cancel (in arming order
//! and in random order), reschedule (random order),
//! advance-by-one-tick with keep-alive style re-arming over a spread of
//! deadlines, and an empty tick (advance by one with nothing due). It also
//! prints memory per timer, computed from capacities and `size_of` and
//! measured with a counting global allocator.
//!
//! Timed regions hold only the operation under test: random deadlines and
//! key orders are precomputed, and the work that restores the timer count
//! (re-inserting what a chunk cancelled, cancelling what it inserted) runs
//! outside the clock. Deadlines are uniform over `SPREAD` ticks ahead
//! (90 000 ticks: a 60 s keep-alive x 1.5 at a 1 ms tick).
//!
//! Run: `CARGO_TARGET_DIR=/work/target-wheel cargo bench --bench wheel`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::hint::black_box;
use std::mem::size_of;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringmq_wheel::{Tick, TimerKey, Wheel};

/// Global allocator that counts live heap bytes, to measure what each
/// structure really allocates (BTreeMap's nodes cannot be counted from
/// outside).
struct Counting;

/// Live bytes allocated through `Counting`.
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards the caller's pointer and layout unchanged to
// `System`, which upholds the `GlobalAlloc` contract; the counter has no
// effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours, forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with this `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Ticks over which deadlines are spread.
const SPREAD: u64 = 90_000;
/// Operations timed per clock reading (and then undone, untimed).
const CHUNK: usize = 1024;
/// Timer counts benchmarked.
const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];

/// splitmix64: a small deterministic generator, enough for bench inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The operations benchmarked, over the three structures. Values are the
/// timer's position in the bench's key table.
trait Timers {
    type Key: Copy;
    const NAME: &'static str;
    fn with_capacity(now: u64, capacity: usize) -> Self;
    fn now(&self) -> u64;
    fn insert(&mut self, deadline: u64, value: u64) -> Self::Key;
    fn cancel(&mut self, key: Self::Key) -> Option<u64>;
    /// Returns the key to use from now on (the wheel's stays the same).
    fn reschedule(&mut self, key: Self::Key, deadline: u64) -> Self::Key;
    fn advance(&mut self, now: u64, fired: &mut Vec<(Self::Key, u64)>);
    /// Bytes computed from capacities and `size_of`, if the structure
    /// allows it.
    fn computed_bytes(&self) -> Option<usize>;
    /// Length and capacity details worth printing next to the memory line.
    fn shape(&self) -> String {
        String::new()
    }
}

impl Timers for Wheel<u64> {
    type Key = TimerKey;
    const NAME: &'static str = "wheel";
    fn with_capacity(now: u64, capacity: usize) -> Self {
        Wheel::with_capacity(Tick(now), capacity)
    }
    fn now(&self) -> u64 {
        Wheel::now(self).0
    }
    fn insert(&mut self, deadline: u64, value: u64) -> TimerKey {
        Wheel::insert(self, Tick(deadline), value)
    }
    fn cancel(&mut self, key: TimerKey) -> Option<u64> {
        Wheel::cancel(self, key)
    }
    fn reschedule(&mut self, key: TimerKey, deadline: u64) -> TimerKey {
        Wheel::reschedule(self, key, Tick(deadline));
        key
    }
    fn advance(&mut self, now: u64, fired: &mut Vec<(TimerKey, u64)>) {
        Wheel::advance(self, Tick(now), fired)
    }
    fn computed_bytes(&self) -> Option<usize> {
        Some(self.memory_bytes())
    }
    fn shape(&self) -> String {
        format!(" (len {}, slab capacity {})", self.len(), self.capacity())
    }
}

/// Baseline: a min-heap of (deadline, slot, generation) with lazy deletion.
/// Cancel bumps the slot's generation and leaves the heap item to be
/// skipped when it surfaces; the heap is compacted when stale items
/// outnumber live ones, so its size stays bounded.
struct HeapTimers {
    now: u64,
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
    slots: Vec<HeapSlot>,
    free: Vec<u32>,
    live: usize,
}

struct HeapSlot {
    generation: u32,
    value: Option<u64>,
}

impl HeapTimers {
    fn compact_if_stale(&mut self) {
        if self.heap.len() > 2 * self.live + 1024 {
            let slots = &self.slots;
            self.heap
                .retain(|Reverse((_, i, g))| slots[*i as usize].generation == *g);
        }
    }

    /// Frees a slot whose key matched, returning its value.
    fn take(&mut self, index: u32) -> Option<u64> {
        let slot = &mut self.slots[index as usize];
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        self.live -= 1;
        Some(value)
    }
}

impl Timers for HeapTimers {
    type Key = (u32, u32);
    const NAME: &'static str = "heap";
    fn with_capacity(now: u64, capacity: usize) -> Self {
        HeapTimers {
            now,
            heap: BinaryHeap::with_capacity(capacity),
            slots: Vec::with_capacity(capacity),
            free: Vec::new(),
            live: 0,
        }
    }
    fn now(&self) -> u64 {
        self.now
    }
    fn insert(&mut self, deadline: u64, value: u64) -> (u32, u32) {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(HeapSlot {
                    generation: 0,
                    value: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.value = Some(value);
        let generation = slot.generation;
        self.heap.push(Reverse((deadline, index, generation)));
        self.live += 1;
        (index, generation)
    }
    fn cancel(&mut self, (index, generation): (u32, u32)) -> Option<u64> {
        if self.slots.get(index as usize)?.generation != generation {
            return None;
        }
        let value = self.take(index);
        self.compact_if_stale();
        value
    }
    fn reschedule(&mut self, (index, generation): (u32, u32), deadline: u64) -> (u32, u32) {
        let slot = &mut self.slots[index as usize];
        if slot.generation != generation || slot.value.is_none() {
            return (index, generation);
        }
        slot.generation = slot.generation.wrapping_add(1);
        let generation = slot.generation;
        self.heap.push(Reverse((deadline, index, generation)));
        self.compact_if_stale();
        (index, generation)
    }
    fn advance(&mut self, now: u64, fired: &mut Vec<((u32, u32), u64)>) {
        if now < self.now {
            return;
        }
        self.now = now;
        while let Some(&Reverse((deadline, index, generation))) = self.heap.peek() {
            if deadline > now {
                break;
            }
            self.heap.pop();
            if self.slots[index as usize].generation == generation {
                if let Some(value) = self.take(index) {
                    fired.push(((index, generation), value));
                }
            }
        }
    }
    fn computed_bytes(&self) -> Option<usize> {
        Some(
            size_of::<Self>()
                + self.heap.capacity() * size_of::<Reverse<(u64, u32, u32)>>()
                + self.slots.capacity() * size_of::<HeapSlot>()
                + self.free.capacity() * size_of::<u32>(),
        )
    }
    fn shape(&self) -> String {
        format!(
            " (live {}, heap items {}, heap capacity {})",
            self.live,
            self.heap.len(),
            self.heap.capacity()
        )
    }
}

/// Baseline: an ordered map from (deadline, sequence) to value.
struct BTreeTimers {
    now: u64,
    map: BTreeMap<(u64, u64), u64>,
    seq: u64,
}

impl Timers for BTreeTimers {
    type Key = (u64, u64);
    const NAME: &'static str = "btree";
    fn with_capacity(now: u64, _capacity: usize) -> Self {
        BTreeTimers {
            now,
            map: BTreeMap::new(),
            seq: 0,
        }
    }
    fn now(&self) -> u64 {
        self.now
    }
    fn insert(&mut self, deadline: u64, value: u64) -> (u64, u64) {
        self.seq += 1;
        let key = (deadline, self.seq);
        self.map.insert(key, value);
        key
    }
    fn cancel(&mut self, key: (u64, u64)) -> Option<u64> {
        self.map.remove(&key)
    }
    fn reschedule(&mut self, key: (u64, u64), deadline: u64) -> (u64, u64) {
        match self.map.remove(&key) {
            Some(value) => {
                let key = (deadline, key.1);
                self.map.insert(key, value);
                key
            }
            None => key,
        }
    }
    fn advance(&mut self, now: u64, fired: &mut Vec<((u64, u64), u64)>) {
        if now < self.now {
            return;
        }
        self.now = now;
        while let Some(entry) = self.map.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = *entry.key();
            fired.push((key, entry.remove()));
        }
    }
    fn computed_bytes(&self) -> Option<usize> {
        None
    }
}

/// A structure holding `n` timers plus the bench's view of it.
struct Loaded<W: Timers> {
    timers: W,
    /// `keys[i]` is the live key of the timer whose value is `i`.
    keys: Vec<W::Key>,
    /// Random deadline offsets in `1..=SPREAD`, used cyclically.
    offsets: Vec<u64>,
    /// A random permutation of `0..n`, walked cyclically to pick victims.
    order: Vec<u32>,
    cursor: usize,
    /// Position in `offsets`.
    offset_cursor: usize,
    /// Next victim for in-order cancels.
    seq_cursor: usize,
    /// Bytes the counting allocator saw the build allocate.
    allocated: usize,
}

impl<W: Timers> Loaded<W> {
    fn build(n: usize, now: u64, far: bool) -> Self {
        let mut rng = Rng(0x5EED ^ n as u64);
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let mut timers = W::with_capacity(now, n);
        let keys: Vec<W::Key> = (0..n as u64)
            .map(|i| {
                let deadline = if far {
                    // Far future: never due during an empty-tick bench.
                    now + (1 << 32) + rng.below(1 << 32)
                } else {
                    now + 1 + rng.below(SPREAD)
                };
                timers.insert(deadline, i)
            })
            .collect();
        let allocated =
            LIVE_BYTES.load(Ordering::Relaxed) - before - keys.capacity() * size_of::<W::Key>();
        let offsets = (0..4096).map(|_| 1 + rng.below(SPREAD)).collect();
        let mut order: Vec<u32> = (0..n as u32).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        Loaded {
            timers,
            keys,
            offsets,
            order,
            cursor: 0,
            offset_cursor: 0,
            seq_cursor: 0,
            allocated,
        }
    }

    /// Next random deadline offset.
    fn next_offset(&mut self) -> u64 {
        self.offset_cursor = (self.offset_cursor + 1) % self.offsets.len();
        self.offsets[self.offset_cursor]
    }

    /// Next `k` victims in arming order (k <= n).
    fn victims_in_order(&mut self, k: usize, out: &mut Vec<u32>) {
        out.clear();
        for _ in 0..k {
            out.push(self.seq_cursor as u32);
            self.seq_cursor = (self.seq_cursor + 1) % self.keys.len();
        }
    }

    /// Next `k` distinct random victims (k <= n).
    fn victims(&mut self, k: usize, out: &mut Vec<u32>) {
        out.clear();
        for _ in 0..k {
            out.push(self.order[self.cursor]);
            self.cursor = (self.cursor + 1) % self.order.len();
        }
    }
}

/// Prints bytes per timer (the u64 value's 8 B included): computed from
/// capacities, and, right after the build, as counted by the allocator.
fn print_memory<W: Timers>(loaded: &Loaded<W>, n: usize, after_build: bool) {
    let computed = loaded
        .timers
        .computed_bytes()
        .map_or("-".to_string(), |b| format!("{:.1}", b as f64 / n as f64));
    if after_build {
        println!(
            "memory/{}/{n} after build: computed {computed} B/timer, allocated {:.1} B/timer",
            W::NAME,
            loaded.allocated as f64 / n as f64,
        );
    } else {
        println!(
            "memory/{}/{n} after churn: computed {computed} B/timer{}",
            W::NAME,
            loaded.timers.shape()
        );
    }
}

fn bench_structure<W: Timers>(c: &mut Criterion, n: usize) {
    let mut loaded: Loaded<W> = Loaded::build(n, 1_000, false);
    print_memory(&loaded, n, true);
    if W::NAME == "wheel" {
        println!(
            "memory/wheel: entry {} B = u64 value 8 B + {} B overhead",
            Wheel::<u64>::entry_bytes(),
            Wheel::<u64>::entry_bytes() - 8
        );
    }
    let mut victims = Vec::with_capacity(CHUNK);
    let chunk = CHUNK.min(n / 4);

    c.bench_with_input(
        BenchmarkId::new(format!("insert/{}", W::NAME), n),
        &n,
        |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters as usize;
                let mut inserted = Vec::with_capacity(chunk);
                while left > 0 {
                    let k = left.min(chunk);
                    let now = loaded.timers.now();
                    let start = Instant::now();
                    for _ in 0..k {
                        let deadline = now + loaded.next_offset();
                        inserted.push(loaded.timers.insert(deadline, u64::MAX));
                    }
                    total += start.elapsed();
                    for key in inserted.drain(..) {
                        black_box(loaded.timers.cancel(key));
                    }
                    left -= k;
                }
                total
            })
        },
    );

    // Keys are gathered into a small array before the clock starts, so the
    // timed loop pays for the structure's memory traffic, not the key table's.
    // `cancel_seq` cancels in arming order (slab order, cache-friendly);
    // `cancel` in random order (a cache miss per timer at 1M).
    let mut chunk_keys: Vec<W::Key> = Vec::with_capacity(chunk);
    c.bench_with_input(
        BenchmarkId::new(format!("cancel_seq/{}", W::NAME), n),
        &n,
        |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let k = left.min(chunk);
                    loaded.victims_in_order(k, &mut victims);
                    chunk_keys.clear();
                    chunk_keys.extend(victims.iter().map(|&v| loaded.keys[v as usize]));
                    let start = Instant::now();
                    for &key in &chunk_keys {
                        black_box(loaded.timers.cancel(key));
                    }
                    total += start.elapsed();
                    let now = loaded.timers.now();
                    for &v in &victims {
                        let deadline = now + loaded.next_offset();
                        loaded.keys[v as usize] = loaded.timers.insert(deadline, u64::from(v));
                    }
                    left -= k;
                }
                total
            })
        },
    );

    c.bench_with_input(
        BenchmarkId::new(format!("cancel/{}", W::NAME), n),
        &n,
        |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let k = left.min(chunk);
                    loaded.victims(k, &mut victims);
                    chunk_keys.clear();
                    chunk_keys.extend(victims.iter().map(|&v| loaded.keys[v as usize]));
                    let start = Instant::now();
                    for &key in &chunk_keys {
                        black_box(loaded.timers.cancel(key));
                    }
                    total += start.elapsed();
                    let now = loaded.timers.now();
                    for &v in &victims {
                        let deadline = now + loaded.next_offset();
                        loaded.keys[v as usize] = loaded.timers.insert(deadline, u64::from(v));
                    }
                    left -= k;
                }
                total
            })
        },
    );

    let mut deadlines: Vec<u64> = Vec::with_capacity(chunk);
    c.bench_with_input(
        BenchmarkId::new(format!("reschedule/{}", W::NAME), n),
        &n,
        |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let k = left.min(chunk);
                    loaded.victims(k, &mut victims);
                    chunk_keys.clear();
                    chunk_keys.extend(victims.iter().map(|&v| loaded.keys[v as usize]));
                    let now = loaded.timers.now();
                    deadlines.clear();
                    for _ in 0..k {
                        let deadline = now + loaded.next_offset();
                        deadlines.push(deadline);
                    }
                    let start = Instant::now();
                    for (key, &deadline) in chunk_keys.iter_mut().zip(&deadlines) {
                        *key = loaded.timers.reschedule(*key, deadline);
                    }
                    total += start.elapsed();
                    for (&v, &key) in victims.iter().zip(&chunk_keys) {
                        loaded.keys[v as usize] = key;
                    }
                    left -= k;
                }
                total
            })
        },
    );

    // One tick forward, re-arming what fired at now + SPREAD (as keep-alive
    // does), so the timer count and spread stay constant.
    let mut fired = Vec::with_capacity(4096);
    c.bench_with_input(
        BenchmarkId::new(format!("advance_rearm/{}", W::NAME), n),
        &n,
        |b, _| {
            b.iter(|| {
                let now = loaded.timers.now() + 1;
                fired.clear();
                loaded.timers.advance(now, &mut fired);
                for &(_, v) in &fired {
                    loaded.keys[v as usize] = loaded.timers.insert(now + SPREAD, v);
                }
            })
        },
    );
    print_memory(&loaded, n, false);
    drop(loaded);

    let mut idle: Loaded<W> = Loaded::build(n, 1_000, true);
    let mut none = Vec::new();
    c.bench_with_input(
        BenchmarkId::new(format!("empty_tick/{}", W::NAME), n),
        &n,
        |b, _| {
            b.iter(|| {
                let now = idle.timers.now() + 1;
                idle.timers.advance(black_box(now), &mut none);
            })
        },
    );
    assert!(none.is_empty(), "far-future timers fired");
}

fn benches(c: &mut Criterion) {
    for n in SIZES {
        println!(
            "--- {n} timers: advance_rearm fires {:.2} timers per tick on average",
            n as f64 / SPREAD as f64
        );
        bench_structure::<Wheel<u64>>(c, n);
        bench_structure::<HeapTimers>(c, n);
        bench_structure::<BTreeTimers>(c, n);
    }
}

criterion_group! {
    name = wheel;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800));
    targets = benches
}
criterion_main!(wheel);
