//! Harness: store-compare bench <log|log-direct|fjall> <never|always> <batch> <dir> <secs>
//!          store-compare write <log|log-direct|fjall> <dir> <n>     (batch 128, fsync never)
//!          store-compare recover <log|log-direct|fjall> <dir> [cold]
//!          store-compare flush <dir>                                 (fjall: flush memtable to SST)
mod fj;
mod log;
mod record;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn threads() -> usize { std::fs::read_dir("/proc/self/task").unwrap().count() }

fn thread_names() -> String {
    // name, plus voluntary context switches (for io-wq workers: ~ one per punted request)
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/task").unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = std::fs::read_to_string(p.join("comm")).unwrap().trim().to_string();
            let st = std::fs::read_to_string(p.join("status")).unwrap();
            let cs = st.lines().find(|l| l.starts_with("voluntary_ctxt_switches")).unwrap().split_whitespace().nth(1).unwrap().to_string();
            format!("{name}(vcs={cs})")
        })
        .collect();
    v.sort();
    v.join(",")
}

enum Store { Log(log::Log), Fj(fj::Fj) }
impl Store {
    fn open(design: &str, dir: &Path, fsync: bool) -> Store {
        std::fs::create_dir_all(dir).unwrap();
        match design {
            "log" => Store::Log(log::Log::open(&dir.join("shard.log"), fsync, false, false, false, false).unwrap()),
            "log-direct" => Store::Log(log::Log::open(&dir.join("shard.log"), fsync, true, false, false, false).unwrap()),
            "log-falloc" => Store::Log(log::Log::open(&dir.join("shard.log"), fsync, false, true, false, false).unwrap()),
            "log-direct-falloc" => Store::Log(log::Log::open(&dir.join("shard.log"), fsync, true, true, false, false).unwrap()),
            "log-prezero" => Store::Log(log::Log::open(&dir.join("shard.log"), fsync, false, false, false, true).unwrap()),
            "log-direct-prezero" => Store::Log(log::Log::open(&dir.join("shard.log"), fsync, true, false, false, true).unwrap()),
            "log-pwrite" => Store::Log(log::Log::open(&dir.join("shard.log"), fsync, false, false, true, false).unwrap()),
            "fjall" => Store::Fj(fj::Fj::open(dir, fsync).unwrap()),
            d => panic!("unknown design {d}"),
        }
    }
    fn push(&mut self, b: &[u8]) { match self { Store::Log(l) => l.push(b), Store::Fj(f) => f.push(b).unwrap() } }
    fn commit(&mut self) { match self { Store::Log(l) => l.commit().unwrap(), Store::Fj(f) => f.commit().unwrap() } }
}

fn dir_size(p: &Path) -> u64 {
    let mut t = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        t += if m.is_dir() { dir_size(&e.path()) } else { m.len() };
    }
    t
}

/// posix_fadvise(DONTNEED) on every file: evicts only these files from the page cache.
fn evict(p: &Path) {
    unsafe extern "C" { fn posix_fadvise(fd: i32, off: i64, len: i64, advice: i32) -> i32; }
    use std::os::unix::io::AsRawFd;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.metadata().unwrap().is_dir() { evict(&e.path()); continue; }
        let f = std::fs::File::open(e.path()).unwrap();
        f.sync_all().unwrap();
        unsafe { posix_fadvise(f.as_raw_fd(), 0, 0, 4 /* POSIX_FADV_DONTNEED */) };
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    match a[1].as_str() {
        "bench" => {
            let (design, fsync, batch, dir, secs) = (a[2].as_str(), a[3] == "always",
                a[4].parse::<usize>().unwrap(), PathBuf::from(&a[5]), a[6].parse::<f64>().unwrap());
            let _ = std::fs::remove_dir_all(&dir);
            let t0 = threads();
            let mut s = Store::open(design, &dir, fsync);
            let t1 = threads();
            let mut g = record::Gen::new();
            let mut rec = Vec::with_capacity(128);
            let mut lat: Vec<u32> = Vec::new();
            let (start, dur) = (Instant::now(), Duration::from_secs_f64(secs));
            while start.elapsed() < dur {
                let b0 = Instant::now();
                for _ in 0..batch { g.record(&mut rec); s.push(&rec); }
                s.commit();
                lat.push(b0.elapsed().as_nanos() as u32);
            }
            let el = start.elapsed().as_secs_f64();
            let t2 = threads();
            let names = thread_names();
            lat.sort_unstable();
            let pct = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
            println!("design={design} mode={} batch={batch} recs_per_s={:.0} batches_per_s={:.0} p50_us={:.1} p99_us={:.1} \
                      threads_before={t0} after_open={t1} after_run={t2} rec_bytes={} names={names}",
                a[3], (lat.len() * batch) as f64 / el, lat.len() as f64 / el, pct(0.5), pct(0.99), rec.len());
            drop(s);
            let _ = std::fs::remove_dir_all(&dir);
        }
        "write" => {
            let (design, dir, n) = (a[2].as_str(), PathBuf::from(&a[3]), a[4].parse::<usize>().unwrap());
            let _ = std::fs::remove_dir_all(&dir);
            let mut s = Store::open(design, &dir, false);
            let mut g = record::Gen::new();
            let mut rec = Vec::new();
            let t = Instant::now();
            for i in 0..n { g.record(&mut rec); s.push(&rec); if i % 128 == 127 || i == n - 1 { s.commit(); } }
            let el = t.elapsed().as_secs_f64();
            drop(s); // fjall: drop persists the journal (SyncAll)
            let sz = dir_size(&dir);
            println!("write design={design} n={n} secs={el:.3} disk_bytes={sz} bytes_per_rec={:.1}", sz as f64 / n as f64);
        }
        "flush" => {
            let dir = PathBuf::from(&a[2]);
            let f = fj::Fj::open(&dir, false).unwrap();
            f.ks.rotate_memtable_and_wait().unwrap();
            drop(f);
            println!("flush disk_bytes={}", dir_size(&dir));
        }
        "recover" => {
            let (design, dir) = (a[2].as_str(), PathBuf::from(&a[3]));
            let cold = a.get(4).map(|s| s == "cold").unwrap_or(false);
            if cold { evict(&dir); }
            let mut sum = 0u64; // touch every body so nothing is optimized away
            let t0 = threads();
            let t = Instant::now();
            let n = match design {
                d if d.starts_with("log") => log::recover(&dir.join("shard.log"), |b| sum += b[b.len() - 1] as u64).unwrap().0,
                "fjall" => fj::recover(&dir, |b| sum += b[b.len() - 1] as u64).unwrap(),
                d => panic!("unknown design {d}"),
            };
            let el = t.elapsed().as_secs_f64();
            let sz = dir_size(&dir);
            println!("recover design={design} cold={cold} n={n} secs={el:.3} disk_bytes={sz} bytes_per_rec={:.1} threads_before={t0} sum={sum}",
                     sz as f64 / n.max(1) as f64);
        }
        c => panic!("unknown command {c}"),
    }
}
