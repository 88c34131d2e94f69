//! Writes random networks and liveplan's schedules of them as JSON, for the MPXJ
//! differential test (`oracle/run.sh`).
//!
//! Usage: `cargo run -p liveplan-cpm --example oracle_gen -- OUT.json [COUNT] [SEED] [TASKS]`
//! or `... -- --bench-network N OUT.json` for the benchmark network of N tasks.
//!
//! The generator covers all four link types, leads and lags, every constraint type,
//! deadlines, milestones, holidays and several calendars. It only draws inputs both
//! engines define the same way (see the repository's BENCHMARKS.md / the crate docs for the list):
//! constraint dates on working days of the task's calendar, no overlapping holidays,
//! no progress, and only FS/FF links out of summary tasks.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate};
use liveplan_cpm::{
    Constraint, DateRange, Engine, LinkInput, LinkType, ProjectInput, TaskInput, WeekdayMask,
    WorkCalendar,
};
use uuid::Uuid;

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

fn working(cal: &WorkCalendar, d: NaiveDate) -> bool {
    cal.working_weekdays
        .is_working(d.weekday().num_days_from_monday())
        && !cal.exceptions.iter().any(|e| e.first <= d && d <= e.last)
}

fn working_date(rng: &mut Rng, cal: &WorkCalendar, start: NaiveDate) -> NaiveDate {
    loop {
        let d = start + Duration::days(rng.range(0, 50));
        if working(cal, d) {
            break d;
        }
    }
}

fn random_calendar(rng: &mut Rng, start: NaiveDate, mask: WeekdayMask) -> WorkCalendar {
    let mut exceptions = Vec::new();
    for _ in 0..rng.range(0, if off("hol") { 0 } else { 4 }) {
        let first = start + Duration::days(rng.range(0, 60));
        let last = first + Duration::days(rng.range(0, 2));
        // MS Project refuses overlapping exceptions (MPXJ keeps only one of them).
        if exceptions
            .iter()
            .any(|e: &DateRange| e.first <= last && first <= e.last)
        {
            continue;
        }
        exceptions.push(DateRange { first, last });
    }
    WorkCalendar {
        working_weekdays: mask,
        exceptions,
    }
}

/// `ORACLE_OFF=cal,cons,ms,lag,types,hol,dl` switches features off, to isolate a difference.
fn off(feature: &str) -> bool {
    std::env::var("ORACLE_OFF").is_ok_and(|v| v.split(',').any(|f| f == feature))
}

/// `ORACLE_ON=progress` switches opt-in features on.
fn on(feature: &str) -> bool {
    std::env::var("ORACLE_ON").is_ok_and(|v| v.split(',').any(|f| f == feature))
}

fn random_network(rng: &mut Rng, n_tasks: usize) -> ProjectInput {
    // Monday 2026-03-02 plus 0..4 days: projects also start mid-week.
    let start = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap() + Duration::days(rng.range(0, 4));
    let mut input = ProjectInput::new(start);
    input.calendar = random_calendar(rng, start, WeekdayMask::MON_FRI);
    let masks = [
        WeekdayMask(0b0011_1111),
        WeekdayMask(0b0011_1110),
        WeekdayMask::ALL,
    ];
    let n_cals = rng.range(0, if off("cal") { 0 } else { 2 }) as usize;
    let mut cal_ids = Vec::new();
    for c in 0..n_cals {
        let id = Uuid::from_u128(0xca1_0000 + c as u128);
        let mask = masks[rng.below(3) as usize];
        input
            .calendars
            .insert(id, random_calendar(rng, start, mask));
        cal_ids.push(id);
    }
    let id = |i: usize| Uuid::from_u128(i as u128 + 1);
    for i in 0..n_tasks {
        let mut t = TaskInput::new(id(i), rng.range(1, 8) as u32);
        if rng.chance(8) && !off("ms") {
            t.duration = 0;
            t.is_milestone = true;
        }
        if !cal_ids.is_empty() && rng.chance(30) {
            t.calendar = Some(cal_ids[rng.below(cal_ids.len() as u64) as usize]);
        }
        let cal = t
            .calendar
            .map_or(&input.calendar, |c| &input.calendars[&c])
            .clone();
        let roll = rng.below(100);
        t.constraint = match roll {
            0..=54 => Constraint::Asap,
            55..=59 => Constraint::Alap,
            60..=66 => Constraint::Snet(working_date(rng, &cal, start)),
            67..=72 => Constraint::Fnet(working_date(rng, &cal, start)),
            73..=78 => Constraint::Snlt(working_date(rng, &cal, start)),
            79..=84 => Constraint::Fnlt(working_date(rng, &cal, start)),
            85..=91 => Constraint::Mso(working_date(rng, &cal, start)),
            _ => Constraint::Mfo(working_date(rng, &cal, start)),
        };
        if off("cons") {
            t.constraint = Constraint::Asap;
        }
        if rng.chance(10) && !off("dl") {
            t.deadline = Some(working_date(rng, &cal, start));
        }
        if on("progress") && !t.is_milestone && rng.chance(15) {
            // Started near the project start; half of them finished after exactly their
            // duration, so that both engines agree on what "finished" means.
            let mut d = start + Duration::days(rng.range(0, 6));
            while !working(&cal, d) {
                d += Duration::days(1);
            }
            t.actual_start = Some(d);
            t.constraint = Constraint::Asap;
            if rng.chance(50) {
                let mut left = t.duration;
                let mut f = d;
                loop {
                    if working(&cal, f) {
                        left -= 1;
                        if left == 0 {
                            break;
                        }
                    }
                    f += Duration::days(1);
                }
                t.actual_finish = Some(f);
                t.percent_complete = 100;
            }
        }
        input.tasks.push(t);
    }
    // Summaries: a task and the few tasks right after it as its children, so that
    // index order stays a topological order of links plus hierarchy.
    let mut children_of: Vec<Option<(usize, usize)>> = vec![None; n_tasks];
    let mut in_group = vec![false; n_tasks];
    if !off("sum") {
        for _ in 0..rng.range(0, 2) {
            let sidx = rng.below(n_tasks as u64) as usize;
            let last = (sidx + rng.range(1, 4) as usize).min(n_tasks - 1);
            if last == sidx || (sidx..=last).any(|i| in_group[i]) {
                continue;
            }
            for (i, g) in in_group.iter_mut().enumerate().take(last + 1).skip(sidx) {
                *g = true;
                if i > sidx {
                    input.tasks[i].parent = Some(id(sidx));
                }
            }
            let summary = &mut input.tasks[sidx];
            summary.actual_start = None;
            summary.actual_finish = None;
            summary.percent_complete = 0;
            summary.duration = 1;
            summary.is_milestone = false;
            summary.constraint = Constraint::Asap;
            summary.deadline = None;
            summary.calendar = None;
            children_of[sidx] = Some((sidx + 1, last));
        }
    }
    // Links go forward in index order, so the network is acyclic.
    let mut seen = std::collections::HashSet::new();
    for s in 1..n_tasks {
        for _ in 0..rng.range(0, 3) {
            let p = rng.below(s as u64) as usize;
            if let Some((a, b)) = children_of[p]
                && (a..=b).contains(&s)
            {
                continue; // a summary linked to its own subtask is a cycle
            }
            if !seen.insert((p, s)) {
                continue;
            }
            let kind = match rng.below(10) {
                0..=4 => LinkType::FS,
                5..=6 => LinkType::SS,
                7..=8 => LinkType::FF,
                _ => LinkType::SF,
            };
            let kind = if off("types") { LinkType::FS } else { kind };
            // MPXJ applies the late bound of an SS/SF link out of a summary to its
            // earliest subtask only; liveplan to all (documented difference).
            let kind = match (children_of[p].is_some(), kind) {
                (true, LinkType::SS) => LinkType::FS,
                (true, LinkType::SF) => LinkType::FF,
                _ => kind,
            };
            let lag = if rng.chance(60) || off("lag") {
                0
            } else {
                rng.range(-3, 5) as i32
            };
            input.links.push(LinkInput {
                predecessor: id(p),
                successor: id(s),
                kind,
                lag,
            });
        }
    }
    input
}

#[path = "../benches/support/network.rs"]
#[allow(dead_code)]
mod network;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--bench-network") {
        // The benchmark network, for timing MPXJ on exactly what the benches schedule.
        let n: usize = args[2].parse().unwrap();
        let out = &args[3];
        let input = network::network(n, 7);
        let t0 = std::time::Instant::now();
        let engine = Engine::new(input.clone()).unwrap();
        eprintln!(
            "liveplan build + full schedule of {n} tasks: {:?}",
            t0.elapsed()
        );
        let mut net = BTreeMap::new();
        net.insert("input", serde_json::to_value(&input).unwrap());
        net.insert("expected", serde_json::to_value(engine.schedule()).unwrap());
        std::fs::write(out, serde_json::to_string(&vec![net]).unwrap()).unwrap();
        return;
    }
    let out = args.get(1).expect("output path");
    let count: usize = args.get(2).map_or(200, |s| s.parse().unwrap());
    let seed: u64 = args.get(3).map_or(42, |s| s.parse().unwrap());
    let tasks: usize = args.get(4).map_or(0, |s| s.parse().unwrap());
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut nets = Vec::new();
    for _ in 0..count {
        let n = if tasks > 0 {
            tasks
        } else {
            rng.range(3, 40) as usize
        };
        let input = random_network(&mut rng, n);
        let engine = Engine::new(input.clone()).expect("acyclic by construction");
        let schedule = engine.schedule();
        let mut net = BTreeMap::new();
        net.insert("input", serde_json::to_value(&input).unwrap());
        net.insert("expected", serde_json::to_value(&schedule).unwrap());
        nets.push(net);
    }
    std::fs::write(out, serde_json::to_string(&nets).unwrap()).unwrap();
}
