//! Working-day calendars and the integer time axis the engine computes on.
//!
//! The engine never does date arithmetic in its hot loops. Every task lives on the
//! *half-day axis* of its own calendar: `h = 2k` is the start of the `k`-th working
//! day of that calendar (08:00 in Microsoft Project terms) and `h = 2k + 1` is its
//! end (17:00). Adding working days is then integer addition, and the morning/evening
//! distinction reproduces how Microsoft Project tells "finishes Friday" from "starts
//! Monday" without storing times of day.
//!
//! Between calendars, points travel through the *global axis* `g = 2d + p`, where `d`
//! is a day number (days from the common era) and `p` is 0 for the start and 1 for the
//! end of that day.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// Which weekdays are working days. Bit 0 is Monday, bit 6 is Sunday.
///
/// A mask instead of a list keeps calendars `Copy`-cheap and lets the engine count
/// working days in whole weeks with one multiplication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WeekdayMask(pub u8);

impl WeekdayMask {
    /// Monday to Friday, the default of Microsoft Project and of liveplan.
    pub const MON_FRI: WeekdayMask = WeekdayMask(0b0001_1111);
    /// Every day: PSPLIB and other calendar-free models map onto this.
    pub const ALL: WeekdayMask = WeekdayMask(0b0111_1111);

    /// Whether `weekday` (0 = Monday) is a working day.
    pub fn is_working(self, weekday: u32) -> bool {
        self.0 & (1 << weekday) != 0
    }
}

impl Default for WeekdayMask {
    fn default() -> Self {
        WeekdayMask::MON_FRI
    }
}

/// An inclusive range of non-working days (holidays, shutdowns).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DateRange {
    /// First non-working day.
    pub first: NaiveDate,
    /// Last non-working day (inclusive), so a single holiday has `first == last`.
    pub last: NaiveDate,
}

impl DateRange {
    /// A one-day exception, the common case of a public holiday.
    pub fn day(d: NaiveDate) -> Self {
        DateRange { first: d, last: d }
    }
}

/// A working-day calendar as the scheduler sees it.
///
/// Only whole days are modelled: liveplan durations and lags are in working days, so
/// hours would only add rounding rules without changing any date a client sees.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkCalendar {
    /// The regular working week.
    pub working_weekdays: WeekdayMask,
    /// Non-working exceptions on top of the weekly pattern.
    pub exceptions: Vec<DateRange>,
}

impl WorkCalendar {
    /// Monday to Friday without holidays.
    pub fn mon_fri() -> Self {
        WorkCalendar::default()
    }

    /// Seven working days a week without holidays.
    pub fn all_days() -> Self {
        WorkCalendar {
            working_weekdays: WeekdayMask::ALL,
            exceptions: Vec::new(),
        }
    }
}

/// Day number of a date: days from the common era (0001-01-01 is day 1, a Monday).
pub(crate) fn day_number(d: NaiveDate) -> i32 {
    d.num_days_from_ce()
}

/// The date of a day number.
pub(crate) fn date_of(day: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(day).unwrap_or(NaiveDate::MAX)
}

/// Weekday of a day number, 0 = Monday.
#[inline]
fn weekday(day: i32) -> usize {
    (day - 1).rem_euclid(7) as usize
}

/// A calendar compiled for fast lookups.
///
/// Inside `[base, base + len)` a table holds, for each day, how many working days
/// precede it, and the day of each working day; all exceptions lie inside that window,
/// so outside it the calendar is purely weekly and is extrapolated arithmetically.
/// That keeps the tables small however far constraints or long chains push dates.
#[derive(Clone, Debug)]
pub(crate) struct CalTable {
    /// Window index of working day 0 (the anchor's).
    origin: i32,
    mask: u8,
    per_week: i32,
    base: i32,
    len: i32,
    /// `wd_before[i]`: number of the first working day at or after `base + i`.
    wd_before: Vec<i32>,
    /// Day number of each working day inside the window.
    day_of: Vec<i32>,
    /// The same as dates: outputs need one per task field, and chrono's conversion is
    /// the most expensive step of building a `Schedule`.
    dates: Vec<NaiveDate>,
    /// `cnt[w][r]`: working days among `r` consecutive days starting on weekday `w`.
    cnt: [[i32; 8]; 7],
    /// `nth[w][r]`: offset of the `r`-th working day counted forward from weekday `w`.
    nth: [[i32; 7]; 7],
    /// `nth_back[w][r]`: offset back to the `r`-th working day counted backward from weekday `w`.
    nth_back: [[i32; 7]; 7],
}

impl CalTable {
    /// Compiles `cal` with a table covering at least `[lo, hi]` (day numbers).
    ///
    /// Working days are numbered from `anchor` (working day 0 is the first one at or
    /// after it), so tables rebuilt over a wider window keep every computed point valid.
    pub(crate) fn new(cal: &WorkCalendar, anchor: i32, lo: i32, hi: i32) -> Result<CalTable, ()> {
        let mask = cal.working_weekdays.0 & 0x7f;
        if mask == 0 {
            return Err(());
        }
        let mut lo = lo.min(anchor);
        let mut hi = hi.max(anchor);
        for e in &cal.exceptions {
            lo = lo.min(day_number(e.first));
            hi = hi.max(day_number(e.last));
        }
        let base = lo - 7;
        let len = (hi + 8 - base).max(1);
        let mut working = vec![true; len as usize];
        for (i, w) in working.iter_mut().enumerate() {
            *w = mask & (1 << weekday(base + i as i32)) != 0;
        }
        for e in &cal.exceptions {
            let a = (day_number(e.first) - base).max(0);
            let b = (day_number(e.last) - base).min(len - 1);
            for i in a..=b {
                working[i as usize] = false;
            }
        }
        let mut wd_before = Vec::with_capacity(len as usize + 1);
        let mut day_of = Vec::new();
        let mut c = 0;
        for (i, &w) in working.iter().enumerate() {
            wd_before.push(c);
            if w {
                day_of.push(base + i as i32);
                c += 1;
            }
        }
        wd_before.push(c);
        let origin = wd_before[(anchor - base) as usize];
        for w in &mut wd_before {
            *w -= origin;
        }
        let mut cnt = [[0i32; 8]; 7];
        let mut nth = [[0i32; 7]; 7];
        let mut nth_back = [[0i32; 7]; 7];
        for w in 0..7 {
            let mut r = 0;
            for i in 0..7 {
                cnt[w][i + 1] = cnt[w][i] + i32::from(mask & (1 << ((w + i) % 7)) != 0);
                if mask & (1 << ((w + i) % 7)) != 0 {
                    nth[w][r] = i as i32;
                    r += 1;
                }
            }
            let mut r = 0;
            for i in 0..7 {
                if mask & (1 << ((w + 7 - i) % 7)) != 0 {
                    nth_back[w][r] = i as i32;
                    r += 1;
                }
            }
        }
        let dates = day_of.iter().map(|&d| date_of(d)).collect();
        Ok(CalTable {
            dates,
            origin,
            mask,
            per_week: mask.count_ones() as i32,
            base,
            len,
            wd_before,
            day_of,
            cnt,
            nth,
            nth_back,
        })
    }

    /// Days the table holds.
    #[cfg(test)]
    pub(crate) fn span(&self) -> i32 {
        self.len
    }

    /// Whether the table window covers `[lo, hi]`.
    pub(crate) fn covers(&self, lo: i32, hi: i32) -> bool {
        self.base <= lo && hi < self.base + self.len
    }

    /// Working days of the pure weekly pattern in `[a, b)`, `a <= b`.
    #[inline]
    fn weekly_count(&self, a: i32, b: i32) -> i32 {
        let n = b - a;
        (n / 7) * self.per_week + self.cnt[weekday(a)][(n % 7) as usize]
    }

    /// Number of the first working day at or after `day`.
    #[inline]
    pub(crate) fn wd_before(&self, day: i32) -> i32 {
        let i = day - self.base;
        if (0..=self.len).contains(&i) {
            self.wd_before[i as usize]
        } else if i > self.len {
            self.wd_before[self.len as usize] + self.weekly_count(self.base + self.len, day)
        } else {
            self.wd_before[0] - self.weekly_count(day, self.base)
        }
    }

    #[inline]
    pub(crate) fn is_working(&self, day: i32) -> bool {
        let i = day - self.base;
        if (0..self.len).contains(&i) {
            self.wd_before[i as usize + 1] != self.wd_before[i as usize]
        } else {
            self.mask & (1 << weekday(day)) != 0
        }
    }

    /// Day number of working day `k`.
    #[inline]
    pub(crate) fn day_of(&self, k: i32) -> i32 {
        let k = k + self.origin;
        let n = self.day_of.len() as i32;
        if (0..n).contains(&k) {
            self.day_of[k as usize]
        } else if k >= n {
            let k = k - n;
            let start = self.base + self.len;
            start + (k / self.per_week) * 7 + self.nth[weekday(start)][(k % self.per_week) as usize]
        } else {
            let k = -k - 1;
            let start = self.base - 1;
            start
                - (k / self.per_week) * 7
                - self.nth_back[weekday(start)][(k % self.per_week) as usize]
        }
    }

    /// The first half-day point of this calendar at or after global point `g`.
    #[inline]
    pub(crate) fn up(&self, g: i32) -> i32 {
        let d = g.div_euclid(2);
        let p = g.rem_euclid(2);
        if self.is_working(d) {
            2 * self.wd_before(d) + p
        } else {
            2 * self.wd_before(d)
        }
    }

    /// The last half-day point of this calendar at or before global point `g`.
    #[inline]
    pub(crate) fn down(&self, g: i32) -> i32 {
        let d = g.div_euclid(2);
        let p = g.rem_euclid(2);
        if self.is_working(d) {
            2 * self.wd_before(d) + p
        } else {
            2 * self.wd_before(d) - 1
        }
    }

    /// Global point of half-day point `h`.
    #[inline]
    pub(crate) fn global(&self, h: i32) -> i32 {
        2 * self.day_of(h.div_euclid(2)) + h.rem_euclid(2)
    }

    /// The date a half-day point falls on.
    pub(crate) fn date(&self, h: i32) -> NaiveDate {
        let k = h.div_euclid(2);
        match self.dates.get((k + self.origin) as usize) {
            Some(d) if k + self.origin >= 0 => *d,
            _ => date_of(self.day_of(k)),
        }
    }

    /// Start of `date`, or of the next working day if `date` is not one.
    pub(crate) fn start_of(&self, date: NaiveDate) -> i32 {
        self.up(2 * day_number(date))
    }

    /// End of `date`, or of the previous working day if `date` is not one.
    pub(crate) fn end_of(&self, date: NaiveDate) -> i32 {
        self.down(2 * day_number(date) + 1)
    }
}

/// Moves `n` working days forward (or back if negative) from `h`, landing like
/// Microsoft Project: forward moves end at the end of a working day, backward moves
/// at the start of one.
#[inline]
pub(crate) fn shift(h: i32, n: i32) -> i32 {
    if n > 0 {
        let r = h + 2 * n;
        r - (1 - (r & 1))
    } else if n < 0 {
        let r = h + 2 * n;
        r + (r & 1)
    } else {
        h
    }
}

/// The next start of work at or after `h`.
#[inline]
pub(crate) fn next_start(h: i32) -> i32 {
    h + (h & 1)
}

/// The previous end of work at or before `h`.
#[inline]
pub(crate) fn prev_finish(h: i32) -> i32 {
    h - (1 - (h & 1))
}

/// Working days completed by point `h`: floats are differences of this.
#[inline]
pub(crate) fn work(h: i32) -> i32 {
    (h + 1).div_euclid(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn weekday_convention() {
        // 2026-03-02 is a Monday.
        assert_eq!(weekday(day_number(d("2026-03-02"))), 0);
        assert_eq!(weekday(day_number(d("2026-03-08"))), 6);
    }

    #[test]
    fn table_and_extrapolation_agree() {
        let cal = WorkCalendar {
            working_weekdays: WeekdayMask(0b0010_1101),
            exceptions: vec![],
        };
        let lo = day_number(d("2026-01-01"));
        let small = CalTable::new(&cal, lo, lo, lo + 3).unwrap();
        let big = CalTable::new(&cal, lo, lo - 400, lo + 400).unwrap();
        // Shift both to the same origin of working-day numbering.
        let off = big.wd_before(lo) - small.wd_before(lo);
        for day in lo - 300..lo + 300 {
            assert_eq!(small.wd_before(day) + off, big.wd_before(day), "day {day}");
            assert_eq!(small.is_working(day), big.is_working(day));
        }
        for k in -100..100 {
            assert_eq!(small.day_of(k), big.day_of(k + off), "k {k}");
            assert_eq!(small.wd_before(small.day_of(k)), k);
            assert_eq!(off, 0);
        }
    }

    #[test]
    fn holidays_and_points() {
        let cal = WorkCalendar {
            working_weekdays: WeekdayMask::MON_FRI,
            exceptions: vec![DateRange::day(d("2026-03-04"))],
        };
        let t = CalTable::new(
            &cal,
            day_number(d("2026-03-01")),
            day_number(d("2026-03-01")),
            day_number(d("2026-03-31")),
        )
        .unwrap();
        let mon = t.start_of(d("2026-03-02"));
        assert_eq!(mon % 2, 0);
        // Wednesday is a holiday: Mon + 3 days ends Thursday.
        assert_eq!(t.date(shift(mon, 3)), d("2026-03-05"));
        // A Saturday start moves to Monday, a Saturday finish back to Friday.
        assert_eq!(t.date(t.start_of(d("2026-03-07"))), d("2026-03-09"));
        assert_eq!(t.date(t.end_of(d("2026-03-07"))), d("2026-03-06"));
        assert_eq!(
            t.global(t.start_of(d("2026-03-09"))),
            2 * day_number(d("2026-03-09"))
        );
        // Friday evening minus one day is Friday morning.
        let fri_eve = t.end_of(d("2026-03-06"));
        assert_eq!(shift(fri_eve, -1), t.start_of(d("2026-03-06")));
        assert_eq!(next_start(fri_eve), t.start_of(d("2026-03-09")));
        assert_eq!(work(fri_eve) - work(mon), 4);
    }
}
