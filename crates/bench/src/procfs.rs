//! Readings from `/proc`: a process's CPU time and resident memory, and the kernel's slab.

use std::sync::OnceLock;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// utime + stime of the whole thread group, in seconds.
    pub cpu_s: f64,
    /// VmRSS, KiB.
    pub rss_kib: u64,
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 when that cannot be run).
pub fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// Reads `/proc/PID/stat` (utime + stime) and `/proc/PID/status` (VmRSS). `None` when the
/// process is gone or the files cannot be parsed.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: fields start after ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the full line; utime is field 14, stime 15 (1-based).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = kib_field(&status, "VmRSS:").unwrap_or(0);
    Some(ProcSample {
        cpu_s: (utime + stime) as f64 / clock_ticks(),
        rss_kib,
    })
}

/// This process's own reading.
pub fn own() -> ProcSample {
    sample(std::process::id()).unwrap_or_default()
}

/// `Slab:` from `/proc/meminfo`, KiB (kernel memory, both ends of loopback sockets).
pub fn slab_kib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    kib_field(&meminfo, "Slab:")
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Before/after readings of a server process over a measured window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    /// At the start.
    pub before: Option<ProcSample>,
    /// At the end.
    pub after: Option<ProcSample>,
}

impl Window {
    /// CPU seconds used in the window.
    pub fn cpu_s(&self) -> Option<f64> {
        Some(self.after?.cpu_s - self.before?.cpu_s)
    }

    /// As JSON: CPU seconds, RSS before and after.
    pub fn to_json(&self, work: Option<f64>) -> serde_json::Value {
        let cpu = self.cpu_s();
        serde_json::json!({
            "cpu_s": cpu,
            "rss_before_kib": self.before.map(|s| s.rss_kib),
            "rss_after_kib": self.after.map(|s| s.rss_kib),
            "work_per_cpu_s": match (work, cpu) {
                (Some(w), Some(c)) if c > 0.0 => Some(w / c),
                _ => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_itself() {
        let s = own();
        assert!(s.rss_kib > 0);
        assert!(s.cpu_s >= 0.0);
        assert!(slab_kib().is_some());
    }
}
