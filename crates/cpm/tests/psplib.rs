//! PSPLIB oracle: every j30/j60/j90/j120 network's critical path length must equal the
//! `MPM-Time` the library publishes. PSPLIB has no calendar, so durations are working
//! days of a seven-day calendar and links are finish-to-start without lag.

use std::io::Read;

use chrono::NaiveDate;
use liveplan_cpm::{Engine, LinkInput, LinkType, ProjectInput, TaskInput, WorkCalendar};
use uuid::Uuid;

struct Network {
    durations: Vec<u32>,
    successors: Vec<Vec<usize>>,
    mpm_time: i32,
}

fn parse(text: &str) -> Network {
    let lines: Vec<&str> = text.lines().collect();
    let mut mpm_time = None;
    let mut successors = Vec::new();
    let mut durations = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.contains("MPM-Time") {
            mpm_time = lines[i + 1]
                .split_whitespace()
                .last()
                .map(|x| x.parse().unwrap());
        } else if l.starts_with("PRECEDENCE RELATIONS") {
            i += 2;
            while !lines[i].starts_with('*') {
                let f: Vec<usize> = lines[i]
                    .split_whitespace()
                    .map(|x| x.parse().unwrap())
                    .collect();
                assert_eq!(f[0], successors.len() + 1);
                successors.push(f[3..3 + f[2]].iter().map(|j| j - 1).collect());
                i += 1;
            }
            continue;
        } else if l.starts_with("REQUESTS/DURATIONS") {
            i += 3;
            while !lines[i].starts_with('*') {
                let f: Vec<u32> = lines[i]
                    .split_whitespace()
                    .map(|x| x.parse().unwrap())
                    .collect();
                assert_eq!(f[0] as usize, durations.len() + 1);
                durations.push(f[2]);
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    assert_eq!(durations.len(), successors.len());
    Network {
        durations,
        successors,
        mpm_time: mpm_time.expect("MPM-Time"),
    }
}

fn project_length(net: &Network) -> i32 {
    let id = |j: usize| Uuid::from_u128(j as u128 + 1);
    let mut input = ProjectInput::new(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap());
    input.calendar = WorkCalendar::all_days();
    for (j, &d) in net.durations.iter().enumerate() {
        input.tasks.push(TaskInput::new(id(j), d));
    }
    for (j, succ) in net.successors.iter().enumerate() {
        for &s in succ {
            input.links.push(LinkInput {
                predecessor: id(j),
                successor: id(s),
                kind: LinkType::FS,
                lag: 0,
            });
        }
    }
    let engine = Engine::new(input).expect("schedulable");
    // Cross-check the critical path: it must exist and all its tasks have zero float.
    let s = engine.schedule();
    assert!(!s.critical_path.is_empty());
    assert!(s.tasks.iter().all(|t| t.total_float >= 0));
    engine.project_duration()
}

#[test]
fn psplib_mpm_time_matches_for_every_network() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/psplib");
    let mut total = 0;
    let mut matched = 0;
    let mut mismatches = Vec::new();
    for set in ["j30", "j60", "j90", "j120"] {
        let f = std::fs::File::open(format!("{dir}/{set}.sm.tar.gz")).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        let (mut set_total, mut set_matched) = (0, 0);
        for entry in ar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            let net = parse(&text);
            let got = project_length(&net);
            set_total += 1;
            if got == net.mpm_time {
                set_matched += 1;
            } else {
                mismatches.push(format!("{name}: got {got}, MPM-Time {}", net.mpm_time));
            }
        }
        println!("PSPLIB {set}: {set_matched}/{set_total} networks match MPM-Time");
        total += set_total;
        matched += set_matched;
    }
    println!("PSPLIB total: {matched}/{total} networks match MPM-Time");
    assert_eq!(
        total, 2040,
        "expected the 2,040 networks of j30/j60/j90/j120"
    );
    assert!(mismatches.is_empty(), "mismatches: {mismatches:#?}");
}
