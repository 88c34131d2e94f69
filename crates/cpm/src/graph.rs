//! Adjacency and dynamic topological order.

/// One end of a link as seen from the other end: 8 bytes, so a pass streams a third
/// less memory than with a separate kind byte (padded to 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Edge {
    /// The task at the other end (low 30 bits) and the `LinkType` code (high 2 bits).
    packed: u32,
    /// Lag in working days of the successor's calendar.
    pub lag: i32,
}

/// Tasks are numbered below this (the top two bits of an edge hold the link type).
pub(crate) const MAX_TASKS: usize = 1 << 30;
const NODE_MASK: u32 = (1 << 30) - 1;

impl Edge {
    #[inline]
    pub(crate) const fn new(node: u32, lag: i32, kind: u8) -> Edge {
        Edge {
            packed: (node & NODE_MASK) | ((kind as u32) << 30),
            lag,
        }
    }

    /// The task at the other end.
    #[inline]
    pub(crate) fn node(&self) -> u32 {
        self.packed & NODE_MASK
    }

    /// `LinkType` as `u8`.
    #[inline]
    pub(crate) fn kind(&self) -> u8 {
        (self.packed >> 30) as u8
    }

    pub(crate) fn set_kind(&mut self, kind: u8) {
        self.packed = (self.packed & NODE_MASK) | ((kind as u32) << 30);
    }
}

/// Compressed adjacency with per-node slack.
///
/// Like CSR, all edges sit in one flat array and a node's edges are contiguous, so the
/// passes stream through memory. Unlike CSR, a node's segment has spare capacity: an
/// inserted link is written in place, and only a full segment moves to the end of the
/// array (doubling), so link edits cost O(degree), not O(links).
#[derive(Clone, Debug, Default)]
pub(crate) struct Adjacency {
    /// Per node: start of its segment and number of edges, side by side so a pass
    /// reads both with one cache access.
    seg: Vec<[u32; 2]>,
    cap: Vec<u32>,
    edges: Vec<Edge>,
}

const HOLE: Edge = Edge::new(u32::MAX, 0, 0);

impl Adjacency {
    /// Builds from `(from, edge)` pairs.
    pub(crate) fn build(n: usize, pairs: &[(u32, Edge)]) -> Adjacency {
        let mut seg = vec![[0u32; 2]; n];
        for (f, _) in pairs {
            seg[*f as usize][1] += 1;
        }
        let mut cap = vec![0u32; n];
        let mut total = 0u32;
        for i in 0..n {
            seg[i][0] = total;
            // One spare slot per node keeps most single insertions in place.
            cap[i] = seg[i][1] + 1;
            total += cap[i];
        }
        let mut edges = vec![HOLE; total as usize];
        let mut fill = vec![0u32; n];
        for (f, e) in pairs {
            let f = *f as usize;
            edges[(seg[f][0] + fill[f]) as usize] = *e;
            fill[f] += 1;
        }
        Adjacency { seg, cap, edges }
    }

    #[inline]
    pub(crate) fn of(&self, v: u32) -> &[Edge] {
        let [s, l] = self.seg[v as usize];
        &self.edges[s as usize..(s + l) as usize]
    }

    #[inline]
    pub(crate) fn degree(&self, v: u32) -> usize {
        self.seg[v as usize][1] as usize
    }

    pub(crate) fn push(&mut self, v: u32, e: Edge) {
        let vi = v as usize;
        let [s, l] = self.seg[vi];
        if l == self.cap[vi] {
            let new_cap = (self.cap[vi] * 2).max(2);
            let new_start = self.edges.len() as u32;
            for i in 0..l as usize {
                let e = self.edges[s as usize + i];
                self.edges.push(e);
            }
            self.edges
                .resize(new_start as usize + new_cap as usize, HOLE);
            self.seg[vi][0] = new_start;
            self.cap[vi] = new_cap;
        }
        let at = (self.seg[vi][0] + l) as usize;
        self.edges[at] = e;
        self.seg[vi][1] += 1;
    }

    /// Removes the edge to `node`; returns it.
    pub(crate) fn remove(&mut self, v: u32, node: u32) -> Option<Edge> {
        let vi = v as usize;
        let [s, l] = self.seg[vi];
        let (s, l) = (s as usize, l as usize);
        let i = self.edges[s..s + l].iter().position(|e| e.node() == node)?;
        let e = self.edges[s + i];
        // Keep order stable so results never depend on edit history.
        self.edges.copy_within(s + i + 1..s + l, s + i);
        self.edges[s + l - 1] = HOLE;
        self.seg[vi][1] -= 1;
        Some(e)
    }

    pub(crate) fn find_mut(&mut self, v: u32, node: u32) -> Option<&mut Edge> {
        let [s, l] = self.seg[v as usize];
        self.edges[s as usize..(s + l) as usize]
            .iter_mut()
            .find(|e| e.node() == node)
    }
}

/// Kahn's algorithm over `succ` plus extra `child -> parent` edges, always taking the
/// ready task that comes first in input order.
///
/// Plans are mostly entered in order, so this keeps the topological order close to the
/// input order: the passes then walk memory nearly sequentially, and later link
/// insertions rarely need to reorder much. Returns `Err` if there is a cycle.
pub(crate) fn topo_order(n: usize, succ: &Adjacency, parent: &[u32]) -> Result<Vec<u32>, ()> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut indeg = vec![0u32; n];
    for v in 0..n as u32 {
        for e in succ.of(v) {
            indeg[e.node() as usize] += 1;
        }
        let p = parent[v as usize];
        if p != u32::MAX {
            indeg[p as usize] += 1;
        }
    }
    let mut ready: BinaryHeap<Reverse<u32>> = (0..n as u32)
        .filter(|&v| indeg[v as usize] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(v)) = ready.pop() {
        order.push(v);
        for e in succ.of(v) {
            let d = &mut indeg[e.node() as usize];
            *d -= 1;
            if *d == 0 {
                ready.push(Reverse(e.node()));
            }
        }
        let p = parent[v as usize];
        if p != u32::MAX {
            let d = &mut indeg[p as usize];
            *d -= 1;
            if *d == 0 {
                ready.push(Reverse(p));
            }
        }
    }
    if order.len() == n { Ok(order) } else { Err(()) }
}

/// Finds one cycle among the nodes Kahn's algorithm could not order.
pub(crate) fn find_cycle(n: usize, succ: &Adjacency, parent: &[u32]) -> Vec<u32> {
    // Iterative DFS with colours; the first back edge closes a cycle.
    let mut colour = vec![0u8; n];
    let mut stack: Vec<(u32, usize)> = Vec::new();
    let mut path: Vec<u32> = Vec::new();
    let next = |v: u32, i: usize| -> Option<u32> {
        let out = succ.of(v);
        if i < out.len() {
            Some(out[i].node())
        } else if i == out.len() && parent[v as usize] != u32::MAX {
            Some(parent[v as usize])
        } else {
            None
        }
    };
    for s in 0..n as u32 {
        if colour[s as usize] != 0 {
            continue;
        }
        stack.push((s, 0));
        path.push(s);
        colour[s as usize] = 1;
        while let Some(&mut (v, ref mut i)) = stack.last_mut() {
            let idx = *i;
            *i += 1;
            let out_len = succ.degree(v) + 1;
            if idx > out_len {
                colour[v as usize] = 2;
                stack.pop();
                path.pop();
                continue;
            }
            match next(v, idx) {
                None => {}
                Some(w) => match colour[w as usize] {
                    0 => {
                        colour[w as usize] = 1;
                        stack.push((w, 0));
                        path.push(w);
                    }
                    1 => {
                        let at = path.iter().position(|&x| x == w).unwrap_or(0);
                        return path[at..].to_vec();
                    }
                    _ => {}
                },
            }
        }
    }
    Vec::new()
}

/// Pearce–Kelly dynamic topological order.
///
/// Keeps `ord[v]` (position) and `at[pos]` (node) valid under edge insertion, touching
/// only the nodes between the two ends of a back-pointing edge. That is what lets the
/// engine refuse a cycle-creating link at insertion time in about the cost of the
/// affected region instead of a full sort.
#[derive(Clone, Debug, Default)]
pub(crate) struct TopoOrder {
    pub ord: Vec<u32>,
    pub at: Vec<u32>,
    mark: Vec<bool>,
    stack: Vec<(u32, usize)>,
    parents: Vec<u32>,
}

impl TopoOrder {
    pub(crate) fn from_order(order: Vec<u32>) -> TopoOrder {
        let n = order.len();
        let mut ord = vec![0u32; n];
        for (i, &v) in order.iter().enumerate() {
            ord[v as usize] = i as u32;
        }
        TopoOrder {
            ord,
            at: order,
            mark: vec![false; n],
            stack: Vec::new(),
            parents: vec![u32::MAX; n],
        }
    }

    /// Accounts for a new edge `x -> y`. On a cycle returns its nodes, starting at `y`,
    /// and leaves the order unchanged.
    ///
    /// `succ` and `pred` must describe the graph *without* the new edge; `up` gives the
    /// extra hierarchy edge of a node (child -> parent) or `u32::MAX`.
    pub(crate) fn insert(
        &mut self,
        x: u32,
        y: u32,
        succ: &Adjacency,
        pred: &Adjacency,
        up: &[u32],
        children: &dyn Fn(u32) -> Vec<u32>,
    ) -> Result<(), Vec<u32>> {
        if x == y {
            return Err(vec![x]);
        }
        let lb = self.ord[y as usize];
        let ub = self.ord[x as usize];
        if lb > ub {
            return Ok(());
        }
        // Forward search from y within (.., ub].
        let mut fwd: Vec<u32> = Vec::new();
        self.stack.clear();
        self.stack.push((y, 0));
        self.mark[y as usize] = true;
        self.parents[y as usize] = u32::MAX;
        fwd.push(y);
        let mut cycle: Option<Vec<u32>> = None;
        'search: while let Some(&(v, _)) = self.stack.last() {
            self.stack.pop();
            let up_v = up[v as usize];
            let nexts = succ
                .of(v)
                .iter()
                .map(|e| e.node())
                .chain((up_v != u32::MAX).then_some(up_v));
            for w in nexts {
                if w == x {
                    // parents lead from v back to y: the cycle is x -> y -> ... -> v -> x.
                    let mut c = Vec::new();
                    let mut u = v;
                    while u != u32::MAX {
                        c.push(u);
                        u = self.parents[u as usize];
                    }
                    c.reverse();
                    c.insert(0, x);
                    cycle = Some(c);
                    break 'search;
                }
                if !self.mark[w as usize] && self.ord[w as usize] < ub {
                    self.mark[w as usize] = true;
                    self.parents[w as usize] = v;
                    fwd.push(w);
                    self.stack.push((w, 0));
                }
            }
        }
        if let Some(c) = cycle {
            for &v in &fwd {
                self.mark[v as usize] = false;
            }
            return Err(c);
        }
        // Backward search from x within (lb, ..].
        let mut bwd: Vec<u32> = vec![x];
        self.mark[x as usize] = true;
        self.stack.clear();
        self.stack.push((x, 0));
        while let Some((v, _)) = self.stack.pop() {
            let kids = children(v);
            for w in pred
                .of(v)
                .iter()
                .map(|e| e.node())
                .chain(kids.iter().copied())
            {
                if !self.mark[w as usize] && self.ord[w as usize] > lb {
                    self.mark[w as usize] = true;
                    bwd.push(w);
                    self.stack.push((w, 0));
                }
            }
        }
        // Reorder: all of bwd before all of fwd, reusing their positions.
        bwd.sort_unstable_by_key(|&v| self.ord[v as usize]);
        fwd.sort_unstable_by_key(|&v| self.ord[v as usize]);
        let mut slots: Vec<u32> = bwd
            .iter()
            .chain(fwd.iter())
            .map(|&v| self.ord[v as usize])
            .collect();
        slots.sort_unstable();
        for (i, &v) in bwd.iter().chain(fwd.iter()).enumerate() {
            self.ord[v as usize] = slots[i];
            self.at[slots[i] as usize] = v;
            self.mark[v as usize] = false;
        }
        Ok(())
    }
}
