//! Benchmarks of the CPM engine: `cargo bench -p liveplan-cpm --bench cpm`.
//!
//! The network is described in `support/network.rs`.

#[path = "support/network.rs"]
mod network;

use divan::Bencher;
use liveplan_cpm::{Edit, Engine, LinkInput, LinkType};
use network::{Rng, id, network};

fn main() {
    divan::main();
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
            if !i.is_multiple_of(50) {
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
            if b < n && !a.is_multiple_of(50) && !b.is_multiple_of(50) && a / 50 == b / 50 {
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

/// What the server does per edit: apply, ask which tasks may have moved, read them.
#[divan::bench(args = [100_000], sample_count = 200, sample_size = 1)]
fn incremental_edit_and_report(bencher: Bencher, n: usize) {
    let input = network(n, 7);
    let durations: Vec<u32> = input.tasks.iter().map(|t| t.duration).collect();
    let mut engine = Engine::new(input).unwrap();
    engine.take_changes();
    let mut rng = Rng(17);
    bencher.bench_local(move || {
        let i = loop {
            let i = rng.below(n as u64) as usize;
            if !i.is_multiple_of(50) {
                break i;
            }
        };
        let duration = durations[i] + rng.below(3) as u32;
        engine
            .apply(&Edit::SetDuration {
                task: id(i),
                duration,
            })
            .unwrap();
        match engine.take_changes() {
            Some(ids) => ids.iter().filter_map(|t| engine.task(*t)).count(),
            None => engine.schedule().tasks.len(),
        }
    });
}

#[divan::bench(args = [100_000], sample_count = 10, sample_size = 1)]
fn critical_path_only(bencher: Bencher, n: usize) {
    let engine = Engine::new(network(n, 7)).unwrap();
    bencher.bench_local(|| engine.critical_path());
}
