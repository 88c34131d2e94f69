//! CPU time and resident memory of a process, read from /proc.

use anyhow::{Context, bail};

/// Clock ticks per second of the `utime`/`stime` fields. The kernel reports them in USER_HZ,
/// which is 100 on every Linux architecture Rust targets (it is part of the ABI, unlike HZ);
/// reading it with `sysconf` would need `unsafe`, which the workspace forbids.
const USER_HZ: f64 = 100.0;

/// A reading of one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// User plus system CPU seconds of all its threads so far.
    pub cpu_secs: f64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

/// `utime + stime` in ticks from the text of /proc/<pid>/stat. The second field (the command
/// name) is in parentheses and may itself contain spaces or parentheses, so fields are counted
/// from the last `)`.
pub fn parse_stat_ticks(stat: &str) -> anyhow::Result<u64> {
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("no ) in /proc/<pid>/stat")?;
    // After the name: state(3) ppid(4) … utime(14) stime(15); index 0 here is field 3.
    let fields: Vec<&str> = after.split_whitespace().collect();
    if fields.len() < 13 {
        bail!("/proc/<pid>/stat has too few fields");
    }
    let utime: u64 = fields[11].parse().context("utime")?;
    let stime: u64 = fields[12].parse().context("stime")?;
    Ok(utime + stime)
}

/// `VmRSS` in bytes from the text of /proc/<pid>/status.
pub fn parse_status_rss(status: &str) -> anyhow::Result<u64> {
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS in /proc/<pid>/status")?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = words.next().context("VmRSS value")?.parse()?;
    match words.next() {
        Some("kB") => Ok(value * 1024),
        other => bail!("unexpected VmRSS unit {other:?}"),
    }
}

/// `pid` is a number or `self`.
pub fn sample(pid: &str) -> anyhow::Result<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(Sample {
        cpu_secs: parse_stat_ticks(&stat)? as f64 / USER_HZ,
        rss_bytes: parse_status_rss(&status)?,
    })
}

/// The CPU seconds of all of `pids` together (kernel threads too: they have no RSS); `None` if
/// there are none or one cannot be read.
pub fn cpu_secs_of(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some(parse_stat_ticks(&stat).ok()? as f64 / USER_HZ)
        })
        .sum()
}

/// The server's and this process's readings, taken together.
#[derive(Debug, Clone, Copy)]
pub struct Both {
    pub server: Option<Sample>,
    pub me: Option<Sample>,
}

pub fn sample_both(server_pid: Option<u32>) -> Both {
    Both {
        server: server_pid.and_then(|p| sample(&p.to_string()).ok()),
        me: sample("self").ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_counts_fields_after_the_name() {
        let stat = "4242 (live (plan) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 \
                    123 456789 1234 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat).unwrap(), 300);
        assert!(parse_stat_ticks("1 (x) S 1 2").is_err());
        assert!(parse_stat_ticks("no name here").is_err());
    }

    #[test]
    fn status_rss_in_bytes() {
        let status = "Name:\tliveplan\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_status_rss(status).unwrap(), 12345 * 1024);
        assert!(parse_status_rss("Name:\tx\n").is_err());
    }

    #[test]
    fn cpu_of_several_pids_needs_them_all() {
        assert!(cpu_secs_of(&[]).is_none());
        let me = std::process::id();
        assert!(cpu_secs_of(&[me, me]).is_some_and(|s| s >= 0.0));
        assert!(cpu_secs_of(&[me, u32::MAX]).is_none());
    }

    #[test]
    fn this_process_can_be_read() {
        let s = sample("self").unwrap();
        assert!(s.rss_bytes > 0);
        assert!(s.cpu_secs >= 0.0);
    }
}
