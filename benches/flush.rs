//! criterion: one group per strategy usable here (stand-in mappings included, labelled as
//! such in the group name), flush and, where the strategy has one, invalidate.
//!
//! `hdpflush bench` is the side-by-side comparison; these give criterion's statistics and
//! change detection across commits for each strategy on its own. A flush that fails ends the
//! bench: a failure timed as a success would be a wrong number.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use libflush::strategy::BackingKind;
use libflush::{Completion, Flush, StrategyKind, Uring, UringConfig};

fn group_name(kind: StrategyKind, f: &dyn Flush) -> String {
    match f.backing().kind {
        BackingKind::Hardware => kind.to_string(),
        other => format!("{kind}/{}", other.tag().replace(' ', "-")),
    }
}

/// `op`'s result, or the end of the bench with what failed.
fn checked(what: &str, r: libflush::Result<()>) {
    if let Err(e) = r {
        panic!("{what} failed during the benchmark: {e}");
    }
}

fn strategies(c: &mut Criterion) {
    for kind in StrategyKind::ALL {
        let f = match libflush::open_for_bench(kind) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("skipping {kind}: {e}");
                continue;
            }
        };
        let mut g = c.benchmark_group(group_name(kind, f.as_ref()));
        for completion in [Completion::Completed, Completion::Posted] {
            let name = format!("flush {}", completion.name());
            g.bench_function(&name, |b| {
                b.iter(|| checked(&name, f.flush_with(completion)))
            });
        }
        if f.invalidate().is_ok() {
            g.bench_function("invalidate", |b| {
                b.iter(|| checked("invalidate", f.invalidate()))
            });
        }
        g.finish();
    }
}

/// io_uring batches: what one flush costs when many share a submission.
fn uring_batches(c: &mut Criterion) {
    let mut g = c.benchmark_group("uring/batch");
    for batch in [1usize, 8, 32, 128] {
        let ring = match Uring::open(UringConfig {
            entries: batch as u32,
            ..UringConfig::default()
        }) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("skipping uring batches: {e}");
                return;
            }
        };
        g.throughput(criterion::Throughput::Elements(batch as u64));
        g.bench_function(batch.to_string(), |b| {
            b.iter(|| checked("uring batch", ring.flush_batch(batch)))
        });
    }
    g.finish();
}

/// What selection costs a runtime per flush: the flusher it gets is a `dyn Flush`. The same
/// remap-page flush (posted, on a stand-in page: a fence, a store, a fence) called directly
/// and through the trait object; `hdpflush report` checks the difference (target P5).
fn dispatch(c: &mut Criterion) {
    let concrete = || {
        let page = libflush::MappedRegion::anonymous(4096)?;
        libflush::MmioRemap::new(page, Completion::Posted)
    };
    let (direct, boxed) = match (concrete(), concrete()) {
        (Ok(d), Ok(b)) => (d, Box::new(b) as Box<dyn Flush>),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("skipping dispatch: {e}");
            return;
        }
    };
    let mut g = c.benchmark_group("dispatch");
    g.bench_function("direct", |b| {
        b.iter(|| checked("direct flush", direct.flush_with(Completion::Posted)))
    });
    g.bench_function("dyn Flush", |b| {
        b.iter(|| {
            let f: &dyn Flush = std::hint::black_box(boxed.as_ref());
            checked("dyn flush", f.flush_with(Completion::Posted))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = dispatch, strategies, uring_batches
}
criterion_main!(benches);
