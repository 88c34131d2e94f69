//! Incremental repair must give exactly what a full recompute gives, whatever the
//! network and whatever sequence of edits: random networks, random edits, compared
//! after every edit against a fresh engine built from the edited inputs.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use liveplan_cpm::{
    Constraint, CpmError, DateRange, Edit, Engine, LinkInput, LinkType, ProjectInput, TaskInput,
    WeekdayMask, WorkCalendar,
};
use proptest::prelude::*;
use uuid::Uuid;

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

fn id(i: usize) -> Uuid {
    Uuid::from_u128(i as u128 + 1)
}

fn start() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()
}

fn date(rng: &mut Rng) -> NaiveDate {
    start() + Duration::days(rng.range(-5, 60))
}

fn constraint(rng: &mut Rng) -> Constraint {
    match rng.below(14) {
        0 => Constraint::Alap,
        1 => Constraint::Snet(date(rng)),
        2 => Constraint::Fnet(date(rng)),
        3 => Constraint::Snlt(date(rng)),
        4 => Constraint::Fnlt(date(rng)),
        5 => Constraint::Mso(date(rng)),
        6 => Constraint::Mfo(date(rng)),
        _ => Constraint::Asap,
    }
}

fn link(rng: &mut Rng, p: usize, s: usize) -> LinkInput {
    LinkInput {
        predecessor: id(p),
        successor: id(s),
        kind: [LinkType::FS, LinkType::SS, LinkType::FF, LinkType::SF][rng.below(4) as usize],
        lag: if rng.chance(50) {
            0
        } else {
            rng.range(-3, 4) as i32
        },
    }
}

fn network(rng: &mut Rng, n: usize, alap: bool) -> ProjectInput {
    let mut input = ProjectInput::new(start());
    input.status_date = rng
        .chance(30)
        .then(|| start() + Duration::days(rng.range(0, 10)));
    input
        .calendar
        .exceptions
        .push(DateRange::day(start() + Duration::days(9)));
    let cal7 = Uuid::from_u128(0xca1);
    input.calendars = BTreeMap::from([(
        cal7,
        WorkCalendar {
            working_weekdays: WeekdayMask(0b0011_1110),
            exceptions: vec![DateRange::day(start() + Duration::days(3))],
        },
    )]);
    for i in 0..n {
        let mut t = TaskInput::new(id(i), rng.range(0, 6) as u32);
        t.is_milestone = t.duration == 0;
        // Parents come earlier in index order, so the hierarchy is a forest.
        if i > 0 && rng.chance(15) {
            t.parent = Some(id(rng.below(i as u64) as usize));
        }
        if rng.chance(20) {
            t.calendar = Some(cal7);
        }
        t.constraint = constraint(rng);
        if !alap && t.constraint == Constraint::Alap {
            t.constraint = Constraint::Asap;
        }
        if rng.chance(10) {
            t.deadline = Some(date(rng));
        }
        if rng.chance(10) {
            t.start_date = Some(date(rng));
        }
        match rng.below(20) {
            0 => {
                t.actual_start = Some(start() + Duration::days(rng.range(0, 5)));
                t.percent_complete = rng.range(0, 99) as u8;
            }
            1 => {
                t.actual_start = Some(start());
                t.actual_finish = Some(start() + Duration::days(rng.range(0, 5)));
            }
            2 => {
                t.manually_scheduled = true;
                t.scheduled_start = Some(date(rng));
                t.scheduled_finish = t
                    .scheduled_start
                    .map(|d| d + Duration::days(rng.range(0, 4)));
            }
            _ => {}
        }
        input.tasks.push(t);
    }
    let mut seen = std::collections::HashSet::new();
    for s in 1..n {
        for _ in 0..rng.range(0, 3) {
            let p = rng.below(s as u64) as usize;
            if seen.insert((p, s)) {
                input.links.push(link(rng, p, s));
            }
        }
    }
    input
}

fn random_edit(rng: &mut Rng, input: &ProjectInput) -> Edit {
    let n = input.tasks.len();
    let task = id(rng.below(n as u64) as usize);
    match rng.below(10) {
        0 | 1 => Edit::SetDuration {
            task,
            duration: rng.range(0, 8) as u32,
        },
        2 => Edit::SetConstraint {
            task,
            constraint: constraint(rng),
        },
        3 => Edit::SetDeadline {
            task,
            deadline: rng.chance(50).then(|| date(rng)),
        },
        4 => Edit::SetStartDate {
            task,
            start_date: rng.chance(50).then(|| date(rng)),
        },
        5 | 6 => {
            // Any pair, including backward ones: cycles must be refused.
            let p = rng.below(n as u64) as usize;
            let s = rng.below(n as u64) as usize;
            Edit::AddLink(link(rng, p, s))
        }
        7 if !input.links.is_empty() => {
            let l = input.links[rng.below(input.links.len() as u64) as usize];
            let mut l2 = link(rng, 0, 0);
            l2.predecessor = l.predecessor;
            l2.successor = l.successor;
            Edit::UpdateLink(l2)
        }
        8 if !input.links.is_empty() => {
            let l = input.links[rng.below(input.links.len() as u64) as usize];
            Edit::RemoveLink {
                predecessor: l.predecessor,
                successor: l.successor,
            }
        }
        _ => Edit::SetDuration {
            task,
            duration: rng.range(1, 3) as u32,
        },
    }
}

fn check(seed: u64, n: usize, edits: usize, alap: bool) -> Result<(), TestCaseError> {
    let mut rng = Rng(seed | 1);
    let input = network(&mut rng, n, alap);
    let mut engine = match Engine::new(input) {
        Ok(e) => e,
        // A random hierarchy can put a summary after its own subtask: a real cycle.
        Err(CpmError::Cycle(_)) => return Ok(()),
        Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
    };
    engine.take_changes();
    for _ in 0..edits {
        let edit = random_edit(&mut rng, engine.input());
        let before = engine.raw_state();
        let before_schedule = engine.schedule();
        let before_input = engine.input().clone();
        match engine.apply(&edit) {
            Ok(()) => {
                // The reported changes cover every task whose outputs moved.
                if let Some(changed) = engine.take_changes() {
                    let after = engine.schedule();
                    for t in before_schedule.moved(&after) {
                        prop_assert!(
                            changed.contains(&t.id),
                            "{} moved but not reported after {:?}",
                            t.id,
                            edit
                        );
                    }
                }
                let full = Engine::new(engine.input().clone()).expect("full recompute");
                let (a, b) = (engine.raw_state(), full.raw_state());
                if a != b {
                    let i = (0..a.1.len()).find(|&i| a.1[i] != b.1[i]);
                    let t = i.map(|i| engine.input().tasks[i].clone());
                    let links: Vec<_> = t
                        .iter()
                        .flat_map(|t| {
                            engine
                                .input()
                                .links
                                .iter()
                                .filter(|l| l.successor == t.id || l.predecessor == t.id)
                                .cloned()
                                .collect::<Vec<_>>()
                        })
                        .collect();
                    prop_assert!(
                        false,
                        "after {:?}: first diff at {:?} {:?} vs {:?}\ntask {:#?}\nlinks {:#?}",
                        edit,
                        i,
                        i.map(|i| a.1[i]),
                        i.map(|i| b.1[i]),
                        t,
                        links
                    );
                }
                let sched = engine.schedule();
                prop_assert_eq!(&engine.critical_path(), &sched.critical_path);
                for t in sched.tasks.iter().step_by(3) {
                    let one = engine.task(t.id);
                    prop_assert_eq!(one.as_ref(), Some(t));
                }
                prop_assert_eq!(sched, full.schedule());
            }
            Err(err) => {
                // Refused edits change nothing, and a refused link really closes a cycle.
                prop_assert_eq!(&engine.raw_state(), &before);
                prop_assert_eq!(engine.input(), &before_input);
                if let (Edit::AddLink(l), CpmError::Cycle(c)) = (&edit, &err) {
                    prop_assert!(!c.is_empty());
                    let mut with = before_input.clone();
                    with.links.push(*l);
                    prop_assert!(matches!(Engine::new(with), Err(CpmError::Cycle(_))));
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn incremental_equals_full_recompute(seed in any::<u64>(), n in 2usize..40, edits in 1usize..25) {
        check(seed, n, edits, false)?;
    }

    #[test]
    fn incremental_equals_full_recompute_with_alap(seed in any::<u64>(), n in 2usize..30, edits in 1usize..10) {
        check(seed, n, edits, true)?;
    }
}

/// Edits that reach most of a large plan take the sweep path of the repair.
#[test]
fn large_cascades_match_full_recompute() {
    let mut rng = Rng(12345);
    let mut input = network(&mut rng, 3000, false);
    for t in &mut input.tasks {
        t.parent = None;
    }
    // A chain through the whole plan so that early edits cascade to the end.
    for i in 1..3000 {
        if !input
            .links
            .iter()
            .any(|l| l.predecessor == id(i - 1) && l.successor == id(i))
        {
            input.links.push(LinkInput {
                predecessor: id(i - 1),
                successor: id(i),
                kind: LinkType::FS,
                lag: 0,
            });
        }
    }
    let mut engine = match Engine::new(input) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    for k in 0..20 {
        let task = id(rng.below(50) as usize);
        engine
            .apply(&Edit::SetDuration {
                task,
                duration: 3 + k % 5,
            })
            .unwrap();
        let full = Engine::new(engine.input().clone()).unwrap();
        assert_eq!(engine.raw_state(), full.raw_state());
    }
}
