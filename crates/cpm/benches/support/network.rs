//! The synthetic benchmark network, shared by the benches and by `oracle_gen`
//! (which hands the same network to MPXJ for timing and comparison).
//!
//! Shaped like real plans: three links per task on average, mostly finish-to-start to
//! tasks not far before (so chains are long), some SS/FF/SF, lags and leads, a project
//! calendar with holidays, two other calendars on a tenth of the tasks, constraints
//! and deadlines on a few percent, milestones, and one summary per 50 tasks.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use liveplan_cpm::{
    Constraint, DateRange, LinkInput, LinkType, ProjectInput, TaskInput, WeekdayMask, WorkCalendar,
};
use uuid::Uuid;

pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

pub fn id(i: usize) -> Uuid {
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
        if i.is_multiple_of(50) {
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
        if s.is_multiple_of(50) {
            continue;
        }
        for _ in 0..3 {
            let back = 1 + rng.below(200.min(s as u64)) as usize;
            let p = s - back;
            if p.is_multiple_of(50) || !seen.insert((p, s)) {
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
