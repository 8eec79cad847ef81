//! One GPU through the HSA runtime: its agent, a host-visible VRAM buffer, the check kernel
//! loaded from the embedded code object, a queue, and one dispatch at a time.
//!
//! Not exercised: no machine of ours has an AMD GPU (docs/validate.md). The declarations it
//! uses are checked against Debian's headers; the sequence follows ROCr's public API docs.

use std::ffi::{c_void, CStr};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::hsa::{self, Agent, Hsa, MemoryPool, Status};
use super::ValidateError;

/// `status` as a result, naming `what` was called.
fn check(h: &Hsa, status: Status, what: &str) -> Result<(), ValidateError> {
    if status == hsa::STATUS_SUCCESS {
        Ok(())
    } else {
        Err(ValidateError::Hsa {
            call: what.into(),
            status: h.describe(status),
        })
    }
}

/// Reads one `hsa_agent_get_info` attribute of type `T`.
fn agent_info<T: Copy>(h: &Hsa, agent: Agent, attr: u32, zero: T) -> Result<T, Status> {
    let mut v = zero;
    // SAFETY: `v` is the attribute's type (hsa.rs, checked against the header).
    let s = unsafe { (h.f.hsa_agent_get_info)(agent, attr, (&mut v as *mut T).cast()) };
    if s == hsa::STATUS_SUCCESS {
        Ok(v)
    } else {
        Err(s)
    }
}

fn agent_string(h: &Hsa, agent: Agent, attr: u32) -> String {
    match agent_info(h, agent, attr, [0u8; 64]) {
        Ok(bytes) => CStr::from_bytes_until_nul(&bytes)
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

unsafe extern "C" fn collect_agent(agent: Agent, data: *mut c_void) -> Status {
    // SAFETY: `data` is the `Vec<Agent>` `agents` passes.
    let list = unsafe { &mut *data.cast::<Vec<Agent>>() };
    list.push(agent);
    hsa::STATUS_SUCCESS
}

unsafe extern "C" fn collect_pool(pool: MemoryPool, data: *mut c_void) -> Status {
    // SAFETY: `data` is the `Vec<MemoryPool>` `pools` passes.
    let list = unsafe { &mut *data.cast::<Vec<MemoryPool>>() };
    list.push(pool);
    hsa::STATUS_SUCCESS
}

/// A GPU agent as HSA describes it.
#[derive(Clone, Debug)]
pub struct GpuAgent {
    /// The agent.
    pub agent: Agent,
    /// `HSA_AGENT_INFO_NAME`, e.g. "gfx90a".
    pub name: String,
    /// `HSA_AMD_AGENT_INFO_PRODUCT_NAME`.
    pub product: String,
    /// domain:bus:device.function.
    pub pci: String,
    /// `HSA_AMD_AGENT_INFO_HDP_FLUSH`'s `HDP_MEM_FLUSH_CNTL`, if mapped.
    pub remap: Option<NonNull<u32>>,
}

/// The GPU agents and the first CPU agent.
pub fn agents(h: &Hsa) -> Result<(Vec<GpuAgent>, Agent), ValidateError> {
    let mut all: Vec<Agent> = Vec::new();
    // SAFETY: the callback only pushes onto `all`, which outlives the call.
    let s =
        unsafe { (h.f.hsa_iterate_agents)(collect_agent, (&mut all as *mut Vec<Agent>).cast()) };
    check(h, s, "hsa_iterate_agents")?;
    let mut cpu = None;
    let mut gpus = Vec::new();
    for agent in all {
        match agent_info(h, agent, hsa::AGENT_INFO_DEVICE, u32::MAX) {
            Ok(hsa::DEVICE_TYPE_CPU) => {
                cpu.get_or_insert(agent);
            }
            Ok(hsa::DEVICE_TYPE_GPU) => {
                let bdf = agent_info(h, agent, hsa::AMD_AGENT_INFO_BDFID, 0u32).unwrap_or(0);
                let domain = agent_info(h, agent, hsa::AMD_AGENT_INFO_DOMAIN, 0u32).unwrap_or(0);
                let flush = agent_info(
                    h,
                    agent,
                    hsa::AMD_AGENT_INFO_HDP_FLUSH,
                    hsa::HdpFlush {
                        hdp_mem_flush_cntl: std::ptr::null_mut(),
                        hdp_reg_flush_cntl: std::ptr::null_mut(),
                    },
                );
                gpus.push(GpuAgent {
                    agent,
                    name: agent_string(h, agent, hsa::AGENT_INFO_NAME),
                    product: agent_string(h, agent, hsa::AMD_AGENT_INFO_PRODUCT_NAME),
                    pci: format!(
                        "{domain:04x}:{:02x}:{:02x}.{:x}",
                        (bdf >> 8) & 0xff,
                        (bdf >> 3) & 0x1f,
                        bdf & 0x7
                    ),
                    remap: flush.ok().and_then(|f| NonNull::new(f.hdp_mem_flush_cntl)),
                });
            }
            _ => {}
        }
    }
    let cpu = cpu.ok_or_else(|| ValidateError::Setup("HSA reports no CPU agent".into()))?;
    Ok((gpus, cpu))
}

fn pools(h: &Hsa, agent: Agent) -> Result<Vec<MemoryPool>, ValidateError> {
    let mut list: Vec<MemoryPool> = Vec::new();
    // SAFETY: the callback only pushes onto `list`, which outlives the call.
    let s = unsafe {
        (h.f.hsa_amd_agent_iterate_memory_pools)(
            agent,
            collect_pool,
            (&mut list as *mut Vec<MemoryPool>).cast(),
        )
    };
    check(h, s, "hsa_amd_agent_iterate_memory_pools")?;
    Ok(list)
}

fn pool_info<T: Copy>(h: &Hsa, pool: MemoryPool, attr: u32, zero: T) -> Option<T> {
    let mut v = zero;
    // SAFETY: `v` is the attribute's type.
    let s = unsafe { (h.f.hsa_amd_memory_pool_get_info)(pool, attr, (&mut v as *mut T).cast()) };
    (s == hsa::STATUS_SUCCESS).then_some(v)
}

/// The agent's global pool whose flags include `flag` and that allows allocation.
fn global_pool(h: &Hsa, agent: Agent, flag: u32) -> Result<Option<MemoryPool>, ValidateError> {
    Ok(pools(h, agent)?.into_iter().find(|&p| {
        pool_info(h, p, hsa::AMD_MEMORY_POOL_INFO_SEGMENT, u32::MAX)
            == Some(hsa::AMD_SEGMENT_GLOBAL)
            && pool_info(h, p, hsa::AMD_MEMORY_POOL_INFO_GLOBAL_FLAGS, 0u32)
                .is_some_and(|f| f & flag != 0)
            && pool_info(h, p, hsa::AMD_MEMORY_POOL_INFO_RUNTIME_ALLOC_ALLOWED, false) == Some(true)
    }))
}

/// Memory from an HSA pool, freed on drop.
pub struct PoolMemory<'h> {
    h: &'h Hsa,
    ptr: NonNull<u8>,
    len: usize,
}

impl<'h> PoolMemory<'h> {
    fn allocate(
        h: &'h Hsa,
        pool: MemoryPool,
        len: usize,
        access: &[Agent],
        what: &str,
    ) -> Result<Self, ValidateError> {
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: `p` receives the allocation.
        let s = unsafe { (h.f.hsa_amd_memory_pool_allocate)(pool, len, 0, &mut p) };
        check(h, s, &format!("hsa_amd_memory_pool_allocate ({what})"))?;
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| ValidateError::Setup(format!("{what}: HSA returned null")))?;
        let mem = Self { h, ptr, len };
        let count = u32::try_from(access.len()).unwrap_or(u32::MAX);
        // SAFETY: `access` holds `count` agents; the allocation is live.
        let s = unsafe {
            (h.f.hsa_amd_agents_allow_access)(count, access.as_ptr(), std::ptr::null(), p)
        };
        check(h, s, &format!("hsa_amd_agents_allow_access ({what})"))?;
        Ok(mem)
    }

    /// The start.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Its length.
    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for PoolMemory<'_> {
    fn drop(&mut self) {
        // SAFETY: allocated by hsa_amd_memory_pool_allocate and not freed before.
        unsafe { (self.h.f.hsa_amd_memory_pool_free)(self.ptr.as_ptr().cast()) };
    }
}

/// The check kernel's arguments (gpu/check_pattern.cl), 24 bytes.
#[repr(C)]
struct CheckArgs {
    words: u64,
    count: u32,
    seed: u32,
    result: u64,
}

/// What a GPU needs to run the check kernel: buffers, executable, queue, signal.
pub struct Device<'h> {
    h: &'h Hsa,
    /// The agent.
    pub gpu: GpuAgent,
    /// Host-visible VRAM.
    pub vram: PoolMemory<'h>,
    kernarg: PoolMemory<'h>,
    result: PoolMemory<'h>,
    executable: hsa::Executable,
    kernel_object: u64,
    private_size: u32,
    group_size: u32,
    queue: NonNull<hsa::Queue>,
    signal: hsa::Signal,
}

/// Bytes of VRAM allocated: a 64K dummy page, a 64K legacy/W/R area and the pattern.
pub const VRAM_BYTES: usize = 1 << 20;

impl<'h> Device<'h> {
    /// Set up `gpu` with the code object `code` (its gfx target's).
    pub fn open(h: &'h Hsa, gpu: GpuAgent, cpu: Agent, code: &[u8]) -> Result<Self, ValidateError> {
        let vram_pool = global_pool(
            h,
            gpu.agent,
            hsa::AMD_MEMORY_POOL_GLOBAL_FLAG_COARSE_GRAINED,
        )?
        .ok_or_else(|| ValidateError::Setup(format!("{}: no VRAM pool", gpu.pci)))?;
        let sys_pool = global_pool(h, cpu, hsa::AMD_MEMORY_POOL_GLOBAL_FLAG_FINE_GRAINED)?
            .ok_or_else(|| ValidateError::Setup("no fine-grained system pool".into()))?;
        let karg_pool = global_pool(h, cpu, hsa::AMD_MEMORY_POOL_GLOBAL_FLAG_KERNARG_INIT)?
            .ok_or_else(|| ValidateError::Setup("no kernarg pool".into()))?;
        let both = [cpu, gpu.agent];
        let vram = PoolMemory::allocate(h, vram_pool, VRAM_BYTES, &both, "VRAM, host-visible")
            .map_err(|e| {
                ValidateError::Setup(format!(
                    "{}: VRAM is not host-visible (a large BAR is needed): {e}",
                    gpu.pci
                ))
            })?;
        let kernarg = PoolMemory::allocate(h, karg_pool, 64, &both, "kernel arguments")?;
        let result = PoolMemory::allocate(h, sys_pool, 64, &both, "result words")?;

        let mut reader = hsa::CodeObjectReader { handle: 0 };
        // SAFETY: `code` outlives the reader, destroyed below.
        let s = unsafe {
            (h.f.hsa_code_object_reader_create_from_memory)(
                code.as_ptr().cast(),
                code.len(),
                &mut reader,
            )
        };
        check(h, s, "hsa_code_object_reader_create_from_memory")?;
        let mut executable = hsa::Executable { handle: 0 };
        let empty = c"".as_ptr();
        // SAFETY: plain out-parameters and NUL-terminated options.
        let loaded = unsafe {
            let s = (h.f.hsa_executable_create_alt)(
                hsa::PROFILE_FULL,
                hsa::DEFAULT_FLOAT_ROUNDING_MODE_DEFAULT,
                empty,
                &mut executable,
            );
            check(h, s, "hsa_executable_create_alt").and_then(|()| {
                let s = (h.f.hsa_executable_load_agent_code_object)(
                    executable,
                    gpu.agent,
                    reader,
                    empty,
                    std::ptr::null_mut(),
                );
                check(h, s, "hsa_executable_load_agent_code_object")?;
                check(
                    h,
                    (h.f.hsa_executable_freeze)(executable, empty),
                    "hsa_executable_freeze",
                )
            })
        };
        // SAFETY: the reader is no longer needed once loaded (or failed).
        unsafe { (h.f.hsa_code_object_reader_destroy)(reader) };
        loaded?;
        let mut symbol = hsa::ExecutableSymbol { handle: 0 };
        // SAFETY: NUL-terminated name, out-parameter.
        let s = unsafe {
            (h.f.hsa_executable_get_symbol_by_name)(
                executable,
                c"check_pattern.kd".as_ptr(),
                &gpu.agent,
                &mut symbol,
            )
        };
        check(h, s, "hsa_executable_get_symbol_by_name(check_pattern.kd)")?;
        let sym_u32 = |attr| {
            let mut v = 0u32;
            // SAFETY: these attributes are uint32_t.
            let s = unsafe {
                (h.f.hsa_executable_symbol_get_info)(symbol, attr, (&mut v as *mut u32).cast())
            };
            check(h, s, "hsa_executable_symbol_get_info").map(|()| v)
        };
        let mut kernel_object = 0u64;
        // SAFETY: KERNEL_OBJECT is uint64_t.
        let s = unsafe {
            (h.f.hsa_executable_symbol_get_info)(
                symbol,
                hsa::EXECUTABLE_SYMBOL_INFO_KERNEL_OBJECT,
                (&mut kernel_object as *mut u64).cast(),
            )
        };
        check(h, s, "hsa_executable_symbol_get_info(KERNEL_OBJECT)")?;
        let kernarg_size = sym_u32(hsa::EXECUTABLE_SYMBOL_INFO_KERNEL_KERNARG_SEGMENT_SIZE)?;
        if kernarg_size as usize > kernarg.len()
            || (kernarg_size as usize) < std::mem::size_of::<CheckArgs>()
        {
            return Err(ValidateError::Setup(format!(
                "check_pattern wants {kernarg_size} bytes of kernel arguments, expected 24"
            )));
        }
        let private_size = sym_u32(hsa::EXECUTABLE_SYMBOL_INFO_KERNEL_PRIVATE_SEGMENT_SIZE)?;
        let group_size = sym_u32(hsa::EXECUTABLE_SYMBOL_INFO_KERNEL_GROUP_SEGMENT_SIZE)?;

        let max = agent_info(h, gpu.agent, hsa::AGENT_INFO_QUEUE_MAX_SIZE, 0u32).unwrap_or(64);
        let mut queue: *mut hsa::Queue = std::ptr::null_mut();
        // SAFETY: out-parameter; no callback.
        let s = unsafe {
            (h.f.hsa_queue_create)(
                gpu.agent,
                max.clamp(1, 64),
                hsa::QUEUE_TYPE_SINGLE,
                None,
                std::ptr::null_mut(),
                u32::MAX,
                u32::MAX,
                &mut queue,
            )
        };
        check(h, s, "hsa_queue_create")?;
        let queue = NonNull::new(queue).ok_or_else(|| ValidateError::Setup("null queue".into()))?;
        let mut signal = hsa::Signal { handle: 0 };
        // SAFETY: out-parameter.
        let s = unsafe { (h.f.hsa_signal_create)(1, 0, std::ptr::null(), &mut signal) };
        check(h, s, "hsa_signal_create")?;
        Ok(Self {
            h,
            gpu,
            vram,
            kernarg,
            result,
            executable,
            kernel_object,
            private_size,
            group_size,
            queue,
            signal,
        })
    }

    /// Dispatch the check over `count` words at `words` (in [`Self::vram`]) against `seed`;
    /// returns (stale words, words checked).
    pub fn check_pattern(
        &self,
        words: *const u32,
        count: u32,
        seed: u32,
    ) -> Result<(u64, u64), ValidateError> {
        let h = self.h;
        let result = self.result.ptr().cast::<u32>();
        // SAFETY: the result and kernarg buffers are ours, 64 bytes each, host-accessible; the
        // queue is ours (single producer), its ring `size` packets of 64 bytes.
        unsafe {
            result.write_volatile(0);
            result.add(1).write_volatile(0);
            self.kernarg
                .ptr()
                .cast::<CheckArgs>()
                .write_volatile(CheckArgs {
                    words: words as u64,
                    count,
                    seed,
                    result: result as u64,
                });
            (h.f.hsa_signal_store_relaxed)(self.signal, 1);
            let q = self.queue.as_ptr();
            let size = u64::from((*q).size);
            let index = (h.f.hsa_queue_add_write_index_screlease)(q, 1);
            let deadline = Instant::now() + Duration::from_secs(10);
            while index - (h.f.hsa_queue_load_read_index_scacquire)(q) >= size {
                if Instant::now() > deadline {
                    return Err(ValidateError::Setup("the queue never drained".into()));
                }
                std::hint::spin_loop();
            }
            let slot = (*q)
                .base_address
                .cast::<hsa::KernelDispatchPacket>()
                .add((index % size) as usize);
            let packet = hsa::KernelDispatchPacket {
                header: 0,
                setup: 1 << hsa::KERNEL_DISPATCH_PACKET_SETUP_DIMENSIONS,
                workgroup_size_x: 256,
                workgroup_size_y: 1,
                workgroup_size_z: 1,
                reserved0: 0,
                grid_size_x: 256 * 16,
                grid_size_y: 1,
                grid_size_z: 1,
                private_segment_size: self.private_size,
                group_segment_size: self.group_size,
                kernel_object: self.kernel_object,
                kernarg_address: self.kernarg.ptr() as u64,
                reserved2: 0,
                completion_signal: self.signal.handle,
            };
            // Everything but the header and setup first; then both in one release store, so
            // the packet processor never sees a valid header on a half-written packet.
            slot.write_volatile(packet);
            let header = (hsa::PACKET_TYPE_KERNEL_DISPATCH << hsa::PACKET_HEADER_TYPE)
                | (1 << hsa::PACKET_HEADER_BARRIER)
                // Acquire at agent scope only, so the packet processor does not flush the HDP
                // itself (a system-scope acquire may, and would hide a missing flush).
                | (hsa::FENCE_SCOPE_AGENT << hsa::PACKET_HEADER_SCACQUIRE_FENCE_SCOPE)
                | (hsa::FENCE_SCOPE_SYSTEM << hsa::PACKET_HEADER_SCRELEASE_FENCE_SCOPE);
            let word = u32::from(header) | (u32::from(packet.setup) << 16);
            AtomicU32::from_ptr(slot.cast::<u32>()).store(word, Ordering::Release);
            (h.f.hsa_signal_store_screlease)((*q).doorbell_signal, index as i64);
            let deadline = Instant::now() + Duration::from_secs(10);
            while (h.f.hsa_signal_wait_scacquire)(
                self.signal,
                hsa::SIGNAL_CONDITION_LT,
                1,
                1_000_000,
                hsa::WAIT_STATE_BLOCKED,
            ) >= 1
            {
                if Instant::now() > deadline {
                    return Err(ValidateError::Setup(format!(
                        "{}: the check kernel did not complete within 10 s",
                        self.gpu.pci
                    )));
                }
            }
            let stale = u64::from(result.read_volatile());
            let seen = u64::from(result.add(1).read_volatile());
            Ok((stale, seen))
        }
    }
}

impl Drop for Device<'_> {
    fn drop(&mut self) {
        // SAFETY: created in `open`, destroyed once.
        unsafe {
            (self.h.f.hsa_signal_destroy)(self.signal);
            (self.h.f.hsa_queue_destroy)(self.queue.as_ptr());
            (self.h.f.hsa_executable_destroy)(self.executable);
        }
    }
}

/// The gfx target part of an agent name ("gfx90a:sramecc+:xnack-" -> "gfx90a").
pub fn gfx_target(name: &str) -> &str {
    name.split(':').next().unwrap_or(name)
}

/// `hsa_system_get_info` VERSION_MAJOR.MINOR.
pub fn version(h: &Hsa) -> String {
    let get = |attr| {
        let mut v = 0u16;
        // SAFETY: the version attributes are uint16_t.
        let s = unsafe { (h.f.hsa_system_get_info)(attr, (&mut v as *mut u16).cast()) };
        (s == hsa::STATUS_SUCCESS).then_some(v)
    };
    match (
        get(hsa::SYSTEM_INFO_VERSION_MAJOR),
        get(hsa::SYSTEM_INFO_VERSION_MINOR),
    ) {
        (Some(a), Some(b)) => format!("{a}.{b}"),
        _ => "unknown".into(),
    }
}
