//! `liveplan-loadgen floor` end to end: the real binary, its sink subprocess and real loopback
//! sockets, once with one `write` per frame and once through io_uring.

use std::process::Command;

fn floor(extra: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_liveplan-loadgen"))
        .args(["floor", "-n", "20", "-r", "10", "-d", "1"])
        .args(extra)
        .output()
        .expect("running liveplan-loadgen floor");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "floor failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("a JSON summary line");
    serde_json::from_str::<serde_json::Value>(line).expect("JSON")["liveplan_loadgen"].clone()
}

#[test]
fn every_frame_is_written_to_every_connection_both_ways() {
    for (extra, uring) in [(&[][..], false), (&["--io-uring"][..], true)] {
        let summary = floor(extra);
        assert_eq!(summary["io_uring"], uring, "{summary}");
        assert_eq!(summary["connections"], 20, "{summary}");
        // 20 connections × 10 rounds a second × 1 s.
        assert_eq!(summary["writes"], 200, "{summary}");
        assert_eq!(summary["frame_bytes"], 520, "{summary}");
    }
}

#[test]
fn bad_arguments_are_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_liveplan-loadgen"))
        .args(["floor", "-n", "0"])
        .output()
        .expect("running liveplan-loadgen floor");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("-n must be"));
}
