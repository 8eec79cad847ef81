// SPDX-License-Identifier: GPL-2.0 OR MIT
//! `amdgpu_devices=`: the AMD GPUs the administrator lets the module touch, and where each
//! one's registers are. Nothing else about a GPU is ever written.
//!
//! ```text
//! amdgpu_devices=0000:03:00.0@0x7f000,0000:83:00.0@0x1a000/post=0x13b0c/invalidate=0x3ad4
//! ```
//!
//! One entry per GPU, comma-separated: its PCI address, `@` the byte offset of its HDP flush
//! register (or the remap of it) in the register BAR, then optionally `/post=` a register that
//! is harmless to read, to post the flush (default 0, `MM_INDEX`), and `/invalidate=` the HDP
//! read-cache invalidate register, or `none` where the GPU's HDP has none to invalidate
//! (amdgpu does nothing there: INVALIDATE answers 0 without touching the GPU). Without
//! `/invalidate=`, INVALIDATE answers `EOPNOTSUPP`: nobody said which it is. Offsets are
//! hexadecimal with `0x` or decimal, 4-byte aligned, pairwise distinct, and checked against the
//! BAR's length when the GPU is found.
//!
//! `no_std` and dependency-free: compiled into the module and into a host test
//! (`libflush/tests/kmod_params.rs`).

use core::fmt;

/// Most GPUs one parameter can name.
pub const MAX_AMDGPU_DEVICES: usize = 16;

/// A PCI function as the kernel looks it up (`pci_get_domain_bus_and_slot`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciLocation {
    /// Segment.
    pub domain: u32,
    /// Bus.
    pub bus: u8,
    /// `device << 3 | function`.
    pub devfn: u8,
}

/// One GPU the administrator named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmdgpuDevice {
    /// Where it is.
    pub pci: PciLocation,
    /// `HDP_MEM_COHERENCY_FLUSH_CNTL`, or its remap in the hole page: store 0 to flush.
    pub flush: u64,
    /// A register to read after the flush store, to post it.
    pub post: u64,
    /// What INVALIDATE does on it.
    pub invalidate: Invalidate,
}

/// What INVALIDATE does on a GPU, as the administrator said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalidate {
    /// Nothing was said: refused with `EOPNOTSUPP`.
    Unset,
    /// `invalidate=none`: the HDP has no read cache the CPU must invalidate (amdgpu's
    /// `invalidate_hdp` does nothing there): answered 0, the GPU untouched.
    NotNeeded,
    /// `invalidate=OFFSET`: `HDP_READ_CACHE_INVALIDATE`, store 1 and read back.
    Register(u64),
}

impl Invalidate {
    /// The register, if there is one.
    pub fn register(self) -> Option<u64> {
        match self {
            Self::Register(offset) => Some(offset),
            Self::Unset | Self::NotNeeded => None,
        }
    }
}

impl AmdgpuDevice {
    /// Fail unless every register lies inside a BAR of `bar_len` bytes.
    pub fn check_bar(&self, bar_len: u64) -> Result<(), BarError> {
        let named = [
            ("flush", Some(self.flush)),
            ("post", Some(self.post)),
            ("invalidate", self.invalidate.register()),
        ];
        for (which, offset) in named {
            if let Some(offset) = offset {
                if offset.checked_add(4).is_none_or(|end| end > bar_len) {
                    return Err(BarError {
                        which,
                        offset,
                        bar_len,
                    });
                }
            }
        }
        Ok(())
    }
}

/// A register offset past the end of the register BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarError {
    /// Which register.
    pub which: &'static str,
    /// Its offset.
    pub offset: u64,
    /// The BAR's length.
    pub bar_len: u64,
}

impl fmt::Display for BarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} offset {:#x} lies outside the {:#x}-byte register BAR",
            self.which, self.offset, self.bar_len
        )
    }
}

/// The parsed parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmdgpuDevices {
    entries: [Option<AmdgpuDevice>; MAX_AMDGPU_DEVICES],
}

impl AmdgpuDevices {
    /// Every GPU named, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &AmdgpuDevice> {
        self.entries.iter().map_while(Option::as_ref)
    }

    /// How many GPUs were named.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True if none was.
    pub fn is_empty(&self) -> bool {
        self.entries[0].is_none()
    }
}

/// What is wrong with the parameter, naming the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamError<'a> {
    /// The entry at fault (the whole value for a count error).
    pub entry: &'a str,
    /// What is wrong with it.
    pub why: &'static str,
}

impl fmt::Display for ParamError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "amdgpu_devices entry `{}`: {}; expected DOMAIN:BUS:DEV.FN@FLUSH[/post=OFFSET][/invalidate=OFFSET]",
            self.entry, self.why
        )
    }
}

fn hex(t: &str, max: u32) -> Option<u32> {
    if t.is_empty() || t.len() > 8 {
        return None;
    }
    u32::from_str_radix(t, 16).ok().filter(|&v| v <= max)
}

/// `dddd:bb:dd.f` (the domain may be omitted).
pub fn parse_pci(t: &str) -> Option<PciLocation> {
    let (rest, function) = t.rsplit_once('.')?;
    let (domain, bus_dev) = match rest.split_once(':') {
        Some((d, bd)) if bd.contains(':') => (hex(d, u32::MAX)?, bd),
        _ => (0, rest),
    };
    let (bus, device) = bus_dev.split_once(':')?;
    let (bus, device, function) = (hex(bus, 0xff)?, hex(device, 0x1f)?, hex(function, 7)?);
    Some(PciLocation {
        domain,
        bus: bus as u8,
        devfn: (device << 3 | function) as u8,
    })
}

/// `0x...` or decimal.
fn parse_offset(t: &str) -> Option<u64> {
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) if !h.is_empty() => u64::from_str_radix(h, 16).ok(),
        Some(_) => None,
        None if !t.is_empty() => t.parse().ok(),
        None => None,
    }
}

fn parse_entry(entry: &str) -> Result<AmdgpuDevice, &'static str> {
    let (pci, regs) = entry
        .split_once('@')
        .ok_or("no `@FLUSH` offset after the PCI address")?;
    let pci = parse_pci(pci).ok_or("not a PCI address")?;
    let mut parts = regs.split('/');
    let flush = parts
        .next()
        .and_then(parse_offset)
        .ok_or("the flush offset is not a number")?;
    let (mut post, mut invalidate) = (None, None);
    for part in parts {
        let (key, value) = part.split_once('=').ok_or("an option is not KEY=OFFSET")?;
        let twice = match key {
            "post" => post
                .replace(parse_offset(value).ok_or("post= is not a number")?)
                .is_some(),
            "invalidate" if value == "none" => invalidate.replace(Invalidate::NotNeeded).is_some(),
            "invalidate" => invalidate
                .replace(Invalidate::Register(
                    parse_offset(value).ok_or("invalidate= is neither a number nor `none`")?,
                ))
                .is_some(),
            _ => return Err("unknown option (post= and invalidate= are known)"),
        };
        if twice {
            return Err("an option is given twice");
        }
    }
    let dev = AmdgpuDevice {
        pci,
        flush,
        post: post.unwrap_or(0),
        invalidate: invalidate.unwrap_or(Invalidate::Unset),
    };
    let offsets = [Some(dev.flush), Some(dev.post), dev.invalidate.register()];
    if offsets.iter().flatten().any(|o| o % 4 != 0) {
        return Err("a register offset is not 4-byte aligned");
    }
    let distinct = match dev.invalidate.register() {
        Some(i) => dev.flush != dev.post && i != dev.flush && i != dev.post,
        None => dev.flush != dev.post,
    };
    if !distinct {
        // Reading the flush register back breaks some platforms (hdp_v4_0.c); reading the
        // invalidate register to post a flush would do one of them twice.
        return Err("flush, post and invalidate must be three different registers");
    }
    Ok(dev)
}

/// Parse the parameter's value (empty: no GPU).
pub fn parse_amdgpu_devices(value: &str) -> Result<AmdgpuDevices, ParamError<'_>> {
    let mut out = AmdgpuDevices {
        entries: [None; MAX_AMDGPU_DEVICES],
    };
    let value = value.trim();
    if value.is_empty() {
        return Ok(out);
    }
    for (i, entry) in value.split(',').map(str::trim).enumerate() {
        let dev = parse_entry(entry).map_err(|why| ParamError { entry, why })?;
        if i >= MAX_AMDGPU_DEVICES {
            return Err(ParamError {
                entry: value,
                why: "more than 16 GPUs",
            });
        }
        if out.iter().any(|d| d.pci == dev.pci) {
            return Err(ParamError {
                entry,
                why: "this GPU is named twice",
            });
        }
        out.entries[i] = Some(dev);
    }
    Ok(out)
}
