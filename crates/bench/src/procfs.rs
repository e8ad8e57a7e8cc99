//! What the tool reads about processes and the machine: CPU time of a
//! process from `/proc/PID/stat`, resident memory from `/proc/PID/status`,
//! the tool's own CPU from `getrusage`, the open-files limit, the CPU model
//! and the monotonic clock shared by every thread (and every process).
//!
//! Owns: the parsers (pure, tested on literal text) and thin libc wrappers.
//! Never panics on odd /proc contents: a parse failure is `None`.

use std::time::Duration;

/// Nanoseconds of `CLOCK_MONOTONIC`: the time base of every measurement and
/// of the payload stamp. System-wide, so comparable across processes.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own; CLOCK_MONOTONIC
    // always exists on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time (user + system) of a process, from the text of
/// `/proc/PID/stat`, in clock ticks.
///
/// The second field (the command name) is in parentheses and may contain
/// spaces or parentheses itself, so fields are counted after the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After the comm come field 3 (state) ... field 14 utime, 15 stime.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` of `/proc/PID/status` text, in bytes.
pub fn parse_status_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_ascii_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    let scale = match parts.next() {
        Some("kB") | None => 1024,
        Some("mB") => 1024 * 1024,
        Some(_) => return None,
    };
    Some(value * scale)
}

/// The first `model name` of `/proc/cpuinfo` text.
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// Clock ticks per second of /proc CPU times.
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as u64
    } else {
        100
    }
}

/// CPU time of process `pid` so far; `None` if it cannot be read.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_stat_cpu_ticks(&text)?;
    let hz = clock_ticks_per_sec();
    Some(Duration::from_nanos(
        ticks.saturating_mul(1_000_000_000) / hz,
    ))
}

/// Resident memory of process `pid` in bytes; `None` if it cannot be read.
pub fn process_rss(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_rss_bytes(&text)
}

/// This machine's CPU model, as `lscpu` prints it.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| parse_cpu_model(&t))
        .unwrap_or_else(|| "unknown".to_string())
}

/// CPU time (user + system) used by this process, every thread included.
pub fn self_cpu() -> Duration {
    // SAFETY: rusage is plain data; getrusage fills the one we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU use over a window as a percentage of one core.
pub fn cpu_percent(cpu: Duration, wall: Duration) -> f64 {
    if wall.is_zero() {
        return 0.0;
    }
    cpu.as_secs_f64() / wall.as_secs_f64() * 100.0
}

/// A CPU-time sample of a process taken at one instant.
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    /// When it was taken (CLOCK_MONOTONIC ns).
    pub at_ns: u64,
    /// CPU time used so far.
    pub cpu: Duration,
}

impl CpuSample {
    /// This process now.
    pub fn own() -> CpuSample {
        CpuSample {
            at_ns: now_ns(),
            cpu: self_cpu(),
        }
    }

    /// Process `pid` now; `None` if /proc cannot be read.
    pub fn of(pid: u32) -> Option<CpuSample> {
        Some(CpuSample {
            cpu: process_cpu(pid)?,
            at_ns: now_ns(),
        })
    }

    /// CPU % of one core between `self` (earlier) and `later`.
    pub fn percent_until(&self, later: &CpuSample) -> f64 {
        cpu_percent(
            later.cpu.saturating_sub(self.cpu),
            Duration::from_nanos(later.at_ns.saturating_sub(self.at_ns)),
        )
    }
}

/// Raise the open-files soft limit to the hard limit; returns the soft
/// limit now in force.
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit read and write one rlimit we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                return wanted.rlim_cur;
            }
        }
        lim.rlim_cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (ringmq) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                        150 25 0 0 20 0 3 0 123456 1000000 500 18446744073709551615";

    #[test]
    fn stat_cpu_is_utime_plus_stime() {
        assert_eq!(parse_stat_cpu_ticks(STAT), Some(175));
    }

    #[test]
    fn stat_comm_with_spaces_and_parens() {
        let odd = STAT.replace("(ringmq)", "(my (odd) broker)");
        assert_eq!(parse_stat_cpu_ticks(&odd), Some(175));
    }

    #[test]
    fn stat_garbage_is_none() {
        assert_eq!(parse_stat_cpu_ticks(""), None);
        assert_eq!(parse_stat_cpu_ticks("1 (x) S 1 2"), None);
        assert_eq!(parse_stat_cpu_ticks("no parens at all"), None);
        let bad = STAT.replace(" 150 ", " x ");
        assert_eq!(parse_stat_cpu_ticks(&bad), None);
    }

    #[test]
    fn status_rss() {
        let status = "Name:\tringmq\nVmPeak:\t  99999 kB\nVmRSS:\t    6144 kB\nThreads:\t3\n";
        assert_eq!(parse_status_rss_bytes(status), Some(6144 * 1024));
        assert_eq!(parse_status_rss_bytes("Name:\tx\n"), None);
        assert_eq!(parse_status_rss_bytes("VmRSS:\t12 zB\n"), None);
    }

    #[test]
    fn cpu_model_line() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(parse_cpu_model(info).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(parse_cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn percent_of_a_core() {
        let p = cpu_percent(Duration::from_millis(250), Duration::from_secs(1));
        assert!((p - 25.0).abs() < 1e-9);
        assert_eq!(cpu_percent(Duration::from_secs(1), Duration::ZERO), 0.0);
        let a = CpuSample {
            at_ns: 1_000_000_000,
            cpu: Duration::from_millis(100),
        };
        let b = CpuSample {
            at_ns: 3_000_000_000,
            cpu: Duration::from_millis(600),
        };
        assert!((a.percent_until(&b) - 25.0).abs() < 1e-9);
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(process_rss(pid).is_some_and(|rss| rss > 0));
        assert!(process_cpu(pid).is_some());
        let t0 = now_ns();
        assert!(now_ns() >= t0);
    }
}
