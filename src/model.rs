//! The cost model (`hdpflush report --model`, docs/cost-model.md): what each strategy would
//! cost per kernel launch on a real host, as a formula of measured kernel-entry costs and two
//! PCIe parameters that nobody here measured. A model, labelled as one: no AMD GPU was measured.
//!
//! Inputs:
//! - `E`: this host's ioctl entry (`ioctl` on /dev/null, rejected), and `U(B)`: its io_uring
//!   NOP per request in batches of B, from the host's runs (an x86_64 host with 4K pages);
//! - `r`: what the module adds on top of kernel entry, as a ratio measured in a guest (the sim
//!   backend with no delay over the NOP ioctl, or the io_uring NOP of the same batch). A ratio,
//!   because TCG inflates a guest's absolute times. The point estimate is the 64K-page guest's (the median of its boots);
//!   the band runs over every guest run the evidence holds;
//! - `W`: the issuing CPU's cost of one uncached (posted) store to a BAR; `R`: one non-posted
//!   read round trip to the GPU, which waits for the writes ahead of it.
//!
//! Like is compared with like: a completed flush (one that waits for a read round trip) only
//! with ROCclr's read-back, a posted one only with the remap page's posted store, and a batched
//! one with the same read-back at one flush per launch and at one per batch.

use crate::data::evidence::Evidence;
use crate::data::targets::Spread;

/// The PCIe parameters, overridable on the command line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pcie {
    /// `W`, ns.
    pub write_ns: f64,
    /// `R`, ns.
    pub read_ns: f64,
}

impl Default for Pcie {
    fn default() -> Self {
        Self {
            write_ns: DEFAULT_WRITE_NS,
            read_ns: DEFAULT_READ_NS,
        }
    }
}

/// Default `W`.
pub const DEFAULT_WRITE_NS: f64 = 100.0;
/// Default `R`.
pub const DEFAULT_READ_NS: f64 = 1000.0;

/// The `R` values of the sensitivity grid, ns.
pub const R_GRID: [f64; 5] = [250.0, 500.0, 1000.0, 2000.0, 4000.0];
/// The `W` values of the sensitivity grid, ns.
pub const W_GRID: [f64; 3] = [50.0, 100.0, 200.0];
/// A break-even `R` above this is reported as none: no PCIe read takes 100 us.
pub const BREAK_EVEN_MAX_NS: f64 = 100_000.0;

/// Where the defaults come from, and what would replace them.
pub const SOURCES: &str = "\
- `R` = 1000 ns is a round figure, not a measurement. The paper usually cited for it, \
Neugebauer et al., \"Understanding PCIe performance for end host networking\" (SIGCOMM 2018, \
pcie-bench), measured the latency of reads a *device* issues by DMA to host memory (several \
hundred ns to about a microsecond on the servers studied, more with an IOMMU), not what `R` \
is here: a *CPU's* uncached load of a GPU register or BAR byte, which crosses the root complex \
the other way and waits for the HDP. No public measurement of that was found. \
`hdpflush validate` on a host with an AMD GPU (built, not yet run on one) measures it; until then read the \
grid, not one column.
- `W` = 100 ns has no source: an uncached store is posted, but the issuing core does not \
retire it as fast as a cached one, and the same figure stands for a write-combined store to \
VRAM (the dummy page) and an uncached store to a register (the remap page, the ioctl). The \
grid shows 50, 100 and 200 ns.
- The kernel entry (`E`, `U(B)`) was measured on this host, an x86_64 machine with 4K pages, \
and the module's ratios in TCG guests; no 64K-page host's system call was timed. The \
\"64K host\" the model speaks of is that host's PCIe parameters plus this host's kernel entry.";

/// Whether a flush waits for the GPU before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Waits for a read round trip that orders it after the writes ahead of it.
    Completed,
    /// Issues a posted store and returns.
    Posted,
}

/// The PCIe part of a cost per launch: `w` posted stores and `r` read round trips.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hw {
    /// Stores per launch.
    pub w: f64,
    /// Read round trips per launch.
    pub r: f64,
}

impl Hw {
    /// One store and one read round trip, shared by `batch` launches.
    fn store_and_read_per(batch: u32) -> Self {
        let b = f64::from(batch);
        Self {
            w: 1.0 / b,
            r: 1.0 / b,
        }
    }

    /// ns at `p`.
    pub fn ns(&self, p: &Pcie) -> f64 {
        self.w * p.write_ns + self.r * p.read_ns
    }
}

/// A measured quantity with its spread: the point estimate and the least and greatest value
/// the evidence's runs give.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Band {
    /// Least.
    pub lo: f64,
    /// Point estimate.
    pub mid: f64,
    /// Greatest.
    pub hi: f64,
}

impl Band {
    /// One value, no spread.
    pub fn point(v: f64) -> Self {
        Self {
            lo: v,
            mid: v,
            hi: v,
        }
    }

    /// `mid` widened to the spread of `all` (which should hold it).
    fn spread(mid: f64, all: &[f64]) -> Self {
        let lo = all.iter().copied().fold(mid, f64::min);
        let hi = all.iter().copied().fold(mid, f64::max);
        Self { lo, mid, hi }
    }

    /// The product of two positive bands.
    fn times(self, o: Self) -> Self {
        Self {
            lo: self.lo * o.lo,
            mid: self.mid * o.mid,
            hi: self.hi * o.hi,
        }
    }

    /// `f` applied to each end, for an `f` that is monotonic (either way).
    pub fn map(self, f: impl Fn(f64) -> f64) -> Self {
        let (a, b) = (f(self.lo), f(self.hi));
        Self {
            lo: a.min(b),
            mid: f(self.mid),
            hi: a.max(b),
        }
    }
}

/// One modelled strategy, per kernel launch.
#[derive(Clone, Debug, PartialEq)]
pub struct Strategy {
    /// What it is.
    pub name: String,
    /// Its cost per launch, in the inputs' names.
    pub formula: String,
    /// Whether it waits for the flush.
    pub delivery: Delivery,
    /// Launches that share one hardware flush (1: one flush per dispatch).
    pub batch: u32,
    /// PCIe operations per launch.
    pub hw: Hw,
    /// What the kernel adds per launch, ns (zero for user-space strategies); `None` when an
    /// input was not measured.
    pub entry: Option<Band>,
}

impl Strategy {
    /// ns per launch at `p` with `entry` ns of kernel work.
    pub fn ns(&self, p: &Pcie, entry: f64) -> f64 {
        entry + self.hw.ns(p)
    }

    /// ns per launch at `p` over the entry band.
    pub fn ns_band(&self, p: &Pcie) -> Option<Band> {
        Some(self.entry?.map(|k| self.ns(p, k)))
    }
}

/// ROCclr's read-back, the baseline of every completed flush: a store of the kernel-argument
/// buffer's last byte, fences, and a read of it back, once per `batch` launches.
pub fn read_back(batch: u32) -> Strategy {
    let name = if batch == 1 {
        "ROCclr's read-back (store the last byte, fences, read it back)".to_owned()
    } else {
        format!("ROCclr's read-back once per {batch} launches")
    };
    Strategy {
        name,
        formula: store_and_read_formula(batch),
        delivery: Delivery::Completed,
        batch,
        hw: Hw::store_and_read_per(batch),
        entry: Some(Band::point(0.0)),
    }
}

/// `W + R`, or its share per launch when `batch` launches share one store and read.
fn store_and_read_formula(batch: u32) -> String {
    if batch == 1 {
        "W + R".to_owned()
    } else {
        format!("(W + R) / {batch}")
    }
}

/// The remap page's posted store, the baseline of every posted flush (4K pages only).
pub fn remap_posted() -> Strategy {
    Strategy {
        name: "mmio-remap, posted store (4K pages only)".into(),
        formula: "W".into(),
        delivery: Delivery::Posted,
        batch: 1,
        hw: Hw { w: 1.0, r: 0.0 },
        entry: Some(Band::point(0.0)),
    }
}

/// A strategy against its baseline. Built only by [`Comparison::new`], which refuses to put a
/// posted flush against a completed one or the other way round.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The strategy.
    pub strategy: Strategy,
    /// What it is divided by.
    pub baseline: Strategy,
}

impl Comparison {
    /// `strategy` against `baseline`, if both deliver the flush the same way.
    pub fn new(strategy: Strategy, baseline: Strategy) -> Option<Self> {
        (strategy.delivery == baseline.delivery).then_some(Self { strategy, baseline })
    }

    /// The strategy's cost over the baseline's at `p`, over the entry band.
    pub fn ratio(&self, p: &Pcie) -> Option<Band> {
        let base = self.baseline.ns(p, self.baseline.entry?.mid);
        Some(self.strategy.ns_band(p)?.map(|v| v / base))
    }

    /// The `R` at which the strategy costs what the baseline does, at `write_ns`, over the
    /// entry band (the band's ends give the break-even's ends).
    pub fn break_even(&self, write_ns: f64) -> Option<[BreakEven; 3]> {
        let entry = self.strategy.entry?;
        let base = self.baseline.entry?.mid;
        let at = |k: f64| break_even_r(self.strategy.hw, k, self.baseline.hw, base, write_ns);
        Some([at(entry.lo), at(entry.mid), at(entry.hi)])
    }
}

/// Where a strategy's cost crosses its baseline's as `R` grows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BreakEven {
    /// Cheaper than the baseline for every `R` above this.
    CheaperAbove(f64),
    /// Cheaper than the baseline for every `R` below this.
    CheaperBelow(f64),
    /// Cheaper at every `R` > 0.
    Always,
    /// Never cheaper for `R` between 0 and [`BREAK_EVEN_MAX_NS`].
    Never,
}

/// Solve `k + a.w W + a.r R = base + b.w W + b.r R` for `R`, at `W` = `w`.
pub fn break_even_r(a: Hw, k: f64, b: Hw, base: f64, w: f64) -> BreakEven {
    // The strategy minus the baseline: `c + d R`.
    let c = k - base + (a.w - b.w) * w;
    let d = a.r - b.r;
    if d == 0.0 {
        return if c < 0.0 {
            BreakEven::Always
        } else {
            BreakEven::Never
        };
    }
    let r = -c / d;
    match (d < 0.0, r <= 0.0, r > BREAK_EVEN_MAX_NS) {
        // The difference falls as R grows: cheaper above r.
        (true, true, _) => BreakEven::Always,
        (true, false, true) => BreakEven::Never,
        (true, false, false) => BreakEven::CheaperAbove(r),
        // It grows with R: cheaper below r.
        (false, true, _) => BreakEven::Never,
        (false, false, true) => BreakEven::Always,
        (false, false, false) => BreakEven::CheaperBelow(r),
    }
}

/// The guest whose ratios are the point estimate: the 64K-page one when it ran.
pub fn ratio_guest(e: &Evidence) -> Option<&str> {
    ["arm64", "x86_64"]
        .into_iter()
        .find(|g| e.run(g, "sim").is_some())
}

/// The median across boots of `strategy (variant)`'s mean ns in `place`'s `phase` runs.
fn mean(e: &Evidence, place: &str, phase: &str, strategy: &str, variant: &str) -> Option<f64> {
    let all: Vec<f64> = e
        .runs(place, phase)
        .into_iter()
        .filter_map(|r| r.case(strategy, variant).map(|c| c.mean_ns))
        .collect();
    Spread::of(&all).map(|s| s.median)
}

/// One ratio measured in one guest run.
#[derive(Clone, Debug, PartialEq)]
pub struct GuestRatio {
    /// The guest.
    pub guest: String,
    /// `strategy (variant)` over the floor in that run.
    pub ratio: f64,
}

/// The module's ratio over its floor in every guest's every `sim` run (no modelled delay), in
/// the evidence's order.
pub fn guest_ratios(e: &Evidence, strategy: &str, variant: &str, floor: &str) -> Vec<GuestRatio> {
    let mut out = Vec::new();
    for g in e.guests() {
        for run in g.runs.iter().filter(|r| r.phase == "sim") {
            if let (Some(v), Some(f)) = (run.case(strategy, variant), run.case("reference", floor))
            {
                out.push(GuestRatio {
                    guest: g.name.clone(),
                    ratio: v.mean_ns / f.mean_ns,
                });
            }
        }
    }
    out
}

/// The ratio band: the median of the point guest's boots in the middle, every run's spread
/// (every boot of every guest) around it.
fn ratio_band(e: &Evidence, strategy: &str, variant: &str, floor: &str) -> Option<Band> {
    let g = ratio_guest(e)?;
    let ratios = guest_ratios(e, strategy, variant, floor);
    let own: Vec<f64> = ratios
        .iter()
        .filter(|r| r.guest == g)
        .map(|r| r.ratio)
        .collect();
    let mid = Spread::of(&own)?.median;
    let all: Vec<f64> = ratios.into_iter().map(|r| r.ratio).collect();
    Some(Band::spread(mid, &all))
}

/// A host floor's band over every host run: their median in the middle.
fn host_band(e: &Evidence, variant: &str) -> Option<Band> {
    let mid = mean(e, "host", "host", "reference", variant)?;
    let all: Vec<f64> = e
        .places
        .iter()
        .filter(|p| p.name == "host")
        .flat_map(|p| p.runs.iter())
        .filter_map(|r| r.case("reference", variant).map(|c| c.mean_ns))
        .collect();
    Some(Band::spread(mid, &all))
}

/// The batch sizes the model covers.
pub const BATCHES: [u32; 4] = [1, 8, 32, 128];

/// The host floor `E` is read from.
pub const E_FLOOR: &str = "ioctl ENOTTY on /dev/null";
/// The guest floor `r_ioctl` divides by.
pub const IOCTL_FLOOR: &str = "ioctl NOP, kernel-entry floor";

/// The host floor `U(batch)` is read from.
pub fn uring_floor(batch: u32) -> String {
    format!("io_uring NOP batch {batch}")
}

/// The module's io_uring case of `batch`.
pub fn uring_variant(batch: u32) -> String {
    format!("completed, batch {batch}")
}

/// `E`, over the host runs.
pub fn host_entry(e: &Evidence) -> Option<Band> {
    host_band(e, E_FLOOR)
}

/// `U(batch)`, over the host runs.
pub fn host_uring(e: &Evidence, batch: u32) -> Option<Band> {
    host_band(e, &uring_floor(batch))
}

/// `r_ioctl(variant)`, over the guest runs.
pub fn r_ioctl(e: &Evidence, variant: &str) -> Option<Band> {
    ratio_band(e, "ioctl", variant, IOCTL_FLOOR)
}

/// `r_uring(batch)`, over the guest runs.
pub fn r_uring(e: &Evidence, batch: u32) -> Option<Band> {
    ratio_band(e, "uring", &uring_variant(batch), &uring_floor(batch))
}

/// The ioctl's entry cost, `E x r_ioctl(variant)`.
pub fn ioctl_entry(e: &Evidence, variant: &str) -> Option<Band> {
    Some(host_entry(e)?.times(r_ioctl(e, variant)?))
}

/// io_uring's entry cost per request, `U(batch) x r_uring(batch)`.
pub fn uring_entry(e: &Evidence, batch: u32) -> Option<Band> {
    Some(host_uring(e, batch)?.times(r_uring(e, batch)?))
}

/// The proposed KFD ioctl, and the module's completed ioctl whose cost stands for it.
pub fn kfd_ioctl(e: &Evidence) -> Strategy {
    Strategy {
        name: "KFD ioctl, completed: the proposed patch (system call, register store, \
               read-back in the kernel)"
            .into(),
        formula: format!("E x r_ioctl(completed) + {}", store_and_read_formula(1)),
        delivery: Delivery::Completed,
        batch: 1,
        hw: Hw::store_and_read_per(1),
        entry: ioctl_entry(e, "completed"),
    }
}

/// io_uring with one hardware flush per submission of `batch` launches.
pub fn uring(e: &Evidence, batch: u32) -> Strategy {
    let name = if batch == 1 {
        "uring, completed, one submission per launch".to_owned()
    } else {
        format!("uring, completed, {batch} launches per submission")
    };
    Strategy {
        name,
        formula: format!(
            "U({batch}) x r_uring({batch}) + {}",
            store_and_read_formula(batch)
        ),
        delivery: Delivery::Completed,
        batch,
        hw: Hw::store_and_read_per(batch),
        entry: uring_entry(e, batch),
    }
}

/// The dummy page: two stores to VRAM and one read-back, all from user space.
pub fn dummy_page() -> Strategy {
    Strategy {
        name: "dummy-page (two stores, one read-back)".into(),
        formula: "2W + R".into(),
        delivery: Delivery::Completed,
        batch: 1,
        hw: Hw { w: 2.0, r: 1.0 },
        entry: Some(Band::point(0.0)),
    }
}

/// The module's posted ioctl (the KFD patch has no posted form).
pub fn ioctl_posted(e: &Evidence) -> Strategy {
    Strategy {
        name: "ioctl, posted (the module; the KFD patch is completed only)".into(),
        formula: "E x r_ioctl(posted) + W".into(),
        delivery: Delivery::Posted,
        batch: 1,
        hw: Hw { w: 1.0, r: 0.0 },
        entry: ioctl_entry(e, "posted"),
    }
}

/// The headline: one completed flush per launch, against ROCclr's read-back.
pub fn per_launch(e: &Evidence) -> Vec<Comparison> {
    [kfd_ioctl(e), uring(e, 1), dummy_page()]
        .into_iter()
        .filter_map(|s| Comparison::new(s, read_back(1)))
        .collect()
}

/// Posted flushes against the remap page's posted store.
pub fn posted(e: &Evidence) -> Vec<Comparison> {
    Comparison::new(ioctl_posted(e), remap_posted())
        .into_iter()
        .collect()
}

/// Each batched io_uring row against the read-back once per launch (what ROCclr does) and
/// once per batch (the same batching on both sides).
pub fn batched(e: &Evidence) -> Vec<(Comparison, Comparison)> {
    BATCHES
        .into_iter()
        .filter(|b| *b > 1)
        .filter_map(|b| {
            let s = uring(e, b);
            Some((
                Comparison::new(s.clone(), read_back(1))?,
                Comparison::new(s, read_back(b))?,
            ))
        })
        .collect()
}

/// `grid` with `extra` added in order, unless it is already there.
pub fn axis(grid: &[f64], extra: f64) -> Vec<f64> {
    let mut v = grid.to_vec();
    if !v.contains(&extra) {
        v.push(extra);
        v.sort_by(f64::total_cmp);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(k: f64) -> Option<Band> {
        Some(Band::point(k))
    }

    fn completed(k: f64, hw: Hw) -> Strategy {
        Strategy {
            name: "s".into(),
            formula: "f".into(),
            delivery: Delivery::Completed,
            batch: 1,
            hw,
            entry: entry(k),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn break_even_solves_by_hand() {
        let base = Hw { w: 1.0, r: 1.0 };
        // 300 ns of kernel work and a 32-way shared flush against a per-launch read-back at
        // W = 100: 300 + (100 + R) / 32 = 100 + R  =>  R = 300 * 32 / 31 - 100 = 209.677...
        let b32 = Hw {
            w: 1.0 / 32.0,
            r: 1.0 / 32.0,
        };
        let BreakEven::CheaperAbove(r) = break_even_r(b32, 300.0, base, 0.0, 100.0) else {
            panic!("expected a crossing");
        };
        assert!(close(r, 300.0 * 32.0 / 31.0 - 100.0), "{r}");
        let c = Comparison::new(completed(300.0, b32), read_back(1)).unwrap();
        let at = Pcie {
            write_ns: 100.0,
            read_ns: r,
        };
        assert!(close(c.ratio(&at).unwrap().mid, 1.0));
        // 500 ns in the kernel and no PCIe work: cheaper once W + R > 500, R > 400.
        let none = Hw { w: 0.0, r: 0.0 };
        assert_eq!(
            break_even_r(none, 500.0, base, 0.0, 100.0),
            BreakEven::CheaperAbove(400.0)
        );
        // Two round trips against one, no kernel: 2R < 100 + R below R = 100.
        let two = Hw { w: 0.0, r: 2.0 };
        assert_eq!(
            break_even_r(two, 0.0, base, 0.0, 100.0),
            BreakEven::CheaperBelow(100.0)
        );
        // Half a round trip, nothing else: cheaper at every R.
        let half = Hw { w: 0.0, r: 0.5 };
        assert_eq!(break_even_r(half, 0.0, base, 0.0, 100.0), BreakEven::Always);
        // The ioctl's shape (the same W + R plus kernel work) and the dummy page's (one more
        // store): never.
        assert_eq!(
            break_even_r(base, 269.0, base, 0.0, 100.0),
            BreakEven::Never
        );
        assert_eq!(
            break_even_r(Hw { w: 2.0, r: 1.0 }, 0.0, base, 0.0, 100.0),
            BreakEven::Never
        );
        // A crossing beyond any sane R is none.
        assert_eq!(break_even_r(b32, 1e6, base, 0.0, 100.0), BreakEven::Never);
    }

    #[test]
    fn ratios_fall_with_r_and_rise_with_kernel_work() {
        let ioctl = Comparison::new(completed(270.0, Hw { w: 1.0, r: 1.0 }), read_back(1)).unwrap();
        let dummy = Comparison::new(dummy_page(), read_back(1)).unwrap();
        for w in W_GRID {
            let at = |r: f64| Pcie {
                write_ns: w,
                read_ns: r,
            };
            let ratios = |c: &Comparison| -> Vec<f64> {
                R_GRID
                    .iter()
                    .map(|r| c.ratio(&at(*r)).unwrap().mid)
                    .collect()
            };
            for c in [&ioctl, &dummy] {
                let v = ratios(c);
                assert!(v.windows(2).all(|p| p[1] < p[0]), "falls with R: {v:?}");
                assert!(
                    v.iter().all(|x| *x > 1.0),
                    "never below the read-back: {v:?}"
                );
            }
        }
        // With W: the ioctl's fixed kernel cost is a smaller share, the dummy page's second
        // store a larger one.
        let at_w = |c: &Comparison, w: f64| {
            c.ratio(&Pcie {
                write_ns: w,
                read_ns: 1000.0,
            })
            .unwrap()
            .mid
        };
        assert!(at_w(&ioctl, 50.0) > at_w(&ioctl, 200.0));
        assert!(at_w(&dummy, 50.0) < at_w(&dummy, 200.0));
        // The band's ends bracket the point.
        let mut banded = ioctl.clone();
        banded.strategy.entry = Some(Band {
            lo: 200.0,
            mid: 270.0,
            hi: 310.0,
        });
        let b = banded.ratio(&Pcie::default()).unwrap();
        assert!(b.lo < b.mid && b.mid < b.hi, "{b:?}");
        assert!(close(b.lo, 1300.0 / 1100.0) && close(b.hi, 1410.0 / 1100.0));
    }

    #[test]
    fn a_posted_flush_is_never_put_against_a_completed_one() {
        let posted = remap_posted();
        assert_eq!(Comparison::new(posted.clone(), read_back(1)), None);
        assert_eq!(Comparison::new(dummy_page(), posted.clone()), None);
        assert!(Comparison::new(posted, remap_posted()).is_some());
    }

    #[test]
    fn axes_take_the_chosen_value_in_order() {
        assert_eq!(axis(&R_GRID, 1000.0), R_GRID.to_vec());
        assert_eq!(
            axis(&R_GRID, 700.0),
            vec![250.0, 500.0, 700.0, 1000.0, 2000.0, 4000.0]
        );
    }
}
