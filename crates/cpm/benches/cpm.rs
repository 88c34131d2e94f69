//! Benchmarks of the CPM engine: `cargo bench -p liveplan-cpm --bench cpm`.
//!
//! Networks are synthetic but shaped like real plans: three links per task on average,
//! mostly finish-to-start to tasks not far before (so chains are long), some SS/FF/SF,
//! lags and leads, a project calendar with holidays, two other calendars on a tenth of
//! the tasks, constraints and deadlines on a few percent, milestones, and summaries.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use divan::Bencher;
use liveplan_cpm::{
    Constraint, DateRange, Edit, Engine, LinkInput, LinkType, ProjectInput, TaskInput, WeekdayMask,
    WorkCalendar,
};
use uuid::Uuid;

fn main() {
    divan::main();
}

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
}

fn id(i: usize) -> Uuid {
    Uuid::from_u128(i as u128 + 1)
}

/// `n` tasks and about `3n` links.
pub fn network(n: usize, seed: u64) -> ProjectInput {
    let mut rng = Rng(seed | 1);
    let start = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
    let mut input = ProjectInput::new(start);
    for k in 0..40 {
        // Holidays every ~6 weeks over five years.
        input
            .calendar
            .exceptions
            .push(DateRange::day(start + Duration::days(45 * k + 3)));
    }
    let (c6, c7) = (Uuid::from_u128(0xca16), Uuid::from_u128(0xca17));
    input.calendars = BTreeMap::from([
        (
            c6,
            WorkCalendar {
                working_weekdays: WeekdayMask(0b0011_1111),
                exceptions: vec![DateRange::day(start + Duration::days(10))],
            },
        ),
        (c7, WorkCalendar::all_days()),
    ]);
    // One summary per 50 tasks.
    let mut summary = None;
    for i in 0..n {
        if i % 50 == 0 {
            let mut s = TaskInput::new(id(i), 0);
            s.parent = None;
            input.tasks.push(s);
            summary = Some(id(i));
            continue;
        }
        let mut t = TaskInput::new(id(i), 1 + rng.below(10) as u32);
        t.parent = summary;
        match rng.below(100) {
            0 => {
                t.duration = 0;
                t.is_milestone = true;
            }
            1..=5 => t.calendar = Some(c6),
            6..=10 => t.calendar = Some(c7),
            _ => {}
        }
        let date = start + Duration::days(rng.below(400) as i64);
        t.constraint = match rng.below(100) {
            0..=4 => Constraint::Snet(date),
            5..=6 => Constraint::Fnlt(date),
            7 => Constraint::Mso(date),
            8 => Constraint::Snlt(date),
            _ => Constraint::Asap,
        };
        if rng.below(50) == 0 {
            t.deadline = Some(date);
        }
        input.tasks.push(t);
    }
    let mut seen = std::collections::HashSet::with_capacity(3 * n);
    for s in 1..n {
        if s % 50 == 0 {
            continue;
        }
        for _ in 0..3 {
            let back = 1 + rng.below(200.min(s as u64)) as usize;
            let p = s - back;
            if p % 50 == 0 || !seen.insert((p, s)) {
                continue;
            }
            let kind = match rng.below(20) {
                0 => LinkType::SS,
                1 => LinkType::FF,
                2 => LinkType::SF,
                _ => LinkType::FS,
            };
            let lag = match rng.below(10) {
                0 => 2,
                1 => -1,
                _ => 0,
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

#[divan::bench(args = [10_000, 100_000, 1_000_000], sample_count = 20, sample_size = 1)]
fn full_recompute(bencher: Bencher, n: usize) {
    let mut engine = Engine::new(network(n, 7)).unwrap();
    bencher
        .counter(divan::counter::ItemsCount::new(n))
        .bench_local(move || engine.recompute());
}

#[divan::bench(args = [100_000], sample_count = 10, sample_size = 1)]
fn build_and_schedule(bencher: Bencher, n: usize) {
    let input = network(n, 7);
    bencher
        .with_inputs(|| input.clone())
        .bench_local_values(|i| Engine::new(i).unwrap());
}

#[divan::bench(args = [100_000], sample_count = 10, sample_size = 1)]
fn materialize_schedule(bencher: Bencher, n: usize) {
    let engine = Engine::new(network(n, 7)).unwrap();
    bencher.bench_local(|| engine.schedule());
}

/// One duration edit on a random task, repaired incrementally.
#[divan::bench(args = [10_000, 100_000], sample_count = 200, sample_size = 1)]
fn incremental_duration_edit(bencher: Bencher, n: usize) {
    let input = network(n, 7);
    let durations: Vec<u32> = input.tasks.iter().map(|t| t.duration).collect();
    let mut engine = Engine::new(input).unwrap();
    let mut rng = Rng(99);
    bencher.bench_local(move || {
        let i = loop {
            let i = rng.below(n as u64) as usize;
            if i % 50 != 0 {
                break i;
            }
        };
        let duration = if rng.below(2) == 0 {
            durations[i] + 1 + rng.below(3) as u32
        } else {
            durations[i]
        };
        engine
            .apply(&Edit::SetDuration {
                task: id(i),
                duration,
            })
            .unwrap();
    });
}

/// Adding then removing a link between random tasks (cycle check included).
#[divan::bench(args = [100_000], sample_count = 200, sample_size = 1)]
fn incremental_link_insert_remove(bencher: Bencher, n: usize) {
    let mut engine = Engine::new(network(n, 7)).unwrap();
    let mut rng = Rng(5);
    bencher.bench_local(move || {
        let (a, b) = loop {
            let a = rng.below(n as u64) as usize;
            let b = a + 1 + rng.below(100) as usize;
            if b < n && a % 50 != 0 && b % 50 != 0 && a / 50 == b / 50 {
                break (a, b);
            }
        };
        let l = LinkInput {
            predecessor: id(a),
            successor: id(b),
            kind: LinkType::FS,
            lag: 1,
        };
        if engine.apply(&Edit::AddLink(l)).is_ok() {
            engine
                .apply(&Edit::RemoveLink {
                    predecessor: id(a),
                    successor: id(b),
                })
                .unwrap();
        }
    });
}
