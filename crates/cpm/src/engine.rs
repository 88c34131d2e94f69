//! The engine: interned network, forward/backward passes, incremental repair.
//!
//! Over 800 lines on purpose: the passes and the incremental repair share the interned network's
//! private invariants (dense indices, topological order, dirty sets); split into modules they
//! would have to be made visible crate-wide.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use chrono::NaiveDate;

use crate::calendar::{CalTable, day_number, next_start, prev_finish, shift, work};
use crate::graph::{Adjacency, Edge, MAX_TASKS, TopoOrder, find_cycle, topo_order};
use crate::{
    Constraint, CpmError, Edit, LinkInput, LinkType, ProjectInput, Schedule, TaskId, TaskSchedule,
};

const NONE: u32 = u32::MAX;
/// Longest duration or lag accepted, in working days (about 380 years): keeps every
/// point far inside `i32` and every date inside chrono's range.
const MAX_SPAN: i32 = 100_000;
/// Calendar tables never grow past this many days (~400 years); beyond, dates are
/// extrapolated from the weekly pattern, which is exact there.
const MAX_WINDOW_DAYS: i32 = 146_000;
const NO_LB: i32 = i32::MIN;
const NO_UB: i32 = i32::MAX;

const F_SUMMARY: u8 = 1;
const F_MANUAL: u8 = 2;
const F_FINISHED: u8 = 4;
const F_STARTED: u8 = 8;
const F_ALAP: u8 = 16;
/// Has links into summaries (expanded in the adjacency; free float needs the originals).
const F_SUMLINK: u8 = 32;

const C_NONE: u8 = 0;
const C_FNET: u8 = 1;
const C_SNLT: u8 = 2;
const C_FNLT: u8 = 3;
const C_MSO: u8 = 4;
const C_MFO: u8 = 5;

const K_FS: u8 = 0;
const K_SS: u8 = 1;
const K_FF: u8 = 2;
const K_SF: u8 = 3;

fn kind_code(k: LinkType) -> u8 {
    match k {
        LinkType::FS => K_FS,
        LinkType::SS => K_SS,
        LinkType::FF => K_FF,
        LinkType::SF => K_SF,
    }
}

/// Per-task values the passes touch for every link: packed so that reading a
/// neighbour costs one cache line instead of one per array.
#[derive(Clone, Copy, Debug, Default)]
struct Node {
    es: i32,
    ef: i32,
    ls: i32,
    lf: i32,
    /// Late start before progress overrides it: what predecessors see.
    ls_calc: i32,
    cal: u32,
    dur: i32,
    flags: u8,
}

/// The network in memory, with its last computed results.
///
/// Tasks are interned to dense `u32` indices; their dates are integers on each
/// calendar's half-day axis (see the `calendar` module), kept in one packed record per
/// task for what every link reads and in plain vectors for the rest, and links live in
/// flat adjacency arrays in both directions. The passes therefore allocate nothing per
/// task and only touch calendar tables when a link crosses calendars. Keeping it alive
/// between edits is what makes incremental repair possible; it is `Send + Sync`, so the
/// scheduler worker can own one per project.
#[derive(Clone, Debug)]
pub struct Engine {
    input: ProjectInput,
    ids: Vec<TaskId>,
    index: HashMap<TaskId, u32>,
    /// Position of each task in `input.tasks`.
    input_pos: Vec<u32>,
    link_pos: HashMap<(u32, u32), usize>,
    /// Links into summaries, by predecessor: (summary, kind, lag).
    summary_links: HashMap<u32, Vec<(u32, u8, i32)>>,
    cals: Vec<CalTable>,
    /// Per calendar: start of the project, on that calendar's axis.
    ps: Vec<i32>,
    /// Per calendar: start of remaining work after the status date (or `NO_LB`).
    status: Vec<i32>,
    /// Per calendar: the project finish (inclusive end).
    pf: Vec<i32>,
    /// Project finish on the global axis.
    pf_global: i32,
    /// Hot per-task state, one cache-friendly record per task.
    nodes: Vec<Node>,
    /// The task's own calendar (for a summary, `nodes[..].cal` is the instant axis and
    /// this is the calendar its floats are counted in).
    own_cal: Vec<u32>,
    /// Remaining duration: what the backward pass subtracts.
    rem: Vec<i32>,
    ckind: Vec<u8>,
    cdate: Vec<i32>,
    snet: Vec<i32>,
    deadline: Vec<i32>,
    fixed_s: Vec<i32>,
    fixed_f: Vec<i32>,
    parent: Vec<u32>,
    child_start: Vec<u32>,
    children: Vec<u32>,
    succ: Adjacency,
    pred: Adjacency,
    topo: TopoOrder,
    /// Number of ALAP tasks: they switch incremental repair to full recompute.
    alap_count: usize,
    /// Summaries: the late-finish bound handed down to their children.
    lfb: Vec<i32>,
    /// Tasks whose outputs may have moved since the last `take_changes`.
    touched: Vec<u32>,
    touched_mark: Vec<bool>,
    /// Everything may have moved (full recompute or rebuild since `take_changes`).
    touched_all: bool,
    /// Scratch for incremental repair.
    queued: Vec<bool>,
    heap: BinaryHeap<u32>,
    rheap: BinaryHeap<Reverse<u32>>,
}

impl Engine {
    /// Interns, validates and fully schedules `input`.
    pub fn new(input: ProjectInput) -> Result<Engine, CpmError> {
        let n = input.tasks.len();
        if n >= MAX_TASKS {
            return Err(CpmError::TooManyTasks(n));
        }
        let mut index = HashMap::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        for (i, t) in input.tasks.iter().enumerate() {
            if index.insert(t.id, i as u32).is_some() {
                return Err(CpmError::DuplicateTask(t.id));
            }
            ids.push(t.id);
        }

        // Calendars: 0 is the project calendar.
        let mut cal_index: HashMap<crate::CalendarId, u32> = HashMap::new();
        let anchor = day_number(input.start);
        // The named calendars before the project's own: a caller that passes one of them as
        // the project calendar too learns its id.
        let named = input.calendars.iter().map(|(id, c)| (Some(*id), c));
        for (id, c) in named.chain(std::iter::once((None, &input.calendar))) {
            for x in &c.exceptions {
                let (a, b) = (day_number(x.first), day_number(x.last));
                if a.min(b) < anchor - MAX_WINDOW_DAYS || a.max(b) > anchor + MAX_WINDOW_DAYS {
                    return Err(CpmError::ExceptionOutOfRange(x.first, id));
                }
            }
        }
        let lo = anchor - 7;
        let hi = anchor + 3 * 366;
        let mut named = Vec::with_capacity(input.calendars.len());
        for (id, c) in &input.calendars {
            named.push(
                CalTable::new(c, anchor, lo, hi).map_err(|_| CpmError::EmptyCalendar(Some(*id)))?,
            );
        }
        let mut cals = vec![
            CalTable::new(&input.calendar, anchor, lo, hi)
                .map_err(|_| CpmError::EmptyCalendar(None))?,
        ];
        for (id, table) in input.calendars.keys().zip(named) {
            cal_index.insert(*id, cals.len() as u32);
            cals.push(table);
        }
        // Summaries live on a seven-day axis, where every point is a real instant: their
        // dates roll up from subtasks on any calendar, a Saturday finish included.
        let instant_cal = cals.len() as u32;
        cals.push(
            CalTable::new(&crate::WorkCalendar::all_days(), anchor, lo, hi).expect("non-empty"),
        );

        // Hierarchy.
        let mut parent = vec![NONE; n];
        for (i, t) in input.tasks.iter().enumerate() {
            if let Some(p) = t.parent {
                let pi = *index.get(&p).ok_or(CpmError::UnknownTask(p))?;
                parent[i] = pi;
            }
        }
        for i in 0..n {
            let mut v = parent[i];
            let mut steps = 0;
            while v != NONE {
                steps += 1;
                if steps > n || v as usize == i {
                    return Err(CpmError::HierarchyCycle(ids[i]));
                }
                v = parent[v as usize];
            }
        }
        let mut child_count = vec![0u32; n + 1];
        for &p in &parent {
            if p != NONE {
                child_count[p as usize] += 1;
            }
        }
        let mut child_start = vec![0u32; n + 1];
        for i in 0..n {
            child_start[i + 1] = child_start[i] + child_count[i];
        }
        let mut children = vec![0u32; child_start[n] as usize];
        let mut fill = child_start.clone();
        for (i, &p) in parent.iter().enumerate() {
            if p != NONE {
                children[fill[p as usize] as usize] = i as u32;
                fill[p as usize] += 1;
            }
        }

        let mut e = Engine {
            ids,
            index,
            input_pos: (0..n as u32).collect(),
            link_pos: HashMap::with_capacity(input.links.len()),
            summary_links: HashMap::new(),
            ps: Vec::new(),
            status: Vec::new(),
            pf: vec![0; cals.len()],
            pf_global: 0,
            cals,
            nodes: vec![Node::default(); n],
            own_cal: vec![0; n],
            rem: vec![0; n],
            ckind: vec![C_NONE; n],
            cdate: vec![0; n],
            snet: vec![NO_LB; n],
            deadline: vec![NO_UB; n],
            fixed_s: vec![0; n],
            fixed_f: vec![0; n],
            parent,
            child_start,
            children,
            succ: Adjacency::default(),
            pred: Adjacency::default(),
            topo: TopoOrder::default(),
            alap_count: 0,
            lfb: vec![NO_UB; n],
            touched: Vec::new(),
            touched_mark: vec![false; n],
            touched_all: true,
            queued: vec![false; n],
            heap: BinaryHeap::new(),
            rheap: BinaryHeap::new(),
            input,
        };
        e.compute_project_points();
        for i in 0..n {
            let c = match e.input.tasks[i].calendar {
                None => 0,
                Some(id) => *cal_index.get(&id).ok_or(CpmError::UnknownCalendar(id))?,
            };
            e.own_cal[i] = c;
            e.nodes[i].cal = if e.is_summary(i as u32) {
                instant_cal
            } else {
                c
            };
        }
        for i in 0..n {
            e.load_task(i as u32);
        }

        // Links, expanded into summaries' leaves.
        let mut pairs_out: Vec<(u32, Edge)> = Vec::with_capacity(e.input.links.len());
        let mut pairs_in: Vec<(u32, Edge)> = Vec::with_capacity(e.input.links.len());
        let mut leaves = Vec::new();
        for (li, l) in e.input.links.iter().enumerate() {
            let p = *e
                .index
                .get(&l.predecessor)
                .ok_or(CpmError::UnknownTask(l.predecessor))?;
            let s = *e
                .index
                .get(&l.successor)
                .ok_or(CpmError::UnknownTask(l.successor))?;
            if e.link_pos.insert((p, s), li).is_some() {
                return Err(CpmError::DuplicateLink(l.predecessor, l.successor));
            }
            if l.lag.unsigned_abs() > MAX_SPAN as u32 {
                return Err(CpmError::OutOfRange(l.successor));
            }
            if p == s {
                return Err(CpmError::Cycle(vec![l.predecessor]));
            }
            leaves.clear();
            e.leaves_of(s, &mut leaves);
            let kind = kind_code(l.kind);
            if e.is_summary(s) {
                e.summary_links.entry(p).or_default().push((s, kind, l.lag));
            }
            for &t in &leaves {
                pairs_out.push((p, Edge::new(t, l.lag, kind)));
                pairs_in.push((t, Edge::new(p, l.lag, kind)));
            }
        }
        for &p in e.summary_links.keys() {
            e.nodes[p as usize].flags |= F_SUMLINK;
        }
        e.succ = Adjacency::build(n, &pairs_out);
        e.pred = Adjacency::build(n, &pairs_in);
        drop(pairs_out);
        drop(pairs_in);

        let order = match topo_order(n, &e.succ, &e.parent) {
            Ok(o) => o,
            Err(()) => {
                let c = find_cycle(n, &e.succ, &e.parent);
                return Err(CpmError::Cycle(
                    c.iter().map(|&v| e.ids[v as usize]).collect(),
                ));
            }
        };
        e.topo = TopoOrder::from_order(order);
        e.recompute();
        Ok(e)
    }

    fn compute_project_points(&mut self) {
        self.ps = self
            .cals
            .iter()
            .map(|c| c.start_of(self.input.start))
            .collect();
        self.status = match self.input.status_date {
            None => vec![NO_LB; self.cals.len()],
            Some(d) => self
                .cals
                .iter()
                .map(|c| next_start(c.end_of(d) + 1))
                .collect(),
        };
    }

    /// Leaf tasks under `v` (or `v` itself if it is not a summary).
    fn leaves_of(&self, v: u32, out: &mut Vec<u32>) {
        let (a, b) = (
            self.child_start[v as usize],
            self.child_start[v as usize + 1],
        );
        if a == b {
            out.push(v);
            return;
        }
        for i in a..b {
            self.leaves_of(self.children[i as usize], out);
        }
    }

    fn is_summary(&self, v: u32) -> bool {
        self.child_start[v as usize] != self.child_start[v as usize + 1]
    }

    /// Converts a task's input fields to its calendar's axis.
    fn load_task(&mut self, v: u32) {
        let i = v as usize;
        let t = &self.input.tasks[self.input_pos[i] as usize];
        let c = &self.cals[self.nodes[i].cal as usize];
        let d = if t.is_milestone {
            0
        } else {
            t.duration.min(MAX_SPAN as u32) as i32
        };
        let mut flags = 0u8;
        if self.child_start[i] != self.child_start[i + 1] {
            flags |= F_SUMMARY;
        }
        let (mut ck, mut cd) = (C_NONE, 0);
        let mut snet_date: Option<NaiveDate> = t.start_date;
        match t.constraint {
            Constraint::Asap => {}
            // A summary has no dates of its own to push late.
            Constraint::Alap if flags & F_SUMMARY == 0 => flags |= F_ALAP,
            Constraint::Alap => {}
            Constraint::Snet(x) => snet_date = snet_date.max(Some(x)),
            Constraint::Fnet(x) => (ck, cd) = (C_FNET, c.end_of(x)),
            Constraint::Snlt(x) => (ck, cd) = (C_SNLT, c.start_of(x)),
            Constraint::Fnlt(x) => (ck, cd) = (C_FNLT, c.end_of(x)),
            Constraint::Mso(x) => (ck, cd) = (C_MSO, c.start_of(x)),
            Constraint::Mfo(x) => (ck, cd) = (C_MFO, c.end_of(x)),
        }
        // Start bounds of ancestors hold for every task below them.
        let mut a = self.parent[i];
        while a != NONE {
            let at = &self.input.tasks[self.input_pos[a as usize] as usize];
            snet_date = snet_date.max(at.start_date);
            if let Constraint::Snet(x) = at.constraint {
                snet_date = snet_date.max(Some(x));
            }
            a = self.parent[a as usize];
        }
        let snet = snet_date.map_or(NO_LB, |x| c.start_of(x));
        let deadline = t.deadline.map_or(NO_UB, |x| c.end_of(x));
        let mut rem = d;
        let (mut fs, mut ff) = (0, 0);
        if let Some(af) = t.actual_finish {
            flags |= F_FINISHED;
            ff = c.end_of(af);
            fs = match t.actual_start {
                Some(s) => c.start_of(s).min(next_start(ff)),
                None => shift(ff, -d),
            };
            if d == 0 {
                fs = fs.min(ff);
            }
            rem = 0;
        } else if let Some(s) = t.actual_start {
            flags |= F_STARTED;
            fs = c.start_of(s);
            if self.input.status_date.is_some() {
                let pct = i32::from(t.percent_complete.min(100));
                rem = (d * (100 - pct) + 99) / 100;
            }
        } else if t.manually_scheduled
            && (t.scheduled_start.is_some() || t.scheduled_finish.is_some())
        {
            flags |= F_MANUAL;
            match (t.scheduled_start, t.scheduled_finish) {
                (Some(s), Some(f)) => {
                    fs = c.start_of(s);
                    ff = c.end_of(f).max(fs);
                }
                (Some(s), None) => {
                    fs = c.start_of(s);
                    ff = shift(fs, d);
                }
                (None, Some(f)) => {
                    ff = c.end_of(f);
                    fs = shift(ff, -d);
                }
                (None, None) => {}
            }
        }
        self.nodes[i].dur = d;
        self.rem[i] = rem;
        flags |= self.nodes[i].flags & F_SUMLINK;
        let was_alap = self.nodes[i].flags & F_ALAP != 0;
        self.alap_count =
            self.alap_count + usize::from(flags & F_ALAP != 0) - usize::from(was_alap);
        self.nodes[i].flags = flags;
        self.ckind[i] = ck;
        self.cdate[i] = cd;
        self.snet[i] = snet;
        self.deadline[i] = deadline;
        self.fixed_s[i] = fs;
        self.fixed_f[i] = ff;
    }

    #[inline]
    fn conv_up(&self, h: i32, from: u32, to: u32) -> i32 {
        if from == to {
            h
        } else {
            self.cals[to as usize].up(self.cals[from as usize].global(h))
        }
    }

    #[inline]
    fn conv_down(&self, h: i32, from: u32, to: u32) -> i32 {
        if from == to {
            h
        } else {
            self.cals[to as usize].down(self.cals[from as usize].global(h))
        }
    }

    /// Earliest start that link `e` (from `e.node()` into `v`) allows, on `v`'s axis.
    ///
    /// After the backward pass, an ALAP predecessor drives non-ALAP successors from its
    /// late dates (Microsoft Project's rule).
    #[inline]
    fn link_bound(&self, e: &Edge, v: u32, alap_pass: bool) -> i32 {
        let p = e.node() as usize;
        let (pc, vc) = (self.nodes[p].cal, self.nodes[v as usize].cal);
        let (pflags, vflags) = (self.nodes[p].flags, self.nodes[v as usize].flags);
        // ALAP predecessor -> non-ALAP successor: late dates. Summary -> ALAP
        // successor: the summary's plain early roll-up (MPXJ expands the link per
        // subtask and applies the same rule to each).
        let late = alap_pass
            && ((pflags & F_ALAP != 0 && vflags & F_ALAP == 0)
                || (pflags & F_SUMMARY != 0 && vflags & F_ALAP != 0));
        let (ps, pf) = if late {
            (self.nodes[p].ls, self.nodes[p].lf)
        } else {
            (self.nodes[p].es, self.nodes[p].ef)
        };
        match e.kind() {
            K_FS => shift(self.conv_up(pf, pc, vc), e.lag),
            K_SS => shift(self.conv_up(ps, pc, vc), e.lag),
            K_FF => {
                let x = self.conv_up(pf, pc, vc);
                // Microsoft Project clamps an FF-driven start to the project start.
                shift(shift(x, -self.rem[v as usize]), e.lag).max(self.ps[vc as usize])
            }
            _ => {
                let x = self.conv_up(ps, pc, vc);
                shift(shift(x, -self.nodes[v as usize].dur), e.lag)
            }
        }
    }

    /// Forward step for one task; returns whether its early dates changed.
    #[inline]
    fn forward(&mut self, v: u32, alap_pass: bool) -> bool {
        let i = v as usize;
        let f = self.nodes[i].flags;
        let (es, ef);
        if f & F_SUMMARY != 0 {
            let (a, b) = (self.child_start[i], self.child_start[i + 1]);
            let vc = self.nodes[i].cal;
            let (mut lo, mut hi) = (NO_UB, NO_LB);
            let (mut plain_lo, mut plain_hi) = (NO_UB, NO_LB);
            for k in a..b {
                let c = self.children[k as usize];
                let n = &self.nodes[c as usize];
                // Once late dates exist, an ALAP subtask counts where it sits: late.
                let (cs, cf) = if alap_pass && n.flags & F_ALAP != 0 {
                    (n.ls, n.lf)
                } else {
                    (n.es, n.ef)
                };
                lo = lo.min(self.conv_up(cs, n.cal, vc));
                hi = hi.max(self.conv_down(cf, n.cal, vc));
                // ...except towards ALAP successors, which see every subtask early.
                let (ps, pf) = if n.flags & F_SUMMARY != 0 {
                    (n.ls, n.lf)
                } else {
                    (n.es, n.ef)
                };
                plain_lo = plain_lo.min(self.conv_up(ps, n.cal, vc));
                plain_hi = plain_hi.max(self.conv_down(pf, n.cal, vc));
            }
            es = lo;
            ef = hi.max(lo);
            // A summary has no late dates of its own in the passes: its `ls`/`lf` slots
            // hold the roll-up of plain early dates (see `link_bound`).
            self.nodes[i].ls = plain_lo;
            self.nodes[i].lf = plain_hi.max(plain_lo);
        } else if f & (F_FINISHED | F_MANUAL) != 0 {
            es = self.fixed_s[i];
            ef = self.fixed_f[i];
        } else if f & F_STARTED != 0 {
            es = self.fixed_s[i];
            let st = self.status[self.nodes[i].cal as usize];
            ef = if st == NO_LB {
                shift(es, self.nodes[i].dur)
            } else {
                let from = st.max(es);
                if self.rem[i] > 0 {
                    shift(from, self.rem[i])
                } else {
                    prev_finish(from).max(es)
                }
            };
        } else {
            let d = self.nodes[i].dur;
            let mut s;
            let preds = self.pred.of(v);
            if preds.is_empty() {
                s = if self.snet[i] != NO_LB {
                    self.snet[i]
                } else if self.ckind[i] == C_FNET {
                    shift(self.cdate[i], -d)
                } else {
                    self.ps[self.nodes[i].cal as usize]
                };
            } else {
                s = NO_LB;
                for e in preds {
                    s = s.max(self.link_bound(e, v, alap_pass));
                }
            }
            // A milestone may sit at the end of a working day; other tasks start at
            // the next start of work.
            if d != 0 {
                s = next_start(s);
            }
            s = s.max(self.snet[i]);
            let c = self.cdate[i];
            let mut fin = NO_LB;
            match self.ckind[i] {
                C_FNET => s = s.max(shift(c, -d)),
                C_SNLT => s = s.min(c),
                C_FNLT => s = s.min(shift(c, -d)),
                C_MSO => s = c,
                C_MFO => {
                    s = shift(c, -d);
                    fin = c;
                }
                _ => {}
            }
            es = s;
            ef = if fin != NO_LB { fin } else { shift(s, d) };
        }
        let changed = es != self.nodes[i].es || ef != self.nodes[i].ef;
        self.nodes[i].es = es;
        self.nodes[i].ef = ef;
        changed
    }

    /// Latest finish of `v` that link `e` (from `v` to `e.node()`) allows, on `v`'s axis.
    #[inline]
    fn late_bound(&self, e: &Edge, v: u32, dv: i32) -> i32 {
        let s = e.node() as usize;
        let (vc, sc) = (self.nodes[v as usize].cal, self.nodes[s].cal);
        match e.kind() {
            K_FS => self.conv_down(shift(self.nodes[s].ls_calc, -e.lag), sc, vc),
            K_FF => self.conv_down(shift(self.nodes[s].lf, -e.lag), sc, vc),
            K_SS => {
                let a = next_start(self.conv_up(self.nodes[s].ls, sc, vc));
                shift(self.remove_lag(a, e.lag, vc, sc), dv)
            }
            _ if dv == 0 => self.conv_down(shift(self.nodes[s].lf, -e.lag), sc, vc),
            _ => {
                let a = shift(self.conv_down(self.nodes[s].lf, sc, vc), dv);
                self.remove_lag(a, e.lag, vc, sc)
            }
        }
    }

    /// Takes a lag off a point of the predecessor's axis; lags count in working days of
    /// the successor's calendar, so the subtraction happens there.
    #[inline]
    fn remove_lag(&self, h: i32, lag: i32, vc: u32, sc: u32) -> i32 {
        if lag == 0 {
            h
        } else {
            self.conv_down(shift(self.conv_down(h, vc, sc), -lag), sc, vc)
        }
    }

    /// Backward step for one task; returns whether its late values changed.
    #[inline]
    fn backward(&mut self, v: u32) -> bool {
        let i = v as usize;
        let f = self.nodes[i].flags;
        let vc = self.nodes[i].cal as usize;
        let (old_lf, old_ls, old_lsc, old_lfb) = (
            self.nodes[i].lf,
            self.nodes[i].ls,
            self.nodes[i].ls_calc,
            self.lfb[i],
        );
        if f & F_FINISHED != 0 {
            self.nodes[i].lf = self.nodes[i].ef;
            self.nodes[i].ls = self.nodes[i].es;
            self.nodes[i].ls_calc = self.nodes[i].es;
        } else {
            let summary = f & F_SUMMARY != 0;
            let d = if summary {
                work(self.nodes[i].ef) - work(self.nodes[i].es)
            } else {
                self.nodes[i].dur
            };
            let pf = self.pf[vc];
            let mut lf = pf;
            let started = f & F_STARTED != 0;
            for e in self.succ.of(v) {
                // A finished successor no longer constrains anything, and neither does
                // a start-to-start link once this task has started: it is satisfied.
                if self.nodes[e.node() as usize].flags & F_FINISHED != 0
                    || (started && e.kind() == K_SS)
                {
                    continue;
                }
                lf = lf.min(self.late_bound(e, v, d));
            }
            let p = self.parent[i];
            if p != NONE {
                let b = self.lfb[p as usize];
                if b != NO_UB {
                    lf = lf.min(self.conv_down(b, self.nodes[p as usize].cal, vc as u32));
                }
            }
            let c = self.cdate[i];
            match self.ckind[i] {
                C_MSO => lf = shift(c, d),
                C_MFO => lf = c,
                C_SNLT => lf = lf.min(shift(c, d)),
                C_FNLT => lf = lf.min(c),
                _ => {}
            }
            lf = prev_finish(lf.min(self.deadline[i]));
            if summary {
                self.lfb[i] = lf;
            } else {
                let lsc = shift(lf, -self.rem[i]);
                self.nodes[i].lf = lf;
                self.nodes[i].ls_calc = lsc;
                self.nodes[i].ls = if f & F_STARTED != 0 {
                    self.nodes[i].es
                } else {
                    lsc
                };
            }
        }
        old_lf != self.nodes[i].lf
            || old_ls != self.nodes[i].ls
            || old_lsc != self.nodes[i].ls_calc
            || old_lfb != self.lfb[i]
    }

    fn compute_pf(&mut self) -> bool {
        // `global` is monotone within a calendar: take the max per calendar first.
        let mut best = vec![NO_LB; self.cals.len()];
        for i in 0..self.ids.len() {
            if self.nodes[i].flags & F_SUMMARY == 0 {
                let b = &mut best[self.nodes[i].cal as usize];
                *b = (*b).max(self.nodes[i].ef);
            }
        }
        let mut g = NO_LB;
        for (c, &b) in best.iter().enumerate() {
            if b != NO_LB {
                g = g.max(self.cals[c].global(b));
            }
        }
        if g == NO_LB {
            g = 2 * day_number(self.input.start) + 1;
        }
        let changed = g != self.pf_global;
        self.pf_global = g;
        for c in 0..self.cals.len() {
            self.pf[c] = self.cals[c].down(g);
        }
        changed
    }

    /// Widens the calendar tables to cover every computed date, so that later passes
    /// look days up in tables instead of extrapolating week by week. Points keep their
    /// values: working days are numbered from the project start in every window.
    fn ensure_window(&mut self) {
        let n = self.ids.len();
        let mut lo = vec![NO_UB; self.cals.len()];
        let mut hi = vec![NO_LB; self.cals.len()];
        for i in 0..n {
            let c = self.nodes[i].cal as usize;
            lo[c] = lo[c].min(self.nodes[i].es).min(self.nodes[i].ls);
            hi[c] = hi[c].max(self.nodes[i].ef).max(self.nodes[i].lf);
        }
        let (mut dlo, mut dhi) = (i32::MAX, i32::MIN);
        for c in 0..self.cals.len() {
            if lo[c] <= hi[c] {
                dlo = dlo.min(self.cals[c].global(lo[c]).div_euclid(2));
                dhi = dhi.max(self.cals[c].global(hi[c]).div_euclid(2));
            }
        }
        dhi = dhi.max(self.pf_global.div_euclid(2));
        if dlo > dhi || self.cals.iter().all(|t| t.covers(dlo, dhi)) {
            return;
        }
        // Grow with margin so small drifts do not rebuild again; a plan reaching
        // centuries out keeps extrapolating instead of allocating. A table always spans
        // the project start too (working days are numbered from it), so the span counted
        // is the one the table would have: one task set at 9999-12-31 in a plan starting
        // today would otherwise cost three million days of tables, kept with the plan.
        let anchor = day_number(self.input.start);
        if dhi.max(anchor) - dlo.min(anchor) > MAX_WINDOW_DAYS {
            return;
        }
        let margin = (dhi - dlo) / 4 + 366;
        let all_days = crate::WorkCalendar::all_days();
        let cals: Vec<&crate::WorkCalendar> = std::iter::once(&self.input.calendar)
            .chain(self.input.calendars.values())
            .chain(std::iter::once(&all_days))
            .collect();
        let tables: Vec<CalTable> = cals
            .iter()
            .map(|c| CalTable::new(c, anchor, dlo - margin, dhi + margin).expect("validated"))
            .collect();
        self.cals = tables;
    }

    /// Recomputes every task from the current inputs (both passes, no re-interning).
    ///
    /// This is the reference the incremental repair is tested against, and what the
    /// full-recompute benchmark measures.
    pub fn recompute(&mut self) {
        self.touched_all = true;
        let n = self.ids.len();
        for k in 0..n {
            let v = self.topo.at[k];
            self.forward(v, false);
        }
        self.compute_pf();
        self.backward_all();
        if self.alap_count > 0 {
            for k in 0..n {
                let v = self.topo.at[k];
                self.forward(v, true);
            }
        }
        self.ensure_window();
    }

    fn backward_all(&mut self) {
        self.touched_all = true;
        let n = self.ids.len();
        for k in (0..n).rev() {
            let v = self.topo.at[k];
            self.backward(v);
        }
    }

    /// Applies one edit and repairs the schedule.
    ///
    /// Link, duration and constraint edits on non-summary tasks are repaired
    /// incrementally: only tasks the change can reach are recomputed, in topological
    /// order, and propagation stops where values do not change. Everything else
    /// rebuilds. On error nothing changes.
    pub fn apply(&mut self, edit: &Edit) -> Result<(), CpmError> {
        match edit {
            Edit::SetDuration { task, duration } => {
                let v = self.idx(*task)?;
                self.input.tasks[self.input_pos[v as usize] as usize].duration = *duration;
                self.reload_and_repair(v, &[v], &[v])
            }
            Edit::SetConstraint { task, constraint } => {
                let v = self.idx(*task)?;
                self.input.tasks[self.input_pos[v as usize] as usize].constraint = *constraint;
                if self.is_summary(v) {
                    // Its start bounds are inherited by every task below it.
                    return self.rebuild();
                }
                self.reload_and_repair(v, &[v], &[v])
            }
            Edit::SetDeadline { task, deadline } => {
                let v = self.idx(*task)?;
                self.input.tasks[self.input_pos[v as usize] as usize].deadline = *deadline;
                self.reload_and_repair(v, &[v], &[v])
            }
            Edit::SetStartDate { task, start_date } => {
                let v = self.idx(*task)?;
                self.input.tasks[self.input_pos[v as usize] as usize].start_date = *start_date;
                if self.is_summary(v) {
                    return self.rebuild();
                }
                self.reload_and_repair(v, &[v], &[v])
            }
            Edit::AddLink(l) => self.add_link(*l),
            Edit::UpdateLink(l) => {
                let (p, s) = (self.idx(l.predecessor)?, self.idx(l.successor)?);
                if l.lag.unsigned_abs() > MAX_SPAN as u32 {
                    return Err(CpmError::OutOfRange(l.successor));
                }
                let li = *self
                    .link_pos
                    .get(&(p, s))
                    .ok_or(CpmError::UnknownLink(l.predecessor, l.successor))?;
                self.input.links[li] = *l;
                if self.is_summary(s)
                    || self.succ.of(p).iter().filter(|e| e.node() == s).count() != 1
                {
                    return self.rebuild();
                }
                let kind = kind_code(l.kind);
                if let Some(e) = self.succ.find_mut(p, s) {
                    e.set_kind(kind);
                    e.lag = l.lag;
                }
                if let Some(e) = self.pred.find_mut(s, p) {
                    e.set_kind(kind);
                    e.lag = l.lag;
                }
                self.touch(p);
                self.repair(&[s], &[p]);
                Ok(())
            }
            Edit::RemoveLink {
                predecessor,
                successor,
            } => {
                let (p, s) = (self.idx(*predecessor)?, self.idx(*successor)?);
                let li = self
                    .link_pos
                    .remove(&(p, s))
                    .ok_or(CpmError::UnknownLink(*predecessor, *successor))?;
                self.input.links.swap_remove(li);
                if li < self.input.links.len() {
                    let moved = self.input.links[li];
                    let key = (self.index[&moved.predecessor], self.index[&moved.successor]);
                    self.link_pos.insert(key, li);
                }
                if self.is_summary(s)
                    || self.succ.of(p).iter().filter(|e| e.node() == s).count() != 1
                {
                    return self.rebuild();
                }
                self.succ.remove(p, s);
                self.pred.remove(s, p);
                // Removing an edge never invalidates a topological order.
                self.touch(p);
                self.repair(&[s], &[p]);
                Ok(())
            }
            Edit::ReplaceTask(t) => {
                let v = self.idx(t.id)?;
                let pos = self.input_pos[v as usize] as usize;
                let old = std::mem::replace(&mut self.input.tasks[pos], t.clone());
                let r = self.rebuild();
                if r.is_err() {
                    self.input.tasks[pos] = old;
                }
                r
            }
            Edit::AddTask(t) => {
                if self.index.contains_key(&t.id) {
                    return Err(CpmError::DuplicateTask(t.id));
                }
                self.input.tasks.push(t.clone());
                let r = self.rebuild();
                if r.is_err() {
                    self.input.tasks.pop();
                }
                r
            }
            Edit::RemoveTask { task } => {
                self.idx(*task)?;
                let mut input = self.input.clone();
                input.tasks.retain(|t| t.id != *task);
                input
                    .links
                    .retain(|l| l.predecessor != *task && l.successor != *task);
                for t in &mut input.tasks {
                    if t.parent == Some(*task) {
                        t.parent = None;
                    }
                }
                *self = Engine::new(input)?;
                Ok(())
            }
            Edit::SetProjectStart(d) => {
                self.input.start = *d;
                self.rebuild()
            }
            Edit::SetStatusDate(d) => {
                self.input.status_date = *d;
                self.rebuild()
            }
        }
    }

    fn idx(&self, id: TaskId) -> Result<u32, CpmError> {
        self.index
            .get(&id)
            .copied()
            .ok_or(CpmError::UnknownTask(id))
    }

    fn rebuild(&mut self) -> Result<(), CpmError> {
        *self = Engine::new(self.input.clone())?;
        Ok(())
    }

    fn reload_and_repair(&mut self, v: u32, fwd: &[u32], bwd: &[u32]) -> Result<(), CpmError> {
        let was_alap = self.nodes[v as usize].flags & F_ALAP != 0;
        self.load_task(v);
        if was_alap != (self.nodes[v as usize].flags & F_ALAP != 0) {
            // Successors were (or must now be) driven by this task's late dates.
            self.recompute();
            return Ok(());
        }
        if self.is_summary(v) {
            // A summary's own constraint reaches its leaves through the backward bound.
            let mut leaves = Vec::new();
            self.leaves_of(v, &mut leaves);
            leaves.extend_from_slice(fwd);
            self.repair(&leaves, bwd);
        } else {
            self.repair(fwd, bwd);
        }
        Ok(())
    }

    fn add_link(&mut self, l: LinkInput) -> Result<(), CpmError> {
        let (p, s) = (self.idx(l.predecessor)?, self.idx(l.successor)?);
        if l.lag.unsigned_abs() > MAX_SPAN as u32 {
            return Err(CpmError::OutOfRange(l.successor));
        }
        if self.link_pos.contains_key(&(p, s)) {
            return Err(CpmError::DuplicateLink(l.predecessor, l.successor));
        }
        if self.is_summary(s) || self.succ.of(p).iter().any(|e| e.node() == s) {
            self.input.links.push(l);
            let r = self.rebuild();
            if r.is_err() {
                self.input.links.pop();
            }
            return r;
        }
        let parent = &self.parent;
        let child_start = &self.child_start;
        let children = &self.children;
        let kids = |v: u32| -> Vec<u32> {
            children[child_start[v as usize] as usize..child_start[v as usize + 1] as usize]
                .to_vec()
        };
        if let Err(c) = self
            .topo
            .insert(p, s, &self.succ, &self.pred, parent, &kids)
        {
            return Err(CpmError::Cycle(
                c.iter().map(|&v| self.ids[v as usize]).collect(),
            ));
        }
        let kind = kind_code(l.kind);
        self.succ.push(p, Edge::new(s, l.lag, kind));
        self.pred.push(s, Edge::new(p, l.lag, kind));
        self.link_pos.insert((p, s), self.input.links.len());
        self.input.links.push(l);
        self.touch(p);
        self.repair(&[s], &[p]);
        Ok(())
    }

    /// Incremental repair after inputs of `fwd` (early side) and `bwd` (late side) changed.
    fn repair(&mut self, fwd: &[u32], bwd: &[u32]) {
        if self.alap_count > 0 {
            // ALAP feeds late dates back into the forward pass: repair would need a
            // third propagation front; plans with ALAP tasks are rare, recompute.
            self.recompute();
            return;
        }
        // Forward, in increasing topological position.
        let mut changed_summaries: Vec<u32> = Vec::new();
        let mut pf_dirty = false;
        let old_pf = self.pf_global;
        for &v in fwd {
            self.enqueue_fwd(v);
        }
        let n = self.ids.len();
        // Past this many tasks a heap costs more than a straight sweep.
        let budget = (n / 8).max(1024);
        let mut popped = 0usize;
        while let Some(Reverse(pos)) = self.rheap.pop() {
            popped += 1;
            if popped > budget {
                // The edit reaches much of the plan: sweep the rest in order, then
                // redo the backward pass whole.
                self.rheap.clear();
                self.queued.iter_mut().for_each(|q| *q = false);
                for k in pos as usize..n {
                    let v = self.topo.at[k];
                    self.forward(v, false);
                }
                self.compute_pf();
                self.backward_all();
                return;
            }
            let v = self.topo.at[pos as usize];
            self.queued[v as usize] = false;
            let old_ef = self.nodes[v as usize].ef;
            if self.forward(v, false) {
                self.touch(v);
                let vi = v as usize;
                if self.nodes[vi].flags & F_SUMMARY != 0 {
                    changed_summaries.push(v);
                } else {
                    let c = &self.cals[self.nodes[vi].cal as usize];
                    let (og, ng) = (c.global(old_ef), c.global(self.nodes[vi].ef));
                    if og != ng && (og >= old_pf || ng > old_pf) {
                        pf_dirty = true;
                    }
                }
                let deg = self.succ.degree(v);
                for k in 0..deg {
                    let w = self.succ.of(v)[k].node();
                    self.enqueue_fwd(w);
                }
                let p = self.parent[vi];
                if p != NONE {
                    self.enqueue_fwd(p);
                }
            }
        }
        if pf_dirty && self.compute_pf() {
            self.backward_all();
            return;
        }
        // Backward, in decreasing topological position.
        for &v in bwd.iter().chain(changed_summaries.iter()) {
            self.enqueue_bwd(v);
        }
        while let Some(pos) = self.heap.pop() {
            let v = self.topo.at[pos as usize];
            self.queued[v as usize] = false;
            if self.backward(v) {
                self.touch(v);
                let deg = self.pred.degree(v);
                for k in 0..deg {
                    let w = self.pred.of(v)[k].node();
                    self.enqueue_bwd(w);
                }
                let (a, b) = (
                    self.child_start[v as usize],
                    self.child_start[v as usize + 1],
                );
                for k in a..b {
                    let c = self.children[k as usize];
                    self.enqueue_bwd(c);
                }
            }
        }
    }

    #[inline]
    fn touch(&mut self, v: u32) {
        if !self.touched_mark[v as usize] {
            self.touched_mark[v as usize] = true;
            self.touched.push(v);
        }
    }

    /// The tasks whose outputs may have moved since the previous call, so the server
    /// can build `task_dates_updated` without materializing the whole schedule.
    ///
    /// A superset: every task whose [`TaskSchedule`] changed is listed (a task whose
    /// dates moved, its predecessors, whose free float depends on it, the ends of
    /// edited links, and the summaries above them), some may be unchanged. `None`
    /// means "possibly all" (a full recompute or rebuild happened): diff two
    /// [`Schedule`]s instead.
    pub fn take_changes(&mut self) -> Option<Vec<TaskId>> {
        let all = std::mem::replace(&mut self.touched_all, false);
        let touched = std::mem::take(&mut self.touched);
        let mut out: Vec<u32> = Vec::with_capacity(touched.len() * 2);
        let mut seen = std::mem::take(&mut self.touched_mark);
        for &v in &touched {
            seen[v as usize] = false;
        }
        if all {
            self.touched_mark = seen;
            return None;
        }
        let mut add = |v: u32, out: &mut Vec<u32>| {
            if !seen[v as usize] {
                seen[v as usize] = true;
                out.push(v);
            }
        };
        for &v in &touched {
            add(v, &mut out);
            for e in self.pred.of(v) {
                add(e.node(), &mut out);
            }
        }
        // Summaries above any listed task roll up from it.
        let direct = out.len();
        for k in 0..direct {
            let mut a = self.parent[out[k] as usize];
            while a != NONE {
                add(a, &mut out);
                a = self.parent[a as usize];
            }
        }
        for &v in &out {
            seen[v as usize] = false;
        }
        self.touched_mark = seen;
        Some(out.into_iter().map(|v| self.ids[v as usize]).collect())
    }

    #[inline]
    fn enqueue_fwd(&mut self, v: u32) {
        if !self.queued[v as usize] {
            self.queued[v as usize] = true;
            self.rheap.push(Reverse(self.topo.ord[v as usize]));
        }
    }

    #[inline]
    fn enqueue_bwd(&mut self, v: u32) {
        if !self.queued[v as usize] {
            self.queued[v as usize] = true;
            self.heap.push(self.topo.ord[v as usize]);
        }
    }

    /// The inputs as the engine currently holds them (edits applied).
    pub fn input(&self) -> &ProjectInput {
        &self.input
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the project has no task.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The project finish (inclusive).
    pub fn project_finish(&self) -> NaiveDate {
        crate::calendar::date_of(self.pf_global.div_euclid(2))
    }

    /// Working days of the project calendar from the project start to the project
    /// finish: the critical path length, independent of how the finish is displayed.
    pub fn project_duration(&self) -> i32 {
        work(self.pf[0]) - work(self.ps[0])
    }

    /// Raw internal results, for tests comparing incremental and full recompute.
    #[doc(hidden)]
    pub fn raw_state(&self) -> (i32, Vec<[i32; 5]>) {
        (
            self.pf_global,
            (0..self.ids.len())
                .map(|i| {
                    [
                        self.nodes[i].es,
                        self.nodes[i].ef,
                        self.nodes[i].ls,
                        self.nodes[i].lf,
                        self.lfb[i],
                    ]
                })
                .collect(),
        )
    }

    /// Builds the full output: dates, floats, critical path.
    ///
    /// Summary late dates roll up from their children here rather than in the passes,
    /// because nothing depends on them: links into summaries are expanded to leaves.
    pub fn schedule(&self) -> Schedule {
        let n = self.ids.len();
        let mut ls: Vec<i32> = self.nodes.iter().map(|x| x.ls).collect();
        let mut lf: Vec<i32> = self.nodes.iter().map(|x| x.lf).collect();
        for k in 0..n {
            let v = self.topo.at[k] as usize;
            if self.nodes[v].flags & F_SUMMARY != 0 {
                let (mut lo, mut hi) = (NO_UB, NO_LB);
                for c in self.child_start[v]..self.child_start[v + 1] {
                    let c = self.children[c as usize] as usize;
                    lo = lo.min(self.conv_up(ls[c], self.nodes[c].cal, self.nodes[v].cal));
                    hi = hi.max(self.conv_down(lf[c], self.nodes[c].cal, self.nodes[v].cal));
                }
                ls[v] = lo;
                lf[v] = hi.max(lo);
            }
        }
        // Depth (longest chain of links from a task without predecessors) orders the
        // critical path topologically *and* canonically: the maintained topological
        // order depends on edit history, the critical path must not.
        let mut depth = vec![0u32; n];
        let mut tasks: Vec<Option<TaskSchedule>> = vec![None; n];
        let mut critical: Vec<(u32, u32, TaskId)> = Vec::new();
        for k in 0..n {
            let v = self.topo.at[k];
            let dv = depth[v as usize] + 1;
            for e in self.succ.of(v) {
                let d = &mut depth[e.node() as usize];
                *d = (*d).max(dv);
            }
            let p = self.parent[v as usize];
            if p != NONE {
                depth[p as usize] = depth[p as usize].max(dv);
            }
            let t = self.task_at(v, ls[v as usize], lf[v as usize]);
            if t.is_critical && self.nodes[v as usize].flags & F_SUMMARY == 0 {
                critical.push((depth[v as usize], self.input_pos[v as usize], t.id));
            }
            tasks[self.input_pos[v as usize] as usize] = Some(t);
        }
        critical.sort_unstable();
        Schedule {
            project_finish: self.project_finish(),
            critical_path: critical.into_iter().map(|c| c.2).collect(),
            tasks: tasks.into_iter().flatten().collect(),
        }
    }

    /// The critical path alone (what `cpm_complete` carries), without materializing
    /// every task's dates: O(tasks + links), no allocation per task.
    pub fn critical_path(&self) -> Vec<TaskId> {
        let n = self.ids.len();
        let mut depth = vec![0u32; n];
        let mut critical: Vec<(u32, u32, TaskId)> = Vec::new();
        for k in 0..n {
            let v = self.topo.at[k];
            let vi = v as usize;
            let dv = depth[vi] + 1;
            for e in self.succ.of(v) {
                let d = &mut depth[e.node() as usize];
                *d = (*d).max(dv);
            }
            let p = self.parent[vi];
            if p != NONE {
                depth[p as usize] = depth[p as usize].max(dv);
            }
            let f = self.nodes[vi].flags;
            if f & (F_SUMMARY | F_FINISHED) == 0
                && self.total_float(vi, self.nodes[vi].ls, self.nodes[vi].lf) <= 0
            {
                critical.push((depth[vi], self.input_pos[vi], self.ids[vi]));
            }
        }
        critical.sort_unstable();
        critical.into_iter().map(|c| c.2).collect()
    }

    /// Outputs of one task, without building the whole [`Schedule`].
    pub fn task(&self, id: TaskId) -> Option<TaskSchedule> {
        let v = *self.index.get(&id)?;
        let (ls, lf) = self.late_rollup(v);
        Some(self.task_at(v, ls, lf))
    }

    /// Late dates of a task; for a summary, rolled up from its subtasks.
    fn late_rollup(&self, v: u32) -> (i32, i32) {
        let vi = v as usize;
        if self.nodes[vi].flags & F_SUMMARY == 0 {
            return (self.nodes[vi].ls, self.nodes[vi].lf);
        }
        let (mut lo, mut hi) = (NO_UB, NO_LB);
        for k in self.child_start[vi]..self.child_start[vi + 1] {
            let c = self.children[k as usize];
            let (cs, cf) = self.late_rollup(c);
            let cc = self.nodes[c as usize].cal;
            lo = lo.min(self.conv_up(cs, cc, self.nodes[vi].cal));
            hi = hi.max(self.conv_down(cf, cc, self.nodes[vi].cal));
        }
        (lo, hi.max(lo))
    }

    fn total_float(&self, v: usize, ls: i32, lf: i32) -> i32 {
        if self.nodes[v].flags & F_ALAP != 0 {
            // Microsoft Project reports no slack on ALAP tasks: they already sit at
            // their late dates.
            return 0;
        }
        let (mut es, mut ef, mut ls, mut lf) = (self.nodes[v].es, self.nodes[v].ef, ls, lf);
        if self.nodes[v].flags & F_SUMMARY != 0 {
            // Count a summary's float in its own calendar, like its subtasks'.
            let (from, to) = (self.nodes[v].cal, self.own_cal[v]);
            es = self.conv_up(es, from, to);
            ls = self.conv_up(ls, from, to);
            ef = self.conv_down(ef, from, to);
            lf = self.conv_down(lf, from, to);
        }
        let finish = work(lf) - work(ef);
        if self.nodes[v].flags & (F_STARTED | F_FINISHED) != 0 {
            finish
        } else {
            (work(ls) - work(es)).min(finish)
        }
    }

    /// Dates a task shows to its successors' free-float check: ALAP tasks sit at their
    /// late dates.
    #[inline]
    fn shown(&self, v: usize) -> (i32, i32) {
        if self.nodes[v].flags & F_ALAP != 0 {
            (self.nodes[v].ls, self.nodes[v].lf)
        } else {
            (self.nodes[v].es, self.nodes[v].ef)
        }
    }

    /// Free float as Microsoft Project defines it: over links to unfinished
    /// successors, the working time (in the predecessor's calendar) between the linked
    /// dates minus the lag; the total float without successors; never negative. It is
    /// not capped by the total float.
    fn free_float(&self, v: u32, tf: i32) -> i32 {
        let i = v as usize;
        if self.nodes[i].flags & F_FINISHED != 0 {
            return 0;
        }
        let vc = self.nodes[i].cal;
        let (ps, pf) = self.shown(i);
        let mut ff = NO_UB;
        let via_summary = self.nodes[i].flags & F_SUMLINK != 0;
        let mut slack = |s: usize, kind: u8, lag: i32| {
            if self.nodes[s].flags & F_FINISHED != 0 {
                return;
            }
            let (ss, sf) = self.shown(s);
            let (d1, d2) = match kind {
                K_FS => (pf, ss),
                K_SS => (ps, ss),
                K_FF => (pf, sf),
                _ => (ps, sf),
            };
            let d2 = self.conv_up(d2, self.nodes[s].cal, vc);
            ff = ff.min(work(d2) - work(d1) - lag);
        };
        let mut direct_seen: Vec<u32> = Vec::new();
        for e in self.succ.of(v) {
            // A link into a summary counts once, against the summary's dates, not
            // once per subtask it was expanded to; only the user's direct links count
            // here (an expansion can duplicate a direct link's pair).
            if via_summary {
                let Some(&li) = self.link_pos.get(&(v, e.node())) else {
                    continue;
                };
                let l = &self.input.links[li];
                if kind_code(l.kind) != e.kind()
                    || l.lag != e.lag
                    || direct_seen.contains(&e.node())
                {
                    continue;
                }
                direct_seen.push(e.node());
            }
            slack(e.node() as usize, e.kind(), e.lag);
        }
        if via_summary {
            for &(s, kind, lag) in &self.summary_links[&v] {
                slack(s as usize, kind, lag);
            }
        }
        if ff == NO_UB { tf.max(0) } else { ff.max(0) }
    }

    fn task_at(&self, v: u32, ls: i32, lf: i32) -> TaskSchedule {
        let i = v as usize;
        let cal = &self.cals[self.nodes[i].cal as usize];
        let tf = self.total_float(i, ls, lf);
        let ff = if self.nodes[i].flags & F_SUMMARY != 0 {
            tf.max(0)
        } else {
            self.free_float(v, tf)
        };
        TaskSchedule {
            id: self.ids[i],
            early_start: cal.date(self.nodes[i].es),
            early_finish: cal.date(self.nodes[i].ef),
            late_start: cal.date(ls),
            late_finish: cal.date(lf),
            total_float: tf,
            free_float: ff,
            is_critical: tf <= 0 && self.nodes[i].flags & F_FINISHED == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ProjectInput, TaskInput};
    use uuid::Uuid;

    #[test]
    fn a_date_far_from_the_start_is_extrapolated_not_tabled() {
        let start = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let last = NaiveDate::from_ymd_opt(9999, 12, 31).unwrap();
        let mut p = ProjectInput::new(start);
        let mut far = TaskInput::new(Uuid::from_u128(1), 1);
        far.start_date = Some(last);
        p.tasks.push(far);
        p.tasks.push(TaskInput::new(Uuid::from_u128(2), 5));
        let engine = Engine::new(p).unwrap();
        for table in &engine.cals {
            assert!(
                table.span() <= MAX_WINDOW_DAYS * 2,
                "a table of {} days",
                table.span()
            );
        }
        let schedule = engine.schedule();
        let far = schedule.get(Uuid::from_u128(1)).unwrap();
        // 9999-12-31 is a Friday: the one-day task starts and ends on it.
        assert_eq!((far.early_start, far.early_finish), (last, last));
        assert_eq!(schedule.get(Uuid::from_u128(2)).unwrap().early_start, start);
    }
}
