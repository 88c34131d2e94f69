//! Hand-checked schedules, one rule each. 2026-03-02 is a Monday.

use chrono::NaiveDate;
use liveplan_cpm::{
    Constraint, CpmError, DateRange, Edit, Engine, LinkInput, LinkType, ProjectInput, Schedule,
    TaskInput, TaskSchedule, WorkCalendar, schedule,
};
use uuid::Uuid;

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn project() -> ProjectInput {
    ProjectInput::new(d("2026-03-02"))
}

fn task(p: &mut ProjectInput, n: u128, duration: u32) -> &mut TaskInput {
    p.tasks.push(TaskInput::new(id(n), duration));
    p.tasks.last_mut().unwrap()
}

fn link(p: &mut ProjectInput, a: u128, b: u128, kind: LinkType, lag: i32) {
    p.links.push(LinkInput {
        predecessor: id(a),
        successor: id(b),
        kind,
        lag,
    });
}

fn get(s: &Schedule, n: u128) -> &TaskSchedule {
    s.get(id(n)).unwrap()
}

fn dates(s: &Schedule, n: u128) -> (NaiveDate, NaiveDate, NaiveDate, NaiveDate) {
    let t = get(s, n);
    (t.early_start, t.early_finish, t.late_start, t.late_finish)
}

#[test]
fn finish_to_start_skips_the_weekend() {
    let mut p = project();
    task(&mut p, 1, 5);
    task(&mut p, 2, 3);
    link(&mut p, 1, 2, LinkType::FS, 0);
    let s = schedule(&p).unwrap();
    assert_eq!(
        dates(&s, 1),
        (
            d("2026-03-02"),
            d("2026-03-06"),
            d("2026-03-02"),
            d("2026-03-06")
        )
    );
    assert_eq!(
        dates(&s, 2),
        (
            d("2026-03-09"),
            d("2026-03-11"),
            d("2026-03-09"),
            d("2026-03-11")
        )
    );
    assert_eq!(s.project_finish, d("2026-03-11"));
    assert_eq!(s.critical_path, vec![id(1), id(2)]);
    assert!(get(&s, 1).is_critical && get(&s, 1).total_float == 0);
}

#[test]
fn lags_and_leads_count_working_days() {
    let mut p = project();
    task(&mut p, 1, 2); // Mon-Tue
    task(&mut p, 2, 1);
    task(&mut p, 3, 1);
    link(&mut p, 1, 2, LinkType::FS, 2); // two days after Tue: Fri
    link(&mut p, 1, 3, LinkType::FS, -1); // one day lead: Tue
    let s = schedule(&p).unwrap();
    assert_eq!(get(&s, 2).early_start, d("2026-03-06"));
    assert_eq!(get(&s, 3).early_start, d("2026-03-03"));
}

#[test]
fn ss_ff_sf_and_the_project_start_clamp() {
    let mut p = project();
    task(&mut p, 1, 4); // Mon-Thu
    task(&mut p, 2, 2);
    task(&mut p, 3, 2);
    task(&mut p, 4, 1);
    task(&mut p, 5, 10);
    link(&mut p, 1, 2, LinkType::SS, 1);
    link(&mut p, 1, 3, LinkType::FF, 0);
    link(&mut p, 1, 4, LinkType::SF, 0);
    link(&mut p, 1, 5, LinkType::FF, 0);
    let s = schedule(&p).unwrap();
    assert_eq!(get(&s, 2).early_start, d("2026-03-03"));
    assert_eq!(
        (get(&s, 3).early_start, get(&s, 3).early_finish),
        (d("2026-03-04"), d("2026-03-05"))
    );
    // SF is not clamped to the project start (Microsoft Project's rule)...
    assert_eq!(
        (get(&s, 4).early_start, get(&s, 4).early_finish),
        (d("2026-02-27"), d("2026-02-27"))
    );
    // ...but an FF-driven start is.
    assert_eq!(
        (get(&s, 5).early_start, get(&s, 5).early_finish),
        (d("2026-03-02"), d("2026-03-13"))
    );
}

#[test]
fn no_later_than_wins_over_links_with_negative_float() {
    let mut p = project();
    task(&mut p, 1, 5);
    task(&mut p, 2, 2).constraint = Constraint::Snlt(d("2026-03-04"));
    link(&mut p, 1, 2, LinkType::FS, 0);
    let s = schedule(&p).unwrap();
    assert_eq!(get(&s, 2).early_start, d("2026-03-04"));
    assert_eq!(get(&s, 1).late_finish, d("2026-03-03"));
    assert_eq!(get(&s, 1).total_float, -3);
    assert!(get(&s, 1).is_critical);
}

#[test]
fn deadline_caps_late_finish() {
    let mut p = project();
    task(&mut p, 1, 5).deadline = Some(d("2026-03-04"));
    let s = schedule(&p).unwrap();
    assert_eq!(get(&s, 1).late_finish, d("2026-03-04"));
    assert_eq!(get(&s, 1).total_float, -2);
}

#[test]
fn start_date_acts_as_start_no_earlier_than() {
    let mut p = project();
    task(&mut p, 1, 2).start_date = Some(d("2026-03-05"));
    task(&mut p, 2, 1).constraint = Constraint::Mso(d("2026-03-10"));
    task(&mut p, 3, 2).constraint = Constraint::Mfo(d("2026-03-10"));
    let s = schedule(&p).unwrap();
    assert_eq!(
        (get(&s, 1).early_start, get(&s, 1).early_finish),
        (d("2026-03-05"), d("2026-03-06"))
    );
    assert_eq!(
        dates(&s, 2),
        (
            d("2026-03-10"),
            d("2026-03-10"),
            d("2026-03-10"),
            d("2026-03-10")
        )
    );
    assert_eq!(
        dates(&s, 3),
        (
            d("2026-03-09"),
            d("2026-03-10"),
            d("2026-03-09"),
            d("2026-03-10")
        )
    );
}

#[test]
fn milestone_sits_at_the_end_of_its_predecessor() {
    let mut p = project();
    task(&mut p, 1, 5);
    let m = task(&mut p, 2, 0);
    m.is_milestone = true;
    task(&mut p, 3, 1);
    link(&mut p, 1, 2, LinkType::FS, 0);
    link(&mut p, 2, 3, LinkType::FS, 0);
    let s = schedule(&p).unwrap();
    assert_eq!(
        (get(&s, 2).early_start, get(&s, 2).early_finish),
        (d("2026-03-06"), d("2026-03-06"))
    );
    assert_eq!(get(&s, 3).early_start, d("2026-03-09"));
    assert!(get(&s, 2).is_critical);
}

#[test]
fn summary_rolls_up_and_links_into_it_reach_its_leaves() {
    let mut p = project();
    task(&mut p, 1, 2); // predecessor of the summary: Mon-Tue
    task(&mut p, 10, 0); // summary
    task(&mut p, 11, 3).parent = Some(id(10));
    task(&mut p, 12, 2).parent = Some(id(10));
    task(&mut p, 2, 1);
    link(&mut p, 11, 12, LinkType::FS, 0);
    link(&mut p, 1, 10, LinkType::FS, 0);
    link(&mut p, 10, 2, LinkType::FS, 0);
    let s = schedule(&p).unwrap();
    assert_eq!(
        (get(&s, 11).early_start, get(&s, 11).early_finish),
        (d("2026-03-04"), d("2026-03-06"))
    );
    assert_eq!(
        (get(&s, 12).early_start, get(&s, 12).early_finish),
        (d("2026-03-09"), d("2026-03-10"))
    );
    assert_eq!(
        dates(&s, 10),
        (
            d("2026-03-04"),
            d("2026-03-10"),
            d("2026-03-04"),
            d("2026-03-10")
        )
    );
    assert_eq!(get(&s, 2).early_start, d("2026-03-11"));
    assert_eq!(s.critical_path, vec![id(1), id(11), id(12), id(2)]);
}

#[test]
fn manual_task_keeps_its_dates_and_drives_successors() {
    let mut p = project();
    let m = task(&mut p, 1, 3);
    m.manually_scheduled = true;
    m.scheduled_start = Some(d("2026-03-10"));
    m.scheduled_finish = Some(d("2026-03-12"));
    task(&mut p, 2, 1);
    link(&mut p, 1, 2, LinkType::FS, 0);
    let s = schedule(&p).unwrap();
    assert_eq!(
        (get(&s, 1).early_start, get(&s, 1).early_finish),
        (d("2026-03-10"), d("2026-03-12"))
    );
    assert_eq!(get(&s, 2).early_start, d("2026-03-13"));
}

#[test]
fn progress_pins_finished_and_reschedules_remaining_work() {
    let mut p = project();
    p.status_date = Some(d("2026-03-04"));
    let f = task(&mut p, 1, 2);
    f.actual_start = Some(d("2026-03-02"));
    f.actual_finish = Some(d("2026-03-03"));
    let t = task(&mut p, 2, 4);
    t.actual_start = Some(d("2026-03-02"));
    t.percent_complete = 50;
    task(&mut p, 3, 1);
    link(&mut p, 1, 3, LinkType::FS, 0);
    let s = schedule(&p).unwrap();
    assert_eq!(
        dates(&s, 1),
        (
            d("2026-03-02"),
            d("2026-03-03"),
            d("2026-03-02"),
            d("2026-03-03")
        )
    );
    assert!(!get(&s, 1).is_critical);
    // Half of 4 days remains, from the day after the status date: Thu-Fri.
    assert_eq!(
        (get(&s, 2).early_start, get(&s, 2).early_finish),
        (d("2026-03-02"), d("2026-03-06"))
    );
    assert_eq!(get(&s, 3).early_start, d("2026-03-04"));
}

#[test]
fn calendars_holidays_and_per_task_calendars() {
    let mut p = project();
    p.calendar.exceptions.push(DateRange::day(d("2026-03-04")));
    let seven = id(0xca1);
    p.calendars.insert(seven, WorkCalendar::all_days());
    task(&mut p, 1, 3); // Mon, Tue, (Wed off), Thu
    task(&mut p, 2, 2).calendar = Some(seven);
    link(&mut p, 1, 2, LinkType::FS, 1); // lag in the successor's (7-day) calendar
    let s = schedule(&p).unwrap();
    assert_eq!(get(&s, 1).early_finish, d("2026-03-05"));
    assert_eq!(
        (get(&s, 2).early_start, get(&s, 2).early_finish),
        (d("2026-03-07"), d("2026-03-08"))
    );
}

#[test]
fn free_float_and_total_float() {
    let mut p = project();
    task(&mut p, 1, 2);
    task(&mut p, 2, 5);
    task(&mut p, 3, 1);
    link(&mut p, 1, 3, LinkType::FS, 0);
    link(&mut p, 2, 3, LinkType::FS, 0);
    let s = schedule(&p).unwrap();
    assert_eq!((get(&s, 1).total_float, get(&s, 1).free_float), (3, 3));
    assert_eq!((get(&s, 2).total_float, get(&s, 2).free_float), (0, 0));
}

#[test]
fn cycle_is_an_error_naming_its_tasks() {
    let mut p = project();
    for n in 1..=4 {
        task(&mut p, n, 1);
    }
    link(&mut p, 4, 1, LinkType::FS, 0);
    link(&mut p, 1, 2, LinkType::FS, 0);
    link(&mut p, 2, 3, LinkType::SS, 0);
    link(&mut p, 3, 1, LinkType::FF, 0);
    match schedule(&p) {
        Err(CpmError::Cycle(mut c)) => {
            c.sort();
            assert_eq!(c, vec![id(1), id(2), id(3)]);
        }
        other => panic!("expected a cycle, got {other:?}"),
    }
}

#[test]
fn a_link_closing_a_cycle_is_refused_on_insert() {
    let mut p = project();
    for n in 1..=3 {
        task(&mut p, n, 1);
    }
    link(&mut p, 1, 2, LinkType::FS, 0);
    link(&mut p, 2, 3, LinkType::FS, 0);
    let mut e = Engine::new(p).unwrap();
    let before = e.schedule();
    let err = e
        .apply(&Edit::AddLink(LinkInput {
            predecessor: id(3),
            successor: id(1),
            kind: LinkType::FS,
            lag: 0,
        }))
        .unwrap_err();
    assert_eq!(err, CpmError::Cycle(vec![id(3), id(1), id(2)]));
    assert_eq!(e.schedule(), before);
    assert_eq!(e.input().links.len(), 2);
}

#[test]
fn moved_lists_only_tasks_whose_outputs_changed() {
    let mut p = project();
    task(&mut p, 1, 2);
    task(&mut p, 2, 2);
    task(&mut p, 3, 10);
    link(&mut p, 1, 2, LinkType::FS, 0);
    let mut e = Engine::new(p).unwrap();
    let before = e.schedule();
    e.apply(&Edit::SetDuration {
        task: id(1),
        duration: 3,
    })
    .unwrap();
    let after = e.schedule();
    let moved: Vec<Uuid> = before.moved(&after).iter().map(|t| t.id).collect();
    assert_eq!(moved, vec![id(1), id(2)]);
    assert!(after.moved(&after).is_empty());
}

#[test]
fn alap_sits_late_and_pushes_successors_from_its_late_dates() {
    let mut p = project();
    task(&mut p, 1, 5);
    task(&mut p, 2, 1).constraint = Constraint::Alap;
    task(&mut p, 3, 1);
    link(&mut p, 2, 3, LinkType::FS, 0);
    let s = schedule(&p).unwrap();
    // Task 2 may finish as late as Thu so that 3 ends with the project on Fri.
    assert_eq!(
        (get(&s, 2).late_start, get(&s, 2).late_finish),
        (d("2026-03-05"), d("2026-03-05"))
    );
    assert_eq!(get(&s, 2).total_float, 0);
    assert_eq!(get(&s, 3).early_start, d("2026-03-06"));
}

#[test]
fn errors_for_bad_references() {
    let mut p = project();
    task(&mut p, 1, 1).calendar = Some(id(99));
    assert_eq!(schedule(&p).unwrap_err(), CpmError::UnknownCalendar(id(99)));
    let mut p = project();
    task(&mut p, 1, 1);
    task(&mut p, 1, 1);
    assert_eq!(schedule(&p).unwrap_err(), CpmError::DuplicateTask(id(1)));
    let mut p = project();
    task(&mut p, 1, 1);
    link(&mut p, 1, 2, LinkType::FS, 0);
    assert_eq!(schedule(&p).unwrap_err(), CpmError::UnknownTask(id(2)));
    let mut p = project();
    p.calendar.working_weekdays = liveplan_cpm::WeekdayMask(0);
    assert_eq!(schedule(&p).unwrap_err(), CpmError::EmptyCalendar(None));
    let mut p = project();
    let named = Uuid::from_u128(77);
    p.calendar.working_weekdays = liveplan_cpm::WeekdayMask(0);
    p.calendars.insert(named, p.calendar.clone());
    assert_eq!(
        schedule(&p).unwrap_err(),
        CpmError::EmptyCalendar(Some(named)),
        "a named calendar is named, even when it is the project's too"
    );
}

#[test]
fn extreme_inputs_are_refused_or_bounded() {
    let mut p = project();
    task(&mut p, 1, u32::MAX); // capped, not wrapped
    task(&mut p, 2, 1).constraint = Constraint::Mso(d("2400-01-03"));
    task(&mut p, 3, 1);
    link(&mut p, 1, 3, LinkType::FS, 0);
    let s = schedule(&p).unwrap();
    assert!(get(&s, 1).early_finish > d("2300-01-01"));
    assert_eq!(get(&s, 2).early_start, d("2400-01-03"));
    let mut bad = p.clone();
    link(&mut bad, 2, 3, LinkType::FS, i32::MIN);
    assert_eq!(schedule(&bad).unwrap_err(), CpmError::OutOfRange(id(3)));
    let mut bad = p.clone();
    bad.calendar
        .exceptions
        .push(DateRange::day(d("9999-01-01")));
    assert!(matches!(
        schedule(&bad),
        Err(CpmError::ExceptionOutOfRange(_, None))
    ));
}

#[test]
fn engine_can_move_between_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Engine>();
    assert_send_sync::<Schedule>();
    assert_send_sync::<CpmError>();
}

#[test]
fn dates_outside_four_digit_years_are_refused() {
    // A chain that ends past 9999-12-31: 1,100 working days from the first week of 9999.
    let mut p = ProjectInput::new(d("9999-01-04"));
    task(&mut p, 1, 100);
    task(&mut p, 2, 1_000);
    link(&mut p, 1, 2, LinkType::FS, 0);
    assert_eq!(schedule(&p), Err(CpmError::DateOutOfRange(Some(id(2)))));
    // Shorter, it fits; the last working day of 9999 is a Friday, its 31st.
    p.tasks[1].duration = 1;
    let fits = schedule(&p).unwrap();
    assert!(fits.project_finish <= liveplan_cpm::LAST_DATE);

    // A deadline in year 1 pulls late dates before it: a negative float with no date to show.
    let mut p = ProjectInput::new(d("0001-01-01"));
    task(&mut p, 1, 100).deadline = Some(d("0001-01-10"));
    assert_eq!(schedule(&p), Err(CpmError::DateOutOfRange(Some(id(1)))));

    // The finish alone, for callers that give only the tasks that moved.
    assert_eq!(
        liveplan_cpm::check_dates(d("9999-12-31").succ_opt().unwrap(), []),
        Err(CpmError::DateOutOfRange(None))
    );
    assert_eq!(liveplan_cpm::check_dates(d("9999-12-31"), []), Ok(()));
}
