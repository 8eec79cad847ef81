//! `cargo xtask codegen`: the barrier *instructions* in each strategy's compiled flush.
//!
//! The simulator (libflush/src/sim/) sees every barrier a strategy calls, but not which
//! instruction the call became: an `sfence` deleted from libflush/src/barrier.rs, or a full
//! fence weakened to a store fence on one architecture, passes every oracle test. So this step
//! builds libhdpflush.so in release mode for x86_64, aarch64 and powerpc64le, disassembles each
//! strategy's entry points (`flush_with` and `flush`; for the kernel strategies also
//! `flush_batch` and `invalidate`) with llvm-objdump, following calls into each other and into
//! the BAR accessors, and checks every path through each that returns: the barrier
//! instructions on it, in order, must be exactly those of one of the strategy's expected
//! shapes, with the shape's loads and calls between them and exactly its stores between two
//! barriers (the table in docs/design.md, "The barrier contract"), and every expected shape
//! must be some path.
//!
//! The library is built with v0 symbol mangling, which keeps the generic arguments in the names
//! (`KernelFlush<IoctlTransport>`, not `KernelFlush<T>`), so each transport's copy is found by
//! name; mangling changes names, not instructions. An access here is any load or store not to
//! the stack and not PC-relative: the check pins the barrier instructions, their number and
//! their order against the accesses and calls around them; which access is the device's is the
//! simulator's to check. A path that ends in a trap, or in a call that does not return (a
//! failed bounds check's panic), is not a flush and is not checked; a loop is followed once.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run::{cargo, fail, output, step, workspace_root, StepResult};
use crate::{pins, setup};

/// An architecture whose barriers libflush writes (libflush/src/barrier.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    X86_64,
    Aarch64,
    Powerpc64le,
}

impl Target {
    /// Every architecture libflush supports.
    pub const ALL: [Target; 3] = [Target::X86_64, Target::Aarch64, Target::Powerpc64le];

    /// Our name for it.
    pub fn name(self) -> &'static str {
        match self {
            Target::X86_64 => "x86_64",
            Target::Aarch64 => "aarch64",
            Target::Powerpc64le => "powerpc64le",
        }
    }

    /// Parse a name given on the command line.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    fn triple(self) -> &'static str {
        match self {
            Target::X86_64 => "x86_64-unknown-linux-gnu",
            Target::Aarch64 => "aarch64-unknown-linux-gnu",
            Target::Powerpc64le => "powerpc64le-unknown-linux-gnu",
        }
    }

    /// The instruction `barrier::store_fence()` must be.
    fn store_fence(self) -> &'static str {
        match self {
            Target::X86_64 => "sfence",
            Target::Aarch64 => "dsb st",
            Target::Powerpc64le => "sync",
        }
    }

    /// The instruction `barrier::full_fence()` must be.
    fn full_fence(self) -> &'static str {
        match self {
            Target::X86_64 => "mfence",
            Target::Aarch64 => "dsb sy",
            Target::Powerpc64le => "sync",
        }
    }
}

// --- what the check expects -------------------------------------------------------------------

/// A memory access or a call, as the check sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Access {
    Load,
    Store,
    /// A call out of the function: for the kernel strategies, the request.
    Call,
}

/// The two barriers of libflush/src/barrier.rs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Barrier {
    Store,
    Full,
}

/// One step of an expected path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Fence(Barrier),
    Access(Access),
}

const STORE_FENCE: Step = Step::Fence(Barrier::Store);
const FULL_FENCE: Step = Step::Fence(Barrier::Full);
const STORE: Step = Step::Access(Access::Store);
const LOAD: Step = Step::Access(Access::Load);
const REQUEST: Step = Step::Access(Access::Call);

/// A path an entry point has: its barriers exactly, and, between each two, accesses and calls
/// that must appear in this order (others may come between them).
#[derive(Debug)]
struct Shape {
    what: &'static str,
    steps: &'static [Step],
}

const REMAP: &[Shape] = &[
    Shape {
        what: "completed: the flush store, its read-back, then a full fence",
        steps: &[STORE_FENCE, STORE, LOAD, FULL_FENCE],
    },
    Shape {
        what: "posted: the flush store between two store fences",
        steps: &[STORE_FENCE, STORE, STORE_FENCE],
    },
];
const DUMMY_PAGE: &[Shape] = &[
    Shape {
        what: "two stores, full fence, read-back, full fence",
        steps: &[STORE_FENCE, STORE, STORE, FULL_FENCE, LOAD, FULL_FENCE],
    },
    Shape {
        what: "the variant with a store fence between the two stores",
        steps: &[
            STORE_FENCE,
            STORE,
            STORE_FENCE,
            STORE,
            FULL_FENCE,
            LOAD,
            FULL_FENCE,
        ],
    },
];
const LEGACY: &[Shape] = &[Shape {
    what: "sentinel store, full fence, read-back, full fence",
    steps: &[STORE_FENCE, STORE, FULL_FENCE, LOAD, FULL_FENCE],
}];
const KERNEL_FLUSH: &[Shape] = &[
    Shape {
        what: "posted: a store fence before the request and one after it",
        steps: &[STORE_FENCE, REQUEST, STORE_FENCE],
    },
    Shape {
        what: "completed (or failed): a store fence before the request",
        steps: &[STORE_FENCE, REQUEST],
    },
];
const KERNEL_INVALIDATE: &[Shape] = &[Shape {
    what: "the request, then a full fence before any later BAR load",
    steps: &[REQUEST, FULL_FENCE],
}];
/// A failed invalidation returns its error with nothing to order.
const FAILED_REQUEST: &[Shape] = &[Shape {
    what: "the request failed",
    steps: &[REQUEST],
}];
/// `kfd-ioctl`'s flush after KFD said the GPU needs none (`KFD_IOC_HDP_FLUSH_STATUS_NOT_NEEDED`,
/// remembered): the same barriers, no request; or the request whose answer is remembered (a
/// store), where the compiler inlines it.
const KFD_FLUSH_NOT_NEEDED: &[Shape] = &[
    Shape {
        what: "posted, KFD said NOT_NEEDED before: no request",
        steps: &[STORE_FENCE, STORE_FENCE],
    },
    Shape {
        what: "completed, KFD said NOT_NEEDED before: no request",
        steps: &[STORE_FENCE],
    },
    Shape {
        what: "posted, KFD says NOT_NEEDED now: the request, its answer remembered, a store fence",
        steps: &[STORE_FENCE, REQUEST, STORE, STORE_FENCE],
    },
];
/// `kfd-ioctl`'s invalidate: the proposed ioctl only flushes, so it fails at once
/// (`Unsupported`) with no barrier.
const KFD_INVALIDATE: &[Shape] = &[Shape {
    what: "unsupported: the error returned, no fence",
    steps: &[],
}];
/// `flush_batch(0)` of a kernel strategy: the barriers without a request.
const NO_REQUEST: &[Shape] = &[
    Shape {
        what: "a posted batch of none",
        steps: &[STORE_FENCE, STORE_FENCE],
    },
    Shape {
        what: "a completed batch of none",
        steps: &[STORE_FENCE],
    },
];

/// One entry point of one strategy.
struct Entry {
    strategy: &'static str,
    /// The demangled symbol.
    symbol: String,
    /// Every one of these is some path that returns.
    required: &'static [Shape],
    /// Other paths that may return.
    allowed: &'static [Shape],
}

/// The entry points checked: every way the library calls a strategy (the C API's
/// `flush_with`, the process-wide `flush`, the Rust API's `flush_batch`, `invalidate`).
fn entries() -> Vec<Entry> {
    // Not their `flush_batch`: the trait's loop over `flush`, which the C library never calls,
    // and whose unrolled copies this check cannot tell from one flush with more accesses.
    let flush = |strategy, ty: &str, required| {
        ["flush_with", "flush"].map(|method| Entry {
            strategy,
            symbol: format!("<{ty} as libflush::strategy::Flush>::{method}"),
            required,
            allowed: &[],
        })
    };
    // A kernel strategy: its flushes (`flush_batch(0)` makes no request; `extra` are other
    // paths its flushes may have) and its invalidate.
    let kernel = |strategy,
                  transport: &str,
                  extra: &'static [Shape],
                  invalidate: (&'static [Shape], &'static [Shape])| {
        let ty =
            format!("libflush::strategy::kernel::KernelFlush<libflush::strategy::{transport}>");
        let mut v: Vec<Entry> = ["flush_with", "flush", "flush_batch"]
            .map(|method| Entry {
                strategy,
                symbol: format!("<{ty} as libflush::strategy::Flush>::{method}"),
                required: KERNEL_FLUSH,
                allowed: if method == "flush_batch" {
                    if extra.is_empty() {
                        NO_REQUEST
                    } else {
                        // A batch of none has the same shapes as a flush KFD said was not
                        // needed.
                        extra
                    }
                } else {
                    extra
                },
            })
            .into();
        v.push(Entry {
            strategy,
            symbol: format!("<{ty} as libflush::strategy::Flush>::invalidate"),
            required: invalidate.0,
            allowed: invalidate.1,
        });
        v
    };
    let module_invalidate = (KERNEL_INVALIDATE, FAILED_REQUEST);
    let mut v = Vec::new();
    v.extend(flush(
        "mmio-remap",
        "libflush::strategy::mmio_remap::MmioRemap",
        REMAP,
    ));
    v.extend(flush(
        "dummy-page",
        "libflush::strategy::dummy_page::DummyPage",
        DUMMY_PAGE,
    ));
    v.extend(flush(
        "legacy",
        "libflush::strategy::legacy::Legacy",
        LEGACY,
    ));
    v.extend(kernel(
        "ioctl",
        "ioctl::IoctlTransport",
        &[],
        module_invalidate,
    ));
    v.extend(kernel(
        "kfd-ioctl",
        "kfd_ioctl::KfdTransport",
        KFD_FLUSH_NOT_NEEDED,
        (KFD_INVALIDATE, &[]),
    ));
    v.extend(kernel(
        "uring",
        "uring::UringTransport",
        &[],
        module_invalidate,
    ));
    v
}

/// Functions not checked on their own but followed where a checked one calls them: the BAR
/// accessors, where the compiler did not inline them (powerpc64le's `read_u32`), hold the
/// device's loads and stores.
const FOLLOWED: [&str; 4] = [
    "<libflush::region::MappedRegion as libflush::region::Bar>::read_u32",
    "<libflush::region::MappedRegion as libflush::region::Bar>::write_u32",
    "<libflush::region::MappedRegion as libflush::region::Bar>::read_u8",
    "<libflush::region::MappedRegion as libflush::region::Bar>::write_u8",
];

// --- reading a disassembly --------------------------------------------------------------------

/// What one instruction does, as far as the check cares.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    /// A barrier, by its text (`sfence`, `dsb st`, `lwsync`).
    Fence(String),
    Load,
    Store,
    /// A call, to an address when it is direct.
    Call(Option<u64>),
    /// A read-modify-write (`lock xadd`, `ldadd`).
    LoadStore,
    /// An unconditional branch to an address (inside the function, or a tail call).
    Jump(u64),
    /// A branch through a register or memory: a tail call.
    IndirectJump,
    /// A conditional branch to an address; otherwise the next instruction.
    CondJump(u64),
    /// A conditional return (powerpc `beqlr`); otherwise the next instruction.
    CondReturn,
    Return,
    /// The path ends here without returning (`ud2`, `brk`, `trap`).
    Trap,
    Other,
}

/// One line of an llvm-objdump listing: address, mnemonic, operands (comments removed).
fn split_line(line: &str) -> Option<(u64, &str, &str)> {
    // Symbol headers (`0000000000001000 <name>:`), section and file lines do not start with
    // an address and a colon.
    let (addr, rest) = line.split_once(':')?;
    let addr = u64::from_str_radix(addr.trim(), 16).ok()?;
    let rest = rest.trim();
    let rest = rest.split(" // ").next().unwrap_or(rest);
    let rest = rest.split(" # ").next().unwrap_or(rest);
    let mut parts = rest.trim().splitn(2, char::is_whitespace);
    let mnemonic = parts.next().filter(|m| !m.is_empty())?;
    let operands = parts.next().unwrap_or("").trim();
    Some((addr, mnemonic, operands))
}

/// The operands without a trailing `<symbol+offset>`.
fn strip_symbol(operands: &str) -> &str {
    operands.split(" <").next().unwrap_or(operands).trim()
}

/// The address a direct branch goes to: its last hexadecimal operand.
fn branch_target(operands: &str) -> Option<u64> {
    strip_symbol(operands)
        .split([',', ' '])
        .map(str::trim)
        .rfind(|t| !t.is_empty())
        .and_then(|t| t.strip_prefix("0x").or(Some(t)))
        .and_then(|t| u64::from_str_radix(t, 16).ok())
}

/// The address a direct call goes to (none for a call through a register or memory).
fn direct_target(operands: &str) -> Option<u64> {
    if operands.starts_with('*') || !operands.contains("0x") && !operands.contains('<') {
        return None;
    }
    branch_target(operands)
}

/// Operands split at top-level commas (x86 memory operands have commas inside parentheses).
fn x86_operands(operands: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in operands.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(operands[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = operands[start..].trim();
    if !last.is_empty() {
        out.push(last);
    }
    out
}

fn x86_op(mnemonic: &str, operands: &str) -> Op {
    let ops = x86_operands(strip_symbol(operands));
    match mnemonic {
        "sfence" | "mfence" | "lfence" => return Op::Fence(mnemonic.to_owned()),
        "ret" | "retq" => return Op::Return,
        "ud2" | "int3" | "hlt" => return Op::Trap,
        "call" | "callq" => return Op::Call(direct_target(operands)),
        "jmp" | "jmpq" => {
            return if operands.starts_with('*') {
                Op::IndirectJump
            } else {
                branch_target(operands).map_or(Op::IndirectJump, Op::Jump)
            }
        }
        m if m.starts_with('j') => {
            return branch_target(operands).map_or(Op::Other, Op::CondJump);
        }
        m if m.starts_with("lea") || m.starts_with("nop") || m.starts_with("push") => {
            return Op::Other
        }
        m if m.starts_with("pop") || m.starts_with("prefetch") => return Op::Other,
        _ => {}
    }
    // A memory operand not on the stack and not PC-relative: an access.
    let device = |o: &&str| o.contains('(') && !o.contains("(%rsp") && !o.contains("(%rip");
    let Some(last) = ops.last() else {
        return Op::Other;
    };
    let read_only = ["cmp", "test", "bt", "ucomis", "comis"]
        .iter()
        .any(|p| mnemonic.starts_with(p));
    if device(last) {
        if read_only {
            Op::Load
        } else if mnemonic.starts_with("mov") || mnemonic.starts_with("stos") {
            Op::Store
        } else {
            Op::LoadStore
        }
    } else if ops.iter().any(device) {
        Op::Load
    } else {
        Op::Other
    }
}

fn aarch64_op(mnemonic: &str, operands: &str) -> Op {
    let operands = strip_symbol(operands);
    match mnemonic {
        "dsb" | "dmb" | "isb" => return Op::Fence(format!("{mnemonic} {operands}")),
        "ret" => return Op::Return,
        "brk" | "udf" | "hlt" => return Op::Trap,
        "bl" | "blr" => return Op::Call(direct_target(operands)),
        "br" => return Op::IndirectJump,
        "b" => return branch_target(operands).map_or(Op::IndirectJump, Op::Jump),
        m if m.starts_with("b.") || ["cbz", "cbnz", "tbz", "tbnz"].contains(&m) => {
            return branch_target(operands).map_or(Op::Other, Op::CondJump);
        }
        _ => {}
    }
    if !operands.contains('[') || operands.contains("[sp") {
        return Op::Other;
    }
    let rmw = [
        "ldadd", "ldclr", "ldeor", "ldset", "ldsmax", "ldsmin", "ldumax", "ldumin",
    ]
    .iter()
    .any(|p| mnemonic.starts_with(p))
        || mnemonic.starts_with("swp")
        || mnemonic.starts_with("cas");
    if rmw {
        Op::LoadStore
    } else if mnemonic.starts_with("ld") {
        Op::Load
    } else if mnemonic.starts_with("st") {
        Op::Store
    } else {
        Op::Other
    }
}

fn powerpc_op(mnemonic: &str, operands: &str) -> Op {
    let operands = strip_symbol(operands);
    // Branch-prediction hints (`bne+`) do not change what a branch does.
    let m = mnemonic.trim_end_matches(['+', '-']);
    match m {
        "sync" | "hwsync" | "lwsync" | "eieio" | "isync" | "ptesync" | "msync" => {
            return Op::Fence(m.to_owned())
        }
        "blr" => return Op::Return,
        "trap" => return Op::Trap,
        "b" | "ba" => return branch_target(operands).map_or(Op::IndirectJump, Op::Jump),
        "bl" | "bla" | "bctrl" | "blrl" => return Op::Call(direct_target(operands)),
        "bctr" => return Op::IndirectJump,
        _ => {}
    }
    if m.starts_with('b') {
        // Conditional: through the link register (a call), to it (a return), to the count
        // register (a tail call, taken as a return after a call), or to an address.
        return if m.ends_with("lrl") || m.ends_with("ctrl") {
            Op::Call(None)
        } else if m.ends_with("lr") || m.ends_with("ctr") {
            Op::CondReturn
        } else {
            branch_target(operands).map_or(Op::Other, Op::CondJump)
        };
    }
    let stack = operands.contains("(1)") || operands.contains("(r1)");
    let memory = operands.contains('(') || m.ends_with('x') || m.ends_with("x.");
    if !memory || stack {
        return Op::Other;
    }
    const LOADS: [&str; 10] = [
        "lbz", "lhz", "lha", "lwz", "lwa", "ld", "lf", "lwbrx", "lhbrx", "lxv",
    ];
    const STORES: [&str; 7] = ["stb", "sth", "stw", "std", "stf", "stxv", "stq"];
    if m == "lwsync" || m == "li" || m == "lis" {
        Op::Other
    } else if LOADS.iter().any(|p| m.starts_with(p)) || m.ends_with("arx") {
        Op::Load
    } else if STORES.iter().any(|p| m.starts_with(p)) {
        Op::Store
    } else {
        Op::Other
    }
}

/// The instructions of an llvm-objdump listing of one function, in address order.
fn parse_listing(target: Target, listing: &str) -> Vec<(u64, Op)> {
    listing
        .lines()
        .filter_map(split_line)
        .filter(|(_, m, _)| *m != "lock")
        .map(|(addr, m, ops)| {
            let op = match target {
                Target::X86_64 => x86_op(m, ops),
                Target::Aarch64 => aarch64_op(m, ops),
                Target::Powerpc64le => powerpc_op(m, ops),
            };
            (addr, op)
        })
        .collect()
}

// --- paths --------------------------------------------------------------------------------------

/// What a path does that the check compares: barriers by instruction, accesses, calls.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Fence(String),
    Load,
    Store,
    /// A call, or a tail call (the path ends with it), to an address when it is direct.
    Call(Option<u64>),
}

impl Event {
    fn access(&self) -> Option<Access> {
        match self {
            Event::Fence(_) => None,
            Event::Load => Some(Access::Load),
            Event::Store => Some(Access::Store),
            Event::Call(_) => Some(Access::Call),
        }
    }
}

/// More paths than any flush has: a function this branchy is not one of ours.
const MAX_PATHS: usize = 4096;

/// The paths of one function: distinct event sequences from its first instruction to a return
/// or a tail call.
type Paths = BTreeSet<Vec<Event>>;

/// Every path from the first instruction to a return (or a tail call), as events.
fn returning_paths(insns: &[(u64, Op)]) -> Result<Paths, String> {
    let index: HashMap<u64, usize> = insns
        .iter()
        .enumerate()
        .map(|(i, (a, _))| (*a, i))
        .collect();
    let (first, last) = match (insns.first(), insns.last()) {
        (Some(f), Some(l)) => (f.0, l.0),
        _ => return Err("no instructions".into()),
    };
    let too_many = || format!("more than {MAX_PATHS} paths");
    let mut out = BTreeSet::new();
    let mut budget = MAX_PATHS * 64;
    // (next instruction, events so far, instructions on this path)
    let mut work = vec![(0usize, Vec::new(), vec![false; insns.len()])];
    while let Some((mut i, mut events, mut on_path)) = work.pop() {
        loop {
            budget = budget.checked_sub(1).ok_or_else(too_many)?;
            let Some((addr, op)) = insns.get(i) else {
                // Past the end: only after a call that does not return (a panic).
                if matches!(events.last(), Some(Event::Call(_))) {
                    break;
                }
                return Err(format!(
                    "a path runs past the end of the function (last instruction at {last:#x})"
                ));
            };
            if on_path[i] {
                // Round a loop: each path goes round once.
                break;
            }
            on_path[i] = true;
            // A branch inside the function goes to an instruction; outside, it is a tail call.
            let inside = |t: u64| -> Result<Option<usize>, String> {
                match index.get(&t) {
                    Some(&j) => Ok(Some(j)),
                    None if (first..=last).contains(&t) => Err(format!(
                        "the branch at {addr:#x} goes to {t:#x}, inside the function but not to an instruction"
                    )),
                    None => Ok(None),
                }
            };
            match op {
                Op::Fence(name) => events.push(Event::Fence(name.clone())),
                Op::Load => events.push(Event::Load),
                Op::Store => events.push(Event::Store),
                Op::LoadStore => events.extend([Event::Load, Event::Store]),
                Op::Call(t) => events.push(Event::Call(*t)),
                Op::Return => {
                    out.insert(events);
                    break;
                }
                Op::IndirectJump => {
                    events.push(Event::Call(None));
                    out.insert(events);
                    break;
                }
                Op::Jump(t) => match inside(*t)? {
                    Some(j) => {
                        i = j;
                        continue;
                    }
                    None => {
                        events.push(Event::Call(Some(*t)));
                        out.insert(events);
                        break;
                    }
                },
                Op::CondJump(t) => match inside(*t)? {
                    Some(j) => work.push((j, events.clone(), on_path.clone())),
                    None => {
                        let mut tail = events.clone();
                        tail.push(Event::Call(Some(*t)));
                        out.insert(tail);
                    }
                },
                Op::CondReturn => {
                    out.insert(events.clone());
                }
                Op::Trap => break,
                Op::Other => {}
            }
            if out.len() > MAX_PATHS {
                return Err(too_many());
            }
            i += 1;
        }
    }
    Ok(out)
}

/// How deep calls are followed: `flush_batch` calls `flush`, which may tail-call `flush_with`.
const MAX_CALL_DEPTH: usize = 4;

/// `paths` with each direct call to a function `callee` knows replaced by that function's
/// paths (themselves expanded): a strategy's `flush` that tail-calls its `flush_with`, or a
/// `flush_batch` that calls `flush` in a loop, is judged by what it runs.
fn expand<'a>(
    paths: &'a Paths,
    callee: &dyn Fn(u64) -> Option<&'a Paths>,
    depth: usize,
) -> Result<Paths, String> {
    let mut out = BTreeSet::new();
    for path in paths {
        let mut prefixes: Vec<Vec<Event>> = vec![Vec::new()];
        for event in path {
            let known = match event {
                Event::Call(Some(t)) => callee(*t),
                _ => None,
            };
            match known {
                Some(inner) => {
                    if depth == 0 {
                        return Err(format!("calls nest deeper than {MAX_CALL_DEPTH}"));
                    }
                    let inner = expand(inner, callee, depth - 1)?;
                    prefixes = prefixes
                        .iter()
                        .flat_map(|p| {
                            inner.iter().map(move |q| {
                                let mut v = p.clone();
                                v.extend(q.iter().cloned());
                                v
                            })
                        })
                        .collect();
                }
                None => prefixes.iter_mut().for_each(|p| p.push(event.clone())),
            }
            if prefixes.len() > MAX_PATHS {
                return Err(format!("more than {MAX_PATHS} paths"));
            }
        }
        out.extend(prefixes);
    }
    Ok(out)
}

/// The barriers of a sequence, and the accesses between each two (one more group than
/// barriers).
fn segments<'a, T>(
    items: &'a [T],
    fence: impl Fn(&'a T) -> Option<&'a str>,
    access: impl Fn(&T) -> Option<Access>,
) -> (Vec<&'a str>, Vec<Vec<Access>>) {
    let mut fences = Vec::new();
    let mut groups = vec![Vec::new()];
    for item in items {
        if let Some(f) = fence(item) {
            fences.push(f);
            groups.push(Vec::new());
        } else if let Some(a) = access(item) {
            if let Some(g) = groups.last_mut() {
                g.push(a);
            }
        }
    }
    (fences, groups)
}

/// `needle` appears in `haystack` in order, maybe with other items between.
fn is_subsequence(needle: &[Access], haystack: &[Access]) -> bool {
    let mut rest = haystack.iter();
    needle.iter().all(|n| rest.any(|h| h == n))
}

fn step_fence(target: Target, step: &Step) -> Option<&'static str> {
    match step {
        Step::Fence(Barrier::Store) => Some(target.store_fence()),
        Step::Fence(Barrier::Full) => Some(target.full_fence()),
        Step::Access(_) => None,
    }
}

/// Whether `path` has the shape: the same barrier instructions in the same order, the shape's
/// accesses and calls in order between each two (others may come between them), and between
/// two barriers exactly the shape's number of stores.
fn matches(target: Target, path: &[Event], shape: &Shape) -> bool {
    let (pf, pg) = segments(
        path,
        |e| match e {
            Event::Fence(f) => Some(f.as_str()),
            _ => None,
        },
        Event::access,
    );
    let (sf, sg) = segments(
        shape.steps,
        |s| step_fence(target, s),
        |s| match s {
            Step::Access(a) => Some(*a),
            Step::Fence(_) => None,
        },
    );
    let stores = |g: &Vec<Access>| g.iter().filter(|a| **a == Access::Store).count();
    // Between two barriers the stores are exactly the shape's: the device's stores, nothing
    // else a flush stores to outside the stack, so a barrier lost between two flushes of an
    // unrolled loop does not pass for one flush with a few more accesses.
    let interior = 1..pg.len().saturating_sub(1);
    pf == sf
        && pg.iter().zip(&sg).all(|(p, s)| is_subsequence(s, p))
        && interior.clone().all(|i| stores(&pg[i]) == stores(&sg[i]))
}

fn access_name(a: Access) -> &'static str {
    match a {
        Access::Load => "load",
        Access::Store => "store",
        Access::Call => "call",
    }
}

/// `sfence, load ×3, store, mfence`: barriers quoted, runs of one access counted.
fn render(items: Vec<Result<String, &'static str>>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(&str, usize)> = None;
    let flush = |out: &mut Vec<String>, run: &mut Option<(&str, usize)>| {
        if let Some((name, n)) = run.take() {
            out.push(if n == 1 {
                name.to_owned()
            } else {
                format!("{name} ×{n}")
            });
        }
    };
    for item in items {
        match item {
            Ok(fence) => {
                flush(&mut out, &mut run);
                out.push(format!("`{fence}`"));
            }
            Err(name) => match &mut run {
                Some((n, count)) if *n == name => *count += 1,
                _ => {
                    flush(&mut out, &mut run);
                    run = Some((name, 1));
                }
            },
        }
    }
    flush(&mut out, &mut run);
    if out.is_empty() {
        "(nothing)".into()
    } else {
        out.join(", ")
    }
}

fn render_path(path: &[Event]) -> String {
    render(
        path.iter()
            .map(|e| match (e, e.access()) {
                (Event::Fence(f), _) => Ok(f.clone()),
                (_, Some(a)) => Err(access_name(a)),
                (_, None) => Err("?"),
            })
            .collect(),
    )
}

fn render_shape(target: Target, shape: &Shape) -> String {
    let steps = render(
        shape
            .steps
            .iter()
            .map(|s| match s {
                Step::Fence(_) => Ok(step_fence(target, s).unwrap_or("?").to_owned()),
                Step::Access(a) => Err(access_name(*a)),
            })
            .collect(),
    );
    format!("{steps} ({})", shape.what)
}

/// What is wrong with one function's paths, one line each (empty: nothing).
fn judge(
    target: Target,
    paths: &BTreeSet<Vec<Event>>,
    required: &[Shape],
    allowed: &[Shape],
) -> Vec<String> {
    let found = || {
        paths
            .iter()
            .map(|p| format!("[{}]", render_path(p)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut problems = Vec::new();
    for shape in required {
        if !paths.iter().any(|p| matches(target, p, shape)) {
            problems.push(format!(
                "expected a path {}, found none; the paths that return: {}",
                render_shape(target, shape),
                found()
            ));
        }
    }
    for path in paths {
        if !required
            .iter()
            .chain(allowed)
            .any(|s| matches(target, path, s))
        {
            let expected: Vec<String> = required
                .iter()
                .chain(allowed)
                .map(|s| render_shape(target, s))
                .collect();
            problems.push(format!(
                "a path that returns is [{}], which is none of: {}",
                render_path(path),
                expected.join("; ")
            ));
        }
    }
    problems
}

// --- building and disassembling -----------------------------------------------------------------

fn llvm_tool(name: &str) -> String {
    format!("llvm-{name}-{}", pins::LLVM)
}

/// Build libhdpflush.so for `target` in release mode (v0 mangling); returns its path. Cached
/// in target/codegen/<arch>.
fn build(target: Target) -> StepResult<PathBuf> {
    let dir = workspace_root().join("target/codegen").join(target.name());
    let mut cmd = cargo();
    cmd.env("CARGO_TARGET_DIR", &dir)
        .env("RUSTFLAGS", "-C symbol-mangling-version=v0");
    match target {
        Target::X86_64 => {}
        Target::Aarch64 => {
            // As for the arm64 guest binaries: Debian's rustc and arm64 std, the cross linker.
            setup::arm64_cross()?;
            cmd.env("RUSTC", "/usr/bin/rustc").env(
                "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
                "aarch64-linux-gnu-gcc",
            );
        }
        Target::Powerpc64le => {
            setup::ppc64le_cross()?;
            cmd.env("RUSTC", "/usr/bin/rustc").env(
                "CARGO_TARGET_POWERPC64LE_UNKNOWN_LINUX_GNU_LINKER",
                "powerpc64le-linux-gnu-gcc",
            );
        }
    }
    cmd.args([
        "rustc",
        "--release",
        "--locked",
        "-p",
        "libflush-capi",
        "--lib",
    ])
    .args(["--crate-type", "cdylib", "--target", target.triple()]);
    step(&format!("libhdpflush.so {} (codegen)", target.name()), cmd)?;
    Ok(dir.join(target.triple()).join("release/libhdpflush.so"))
}

/// Demangled function name -> (address, size), from the symbol table.
fn functions(lib: &Path) -> StepResult<HashMap<String, (u64, u64)>> {
    let mut nm = Command::new(llvm_tool("nm"));
    nm.args(["-C", "-S", "--defined-only"]).arg(lib);
    let listing = output("llvm-nm", nm)?;
    let mut out = HashMap::new();
    for line in listing.lines() {
        let mut f = line.splitn(4, ' ');
        let (Some(addr), Some(size), Some(kind), Some(name)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if !matches!(kind, "t" | "T") {
            continue;
        }
        let (Ok(addr), Ok(size)) = (u64::from_str_radix(addr, 16), u64::from_str_radix(size, 16))
        else {
            continue;
        };
        // A function LLVM made local across codegen units carries a `(.llvm.N)` suffix.
        let name = name.split(" (.llvm.").next().unwrap_or(name);
        out.insert(name.to_owned(), (addr, size));
    }
    Ok(out)
}

fn disassemble(lib: &Path, addr: u64, size: u64) -> StepResult<String> {
    let mut cmd = Command::new(llvm_tool("objdump"));
    cmd.args(["-d", "-C", "--no-show-raw-insn"])
        .arg(format!("--start-address={addr:#x}"))
        .arg(format!("--stop-address={:#x}", addr + size))
        .arg(lib);
    output("llvm-objdump", cmd)
}

/// One function, disassembled: a checked entry point, or one that checked ones call.
struct Disassembled {
    entry: Option<Entry>,
    addr: u64,
    paths: Result<Paths, String>,
}

/// The function a direct call to `t` enters: at its address, or at powerpc64's local entry
/// point 8 bytes in.
fn callee_at(funcs: &[Disassembled], t: u64) -> Option<&Paths> {
    funcs
        .iter()
        .find(|f| (f.addr..=f.addr + 8).contains(&t))
        .and_then(|f| f.paths.as_ref().ok())
}

/// What is wrong with `target`'s entry points in `lib`, one line each.
fn check_library(target: Target, lib: &Path) -> StepResult<(usize, Vec<String>)> {
    let symbols = functions(lib)?;
    let mut problems = Vec::new();
    let mut funcs = Vec::new();
    for entry in entries() {
        let Some(&(addr, size)) = symbols.get(&entry.symbol) else {
            problems.push(format!(
                "{}, {}: no function `{}` in {} (renamed? update xtask/src/codegen.rs)",
                target.name(),
                entry.strategy,
                entry.symbol,
                lib.display()
            ));
            continue;
        };
        let listing = disassemble(lib, addr, size)?;
        let paths = returning_paths(&parse_listing(target, &listing));
        funcs.push(Disassembled {
            entry: Some(entry),
            addr,
            paths,
        });
    }
    for name in FOLLOWED {
        if let Some(&(addr, size)) = symbols.get(name) {
            let listing = disassemble(lib, addr, size)?;
            let paths = returning_paths(&parse_listing(target, &listing));
            funcs.push(Disassembled {
                entry: None,
                addr,
                paths,
            });
        }
    }
    let mut checked = 0;
    for f in &funcs {
        let Some(entry) = &f.entry else {
            continue;
        };
        checked += 1;
        let verdict = f
            .paths
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|p| expand(p, &|t| callee_at(&funcs, t), MAX_CALL_DEPTH))
            .map(|p| judge(target, &p, entry.required, entry.allowed))
            .unwrap_or_else(|e| vec![e]);
        problems.extend(verdict.into_iter().map(|p| {
            format!(
                "{}, {}, `{}`: {p}",
                target.name(),
                entry.strategy,
                entry.symbol
            )
        }));
    }
    Ok((checked, problems))
}

/// Build, disassemble and judge `targets`; every problem is reported before failing.
pub fn check(targets: &[Target]) -> StepResult {
    let objdump = llvm_tool("objdump");
    let nm = llvm_tool("nm");
    let package = format!("llvm-{}", pins::LLVM);
    setup::commands(&[(&objdump, &package), (&nm, &package)])?;
    let mut problems = Vec::new();
    let mut checked = 0;
    for &target in targets {
        let lib = build(target)?;
        let (n, p) = check_library(target, &lib)?;
        checked += n;
        problems.extend(p);
    }
    if !problems.is_empty() {
        let mut why = format!("{} problem(s) in the barrier instructions:", problems.len());
        for p in &problems {
            let _ = write!(why, "\n  - {p}");
        }
        return Err(fail("codegen", why));
    }
    let names: Vec<&str> = targets.iter().map(|t| t.name()).collect();
    eprintln!(
        "==> codegen: ok, {checked} entry points on {} have their barrier instructions in order",
        names.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real listings from libhdpflush.so (release, v0 mangling), with each panic's message
    // building cut down to its first instruction and its call.
    const X86_REMAP: &str = include_str!("codegen/x86_64_remap_flush_with.txt");
    const X86_URING: &str = include_str!("codegen/x86_64_uring_flush_with.txt");
    const A64_REMAP: &str = include_str!("codegen/aarch64_remap_flush_with.txt");
    const A64_REMAP_FLUSH: &str = include_str!("codegen/aarch64_remap_flush.txt");
    const A64_REMAP_BATCH: &str = include_str!("codegen/aarch64_remap_flush_batch.txt");
    const A64_LEGACY: &str = include_str!("codegen/aarch64_legacy_flush_with.txt");
    const PPC_REMAP: &str = include_str!("codegen/powerpc64le_remap_flush_with.txt");
    const PPC_REMAP_FLUSH: &str = include_str!("codegen/powerpc64le_remap_flush.txt");
    const PPC_REMAP_BATCH: &str = include_str!("codegen/powerpc64le_remap_flush_batch.txt");
    const X86_IOCTL_INVALIDATE: &str = include_str!("codegen/x86_64_ioctl_invalidate.txt");
    const X86_KFD: &str = include_str!("codegen/x86_64_kfd_flush_with.txt");
    const X86_KFD_INVALIDATE: &str = include_str!("codegen/x86_64_kfd_invalidate.txt");

    use Target::{Aarch64, Powerpc64le, X86_64};

    /// A batch of none: the trait's `flush_batch(0)`, in the loop tests below.
    const NO_FLUSH: &[Shape] = &[Shape {
        what: "a batch of none",
        steps: &[],
    }];

    fn paths(target: Target, listing: &str) -> Paths {
        returning_paths(&parse_listing(target, listing)).unwrap()
    }

    fn problems(target: Target, listing: &str, required: &[Shape]) -> Vec<String> {
        judge(target, &paths(target, listing), required, &[])
    }

    /// `listing` with its `n`-th (0-based) line that holds `insn` rewritten to `by`.
    fn rewrite(listing: &str, insn: &str, n: usize, by: &str) -> String {
        let mut seen = 0;
        let lines: Vec<String> = listing
            .lines()
            .map(|l| {
                if l.ends_with(&format!("\t{insn}")) {
                    seen += 1;
                    if seen == n + 1 {
                        return l.replace(&format!("\t{insn}"), &format!("\t{by}"));
                    }
                }
                l.to_owned()
            })
            .collect();
        assert!(seen > n, "no {n}-th `{insn}` in the listing");
        lines.join("\n")
    }

    #[test]
    fn the_compiled_flushes_have_their_shapes_on_every_architecture() {
        for (target, listing, shapes, what) in [
            (X86_64, X86_REMAP, REMAP, "x86_64 remap"),
            (X86_64, X86_URING, KERNEL_FLUSH, "x86_64 uring"),
            (Aarch64, A64_REMAP, REMAP, "aarch64 remap"),
            (Aarch64, A64_LEGACY, LEGACY, "aarch64 legacy"),
            (Powerpc64le, PPC_REMAP, REMAP, "powerpc64le remap"),
        ] {
            assert_eq!(
                problems(target, listing, shapes),
                Vec::<String>::new(),
                "{what}"
            );
        }
        // Both ways through the remap flush, with the read-back only on the completed one.
        assert_eq!(
            paths(X86_64, X86_REMAP)
                .iter()
                .map(|p| render_path(p))
                .collect::<Vec<_>>(),
            [
                "`sfence`, load ×3, store, `sfence`, store",
                "`sfence`, load ×3, store, load, `mfence`, store",
            ]
        );
    }

    #[test]
    fn a_full_fence_weakened_to_a_store_fence_is_named_with_what_was_expected() {
        let weak = rewrite(X86_REMAP, "mfence", 0, "sfence");
        let p = problems(X86_64, &weak, REMAP);
        assert!(
            p.iter().any(|m| m.starts_with(
                "expected a path `sfence`, store, load, `mfence` (completed: the flush store, its read-back, then a full fence), found none"
            ) && m.contains("[`sfence`, load ×3, store, load, `sfence`, store]")),
            "{p:#?}"
        );
        let weak = rewrite(A64_LEGACY, "dsb\tsy", 1, "dsb\tst");
        let p = problems(Aarch64, &weak, LEGACY);
        assert!(
            p.iter()
                .any(|m| m.contains("`dsb st`, store, `dsb sy`, load, `dsb sy`")
                    && m.contains("`dsb sy`, load ×4, `dsb st`")),
            "{p:#?}"
        );
    }

    #[test]
    fn a_deleted_barrier_is_caught_on_each_architecture() {
        for (target, listing, insn, n, shapes) in [
            (X86_64, X86_REMAP, "sfence", 0, REMAP),
            (X86_64, X86_REMAP, "sfence", 1, REMAP),
            (X86_64, X86_REMAP, "mfence", 0, REMAP),
            (X86_64, X86_URING, "sfence", 0, KERNEL_FLUSH),
            (X86_64, X86_URING, "sfence", 1, KERNEL_FLUSH),
            (Aarch64, A64_REMAP, "dsb\tst", 0, REMAP),
            (Aarch64, A64_LEGACY, "dsb\tst", 0, LEGACY),
            (Aarch64, A64_LEGACY, "dsb\tsy", 0, LEGACY),
            (Powerpc64le, PPC_REMAP, "sync", 0, REMAP),
            (Powerpc64le, PPC_REMAP, "sync", 1, REMAP),
        ] {
            // A `nop` in its place keeps the addresses that branches go to.
            let without = rewrite(listing, insn, n, "nop");
            assert!(
                !problems(target, &without, shapes).is_empty(),
                "{target:?}: `{insn}` #{n} deleted and not caught"
            );
        }
    }

    #[test]
    fn lwsync_is_not_sync_on_powerpc() {
        let weak = rewrite(PPC_REMAP, "sync", 1, "lwsync");
        let p = problems(Powerpc64le, &weak, REMAP);
        assert!(
            p.iter()
                .any(|m| m.contains("`sync`, load ×3, store, load, `lwsync`")),
            "{p:#?}"
        );
    }

    #[test]
    fn a_store_fence_moved_after_the_store_it_orders_is_caught() {
        // The leading `sfence` moved from before the flush store to just after it: the same
        // barriers, in the wrong place.
        let moved = rewrite(X86_REMAP, "sfence", 0, "nop");
        let moved = rewrite(&moved, "testb\t%dl, %dl", 0, "sfence");
        let p = problems(X86_64, &moved, REMAP);
        assert_eq!(p.len(), 4, "{p:#?}");
        assert!(
            p[0].contains("[load ×3, store, `sfence`, load, `mfence`, store]"),
            "{p:#?}"
        );
    }

    #[test]
    fn calls_and_tail_calls_to_known_functions_are_followed() {
        // powerpc64le: flush_batch calls flush (at its local entry, 8 bytes in) in a loop.
        let flush = paths(Powerpc64le, PPC_REMAP_FLUSH);
        let batch = paths(Powerpc64le, PPC_REMAP_BATCH);
        assert!(!judge(Powerpc64le, &batch, REMAP, NO_FLUSH).is_empty());
        let callee = |t: u64| (0x24340..=0x24348).contains(&t).then_some(&flush);
        let expanded = expand(&batch, &callee, MAX_CALL_DEPTH).unwrap();
        assert_eq!(
            judge(Powerpc64le, &expanded, REMAP, NO_FLUSH),
            Vec::<String>::new()
        );
        // aarch64: flush loads the completion and tail-calls flush_with.
        let with = paths(Aarch64, A64_REMAP);
        let flush = paths(Aarch64, A64_REMAP_FLUSH);
        assert_eq!(
            flush.iter().map(|p| render_path(p)).collect::<Vec<_>>(),
            ["load, call"]
        );
        let callee = |t: u64| (t == 0x179d0).then_some(&with);
        let expanded = expand(&flush, &callee, MAX_CALL_DEPTH).unwrap();
        assert_eq!(judge(Aarch64, &expanded, REMAP, &[]), Vec::<String>::new());
    }

    #[test]
    fn a_loop_is_followed_once_round() {
        let p = paths(Aarch64, A64_REMAP_BATCH);
        assert_eq!(
            p.iter().map(|p| render_path(p)).collect::<Vec<_>>(),
            [
                "load ×4, `dsb st`, store, `dsb st`, store",
                "load ×4, `dsb st`, store, load, `dsb sy`, store",
                "store",
            ]
        );
        assert_eq!(judge(Aarch64, &p, REMAP, NO_FLUSH), Vec::<String>::new());
        // Without the allowance for a batch of none, the empty batch is reported.
        assert_eq!(judge(Aarch64, &p, REMAP, &[]).len(), 1);
    }

    #[test]
    fn an_invalidation_is_followed_by_a_full_fence_unless_it_failed() {
        let judged = |listing: &str| {
            judge(
                X86_64,
                &paths(X86_64, listing),
                KERNEL_INVALIDATE,
                FAILED_REQUEST,
            )
        };
        assert_eq!(judged(X86_IOCTL_INVALIDATE), Vec::<String>::new());
        for by in ["nop", "sfence", "lfence"] {
            let p = judged(&rewrite(X86_IOCTL_INVALIDATE, "mfence", 0, by));
            assert!(
                p.iter()
                    .any(|m| m.starts_with("expected a path call, `mfence`")),
                "{by}: {p:#?}"
            );
        }
    }

    #[test]
    fn kfd_ioctl_flushes_like_the_module_strategies_and_its_invalidate_has_no_fence() {
        let judged = |listing: &str| {
            judge(
                X86_64,
                &paths(X86_64, listing),
                KERNEL_FLUSH,
                KFD_FLUSH_NOT_NEEDED,
            )
        };
        assert_eq!(judged(X86_KFD), Vec::<String>::new());
        for n in [0, 1] {
            assert!(
                !judged(&rewrite(X86_KFD, "sfence", n, "nop")).is_empty(),
                "`sfence` #{n} deleted and not caught"
            );
        }
        // The proposed ioctl has no invalidate: an error, and nothing to order after it.
        let kfd = paths(X86_64, X86_KFD_INVALIDATE);
        assert_eq!(
            kfd.iter().map(|p| render_path(p)).collect::<Vec<_>>(),
            ["store ×3"]
        );
        assert_eq!(
            judge(X86_64, &kfd, KFD_INVALIDATE, &[]),
            Vec::<String>::new()
        );
        assert!(!judge(X86_64, &kfd, KERNEL_INVALIDATE, FAILED_REQUEST).is_empty());
        let fenced = rewrite(X86_KFD_INVALIDATE, "movq\t%rdi, %rax", 0, "mfence");
        let p = judge(X86_64, &paths(X86_64, &fenced), KFD_INVALIDATE, &[]);
        assert!(
            p.iter().any(|m| m.contains("[`mfence`, store ×3]")),
            "{p:#?}"
        );
    }

    #[test]
    fn instructions_are_classified_per_architecture() {
        let x86 = |l: &str| parse_listing(X86_64, l).pop().map(|(_, op)| op);
        assert_eq!(
            x86("   1:\tlock\n   2:\txaddl\t%eax, 0x40(%rsi)"),
            Some(Op::LoadStore)
        );
        assert_eq!(x86("   1:\tmovl\t$0x1, (%rax,%rcx)"), Some(Op::Store));
        assert_eq!(x86("   1:\tmovl\t(%rax,%rcx), %eax"), Some(Op::Load));
        assert_eq!(x86("   1:\tcmpb\t$0x0, 0x44(%rsi)"), Some(Op::Load));
        assert_eq!(x86("   1:\tcmpb\t$0xe, 0x10(%rsp)"), Some(Op::Other));
        assert_eq!(x86("   1:\tmovq\t%rax, 0x10(%rsp)"), Some(Op::Other));
        assert_eq!(
            x86("   1:\tmovq\t0x4a7e0(%rip), %rax     # 0x80e38 <writev+0x80e38>"),
            Some(Op::Other)
        );
        assert_eq!(x86("   1:\tcallq\t*%rbx"), Some(Op::Call(None)));
        assert_eq!(x86("   1:\tjmpq\t*0x4c9d2(%rip)"), Some(Op::IndirectJump));
        assert_eq!(
            x86("   1:\tjne\t0x342c9 <f+0x49>"),
            Some(Op::CondJump(0x342c9))
        );
        assert_eq!(x86("   1:\tud2"), Some(Op::Trap));

        let a64 = |l: &str| parse_listing(Aarch64, l).pop().map(|(_, op)| op);
        assert_eq!(a64("   1:\tdsb\tst"), Some(Op::Fence("dsb st".into())));
        assert_eq!(a64("   1:\tdmb\tish"), Some(Op::Fence("dmb ish".into())));
        assert_eq!(a64("   1:\tstr\tw11, [x9, x10]"), Some(Op::Store));
        assert_eq!(a64("   1:\tldr\twzr, [x9, x10]"), Some(Op::Load));
        assert_eq!(a64("   1:\tstp\tx29, x30, [sp, #0x120]"), Some(Op::Other));
        assert_eq!(a64("   1:\tldadd\tw8, w9, [x0]"), Some(Op::LoadStore));
        assert_eq!(
            a64("   1:\tmov\tw10, #0x4               // =4"),
            Some(Op::Other)
        );
        assert_eq!(
            a64("   1:\ttbz\tw1, #0x0, 0x17a24 <f+0x54>"),
            Some(Op::CondJump(0x17a24))
        );
        assert_eq!(a64("   1:\tblr\tx8"), Some(Op::Call(None)));

        let ppc = |l: &str| parse_listing(Powerpc64le, l).pop().map(|(_, op)| op);
        assert_eq!(ppc("   1:\tsync"), Some(Op::Fence("sync".into())));
        assert_eq!(ppc("   1:\tlwsync"), Some(Op::Fence("lwsync".into())));
        assert_eq!(ppc("   1:\tstwx 6, 5, 4"), Some(Op::Store));
        assert_eq!(ppc("   1:\tlwzx 4, 5, 4"), Some(Op::Load));
        assert_eq!(ppc("   1:\tstd 6, 32(1)"), Some(Op::Other));
        assert_eq!(ppc("   1:\tstwcx. 6, 4, 3"), Some(Op::Store));
        assert_eq!(ppc("   1:\tli 3, 14"), Some(Op::Other));
        assert_eq!(
            ppc("   1:\tbt\t2, 0x24534 <f+0x64>"),
            Some(Op::CondJump(0x24534))
        );
        assert_eq!(
            ppc("   1:\tbne+\t0, 0x24534 <f+0x64>"),
            Some(Op::CondJump(0x24534))
        );
        assert_eq!(ppc("   1:\tbeqlr"), Some(Op::CondReturn));
        assert_eq!(
            ppc("   1:\tbl 0x2a5b8 <g+0x8>"),
            Some(Op::Call(Some(0x2a5b8)))
        );
        assert_eq!(ppc("   1:\tblr"), Some(Op::Return));
    }

    #[test]
    fn headers_and_blank_lines_are_not_instructions() {
        let listing = "\nlib.so:\tfile format elf64-x86-64\n\nDisassembly of section .text:\n\n\
                       00000000000365f0 <<a as b>::flush_with>:\n   365f0:      \tretq\n\t\t...\n";
        assert_eq!(parse_listing(X86_64, listing), [(0x365f0, Op::Return)]);
    }

    #[test]
    fn a_path_that_runs_off_the_end_is_an_error_unless_a_call_never_returned() {
        let off = "   1:\tsfence\n   4:\tmovl\t$0x1, (%rax)";
        assert!(returning_paths(&parse_listing(X86_64, off))
            .unwrap_err()
            .contains("runs past the end"));
        let panic =
            "   1:\tje\t0x9 <f+0x9>\n   3:\tsfence\n   6:\tretq\n   9:\tcallq\t0x100 <panic>";
        assert_eq!(
            paths(X86_64, panic)
                .iter()
                .map(|p| render_path(p))
                .collect::<Vec<_>>(),
            ["`sfence`"]
        );
        let into_middle = "   1:\tjmp\t0x2 <f+0x2>\n   3:\tretq";
        assert!(returning_paths(&parse_listing(X86_64, into_middle))
            .unwrap_err()
            .contains("not to an instruction"));
    }

    #[test]
    fn every_entry_point_has_shapes_whose_barriers_exist_on_every_architecture() {
        let entries = entries();
        assert!(entries.len() >= 12);
        for e in &entries {
            assert!(!e.required.is_empty(), "{}", e.symbol);
            assert!(
                e.symbol.starts_with('<') && e.symbol.contains(" as libflush::strategy::Flush>::")
            );
        }
        for t in Target::ALL {
            assert_eq!(Target::parse(t.name()), Some(t));
            assert!(!t.store_fence().is_empty() && !t.full_fence().is_empty());
        }
    }
}
