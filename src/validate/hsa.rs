//! The part of the HSA runtime `hdpflush validate` calls, declared once, loaded at run time.
//!
//! Every constant, struct and function here is checked against Debian's headers
//! (`/usr/include/hsa/hsa.h`, `hsa_ext_amd.h` from `libhsa-runtime-dev` 5.2) by
//! `gpu/hsa_check.c`, which `cargo xtask test` compiles with `-Werror`: each constant by a
//! `_Static_assert`, each struct by its size and offsets, each function by assigning it to a
//! pointer of the type declared here. Adding a declaration here means adding its check there
//! (a unit test compares the two lists of names).

use std::ffi::{c_char, c_void, CStr};

/// `hsa_status_t`.
pub type Status = u32;
/// `HSA_STATUS_SUCCESS`.
pub const STATUS_SUCCESS: Status = 0x0;
/// `HSA_STATUS_ERROR_OUT_OF_RESOURCES`: what `hsa_init` of 5.2 returns without `/dev/kfd`
/// (tried 2026-12-02 on a host without a GPU).
pub const STATUS_ERROR_OUT_OF_RESOURCES: Status = 0x1008;

/// `hsa_system_info_t` values used.
pub const SYSTEM_INFO_VERSION_MAJOR: u32 = 0;
/// `HSA_SYSTEM_INFO_VERSION_MINOR`.
pub const SYSTEM_INFO_VERSION_MINOR: u32 = 1;

/// `HSA_AGENT_INFO_NAME`: `char[64]`, e.g. "gfx90a".
pub const AGENT_INFO_NAME: u32 = 0;
/// `HSA_AGENT_INFO_QUEUE_MAX_SIZE`: `uint32_t`.
pub const AGENT_INFO_QUEUE_MAX_SIZE: u32 = 14;
/// `HSA_AGENT_INFO_DEVICE`: `hsa_device_type_t`.
pub const AGENT_INFO_DEVICE: u32 = 17;
/// `HSA_DEVICE_TYPE_CPU`.
pub const DEVICE_TYPE_CPU: u32 = 0;
/// `HSA_DEVICE_TYPE_GPU`.
pub const DEVICE_TYPE_GPU: u32 = 1;

/// `HSA_AMD_AGENT_INFO_BDFID`: `uint32_t`, bus << 8 | device << 3 | function.
pub const AMD_AGENT_INFO_BDFID: u32 = 0xA006;
/// `HSA_AMD_AGENT_INFO_PRODUCT_NAME`: `char[64]`.
pub const AMD_AGENT_INFO_PRODUCT_NAME: u32 = 0xA009;
/// `HSA_AMD_AGENT_INFO_HDP_FLUSH`: [`HdpFlush`] (present in 5.2's header).
pub const AMD_AGENT_INFO_HDP_FLUSH: u32 = 0xA00E;
/// `HSA_AMD_AGENT_INFO_DOMAIN`: `uint32_t`, the PCI domain.
pub const AMD_AGENT_INFO_DOMAIN: u32 = 0xA00F;

/// `HSA_AMD_MEMORY_POOL_INFO_SEGMENT`: `hsa_amd_segment_t`.
pub const AMD_MEMORY_POOL_INFO_SEGMENT: u32 = 0;
/// `HSA_AMD_MEMORY_POOL_INFO_GLOBAL_FLAGS`: `uint32_t`.
pub const AMD_MEMORY_POOL_INFO_GLOBAL_FLAGS: u32 = 1;
/// `HSA_AMD_MEMORY_POOL_INFO_RUNTIME_ALLOC_ALLOWED`: `bool`.
pub const AMD_MEMORY_POOL_INFO_RUNTIME_ALLOC_ALLOWED: u32 = 5;
/// `HSA_AMD_SEGMENT_GLOBAL`.
pub const AMD_SEGMENT_GLOBAL: u32 = 0;
/// `HSA_AMD_MEMORY_POOL_GLOBAL_FLAG_KERNARG_INIT`.
pub const AMD_MEMORY_POOL_GLOBAL_FLAG_KERNARG_INIT: u32 = 1;
/// `HSA_AMD_MEMORY_POOL_GLOBAL_FLAG_FINE_GRAINED`.
pub const AMD_MEMORY_POOL_GLOBAL_FLAG_FINE_GRAINED: u32 = 2;
/// `HSA_AMD_MEMORY_POOL_GLOBAL_FLAG_COARSE_GRAINED`.
pub const AMD_MEMORY_POOL_GLOBAL_FLAG_COARSE_GRAINED: u32 = 4;

/// `HSA_PROFILE_FULL`.
pub const PROFILE_FULL: u32 = 1;
/// `HSA_DEFAULT_FLOAT_ROUNDING_MODE_DEFAULT`.
pub const DEFAULT_FLOAT_ROUNDING_MODE_DEFAULT: u32 = 0;
/// `HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_OBJECT`: `uint64_t`.
pub const EXECUTABLE_SYMBOL_INFO_KERNEL_OBJECT: u32 = 22;
/// `HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_KERNARG_SEGMENT_SIZE`: `uint32_t`.
pub const EXECUTABLE_SYMBOL_INFO_KERNEL_KERNARG_SEGMENT_SIZE: u32 = 11;
/// `HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_GROUP_SEGMENT_SIZE`: `uint32_t`.
pub const EXECUTABLE_SYMBOL_INFO_KERNEL_GROUP_SEGMENT_SIZE: u32 = 13;
/// `HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_PRIVATE_SEGMENT_SIZE`: `uint32_t`.
pub const EXECUTABLE_SYMBOL_INFO_KERNEL_PRIVATE_SEGMENT_SIZE: u32 = 14;

/// `HSA_QUEUE_TYPE_SINGLE`: one producer (us).
pub const QUEUE_TYPE_SINGLE: u32 = 1;
/// `HSA_PACKET_TYPE_KERNEL_DISPATCH`.
pub const PACKET_TYPE_KERNEL_DISPATCH: u16 = 2;
/// `HSA_PACKET_HEADER_TYPE`: bit offset of the packet type.
pub const PACKET_HEADER_TYPE: u16 = 0;
/// `HSA_PACKET_HEADER_BARRIER`.
pub const PACKET_HEADER_BARRIER: u16 = 8;
/// `HSA_PACKET_HEADER_SCACQUIRE_FENCE_SCOPE`.
pub const PACKET_HEADER_SCACQUIRE_FENCE_SCOPE: u16 = 9;
/// `HSA_PACKET_HEADER_SCRELEASE_FENCE_SCOPE`.
pub const PACKET_HEADER_SCRELEASE_FENCE_SCOPE: u16 = 11;
/// `HSA_FENCE_SCOPE_AGENT`.
pub const FENCE_SCOPE_AGENT: u16 = 1;
/// `HSA_FENCE_SCOPE_SYSTEM`.
pub const FENCE_SCOPE_SYSTEM: u16 = 2;
/// `HSA_KERNEL_DISPATCH_PACKET_SETUP_DIMENSIONS`: bit offset of the dimension count.
pub const KERNEL_DISPATCH_PACKET_SETUP_DIMENSIONS: u16 = 0;
/// `HSA_SIGNAL_CONDITION_LT`.
pub const SIGNAL_CONDITION_LT: u32 = 2;
/// `HSA_WAIT_STATE_BLOCKED`.
pub const WAIT_STATE_BLOCKED: u32 = 0;

/// `hsa_agent_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agent {
    /// Opaque.
    pub handle: u64,
}

/// `hsa_signal_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Signal {
    /// Opaque.
    pub handle: u64,
}

/// `hsa_amd_memory_pool_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemoryPool {
    /// Opaque.
    pub handle: u64,
}

/// `hsa_executable_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Executable {
    /// Opaque.
    pub handle: u64,
}

/// `hsa_code_object_reader_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CodeObjectReader {
    /// Opaque.
    pub handle: u64,
}

/// `hsa_executable_symbol_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecutableSymbol {
    /// Opaque.
    pub handle: u64,
}

/// `hsa_amd_hdp_flush_t`: the remap page's two registers as this process maps them (both
/// null on a 64K-page kernel, where KFD refuses the mapping).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HdpFlush {
    /// `HDP_MEM_FLUSH_CNTL`.
    pub hdp_mem_flush_cntl: *mut u32,
    /// `HDP_REG_FLUSH_CNTL`.
    pub hdp_reg_flush_cntl: *mut u32,
}

/// `hsa_queue_t`.
#[repr(C)]
#[derive(Debug)]
pub struct Queue {
    /// `type`.
    pub queue_type: u32,
    /// `features`.
    pub features: u32,
    /// `base_address`: the ring of 64-byte packets.
    pub base_address: *mut c_void,
    /// `doorbell_signal`.
    pub doorbell_signal: Signal,
    /// `size`, in packets.
    pub size: u32,
    /// `reserved1`.
    pub reserved1: u32,
    /// `id`.
    pub id: u64,
}

/// `hsa_kernel_dispatch_packet_t` (64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelDispatchPacket {
    /// `header`: written last, with a release store.
    pub header: u16,
    /// `setup`: the number of dimensions.
    pub setup: u16,
    /// `workgroup_size_x`.
    pub workgroup_size_x: u16,
    /// `workgroup_size_y`.
    pub workgroup_size_y: u16,
    /// `workgroup_size_z`.
    pub workgroup_size_z: u16,
    /// `reserved0`.
    pub reserved0: u16,
    /// `grid_size_x`.
    pub grid_size_x: u32,
    /// `grid_size_y`.
    pub grid_size_y: u32,
    /// `grid_size_z`.
    pub grid_size_z: u32,
    /// `private_segment_size`.
    pub private_segment_size: u32,
    /// `group_segment_size`.
    pub group_segment_size: u32,
    /// `kernel_object`.
    pub kernel_object: u64,
    /// `kernarg_address` (a pointer on 64-bit hosts).
    pub kernarg_address: u64,
    /// `reserved2`.
    pub reserved2: u64,
    /// `completion_signal`.
    pub completion_signal: u64,
}

/// `hsa_iterate_agents`'s callback.
pub type AgentCallback = unsafe extern "C" fn(Agent, *mut c_void) -> Status;
/// `hsa_amd_agent_iterate_memory_pools`'s callback.
pub type PoolCallback = unsafe extern "C" fn(MemoryPool, *mut c_void) -> Status;
/// `hsa_queue_create`'s error callback.
pub type QueueCallback = Option<unsafe extern "C" fn(Status, *mut Queue, *mut c_void)>;

/// Declares the functions once: the table's fields, their C names (for dlsym and the header
/// check's name list) and the loader.
macro_rules! hsa_functions {
    ($($name:ident: fn($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        /// The HSA functions, resolved from the loaded library.
        #[allow(non_snake_case, clippy::struct_field_names)]
        pub struct Functions {
            $(
                #[doc = concat!("`", stringify!($name), "`.")]
                pub $name: unsafe extern "C" fn($($arg),*) $(-> $ret)?,
            )*
        }

        /// Every function's C name, in declaration order.
        #[cfg_attr(not(test), allow(dead_code))]
        pub const FUNCTION_NAMES: &[&str] = &[$(stringify!($name)),*];

        impl Functions {
            /// Resolve every function in `lib`.
            fn resolve(lib: &Library) -> Result<Self, LoadError> {
                Ok(Self {
                    $(
                        // SAFETY: the symbol has the C type declared here, which
                        // gpu/hsa_check.c checks against Debian's header.
                        $name: unsafe {
                            std::mem::transmute::<*mut c_void, unsafe extern "C" fn($($arg),*) $(-> $ret)?>(
                                lib.symbol(concat!(stringify!($name), "\0"))?,
                            )
                        },
                    )*
                })
            }
        }
    };
}

hsa_functions! {
    hsa_init: fn() -> Status;
    hsa_shut_down: fn() -> Status;
    hsa_status_string: fn(Status, *mut *const c_char) -> Status;
    hsa_system_get_info: fn(u32, *mut c_void) -> Status;
    hsa_iterate_agents: fn(AgentCallback, *mut c_void) -> Status;
    hsa_agent_get_info: fn(Agent, u32, *mut c_void) -> Status;
    hsa_amd_agent_iterate_memory_pools: fn(Agent, PoolCallback, *mut c_void) -> Status;
    hsa_amd_memory_pool_get_info: fn(MemoryPool, u32, *mut c_void) -> Status;
    hsa_amd_memory_pool_allocate: fn(MemoryPool, usize, u32, *mut *mut c_void) -> Status;
    hsa_amd_memory_pool_free: fn(*mut c_void) -> Status;
    hsa_amd_agents_allow_access: fn(u32, *const Agent, *const u32, *const c_void) -> Status;
    hsa_code_object_reader_create_from_memory: fn(*const c_void, usize, *mut CodeObjectReader) -> Status;
    hsa_code_object_reader_destroy: fn(CodeObjectReader) -> Status;
    hsa_executable_create_alt: fn(u32, u32, *const c_char, *mut Executable) -> Status;
    hsa_executable_load_agent_code_object: fn(Executable, Agent, CodeObjectReader, *const c_char, *mut c_void) -> Status;
    hsa_executable_freeze: fn(Executable, *const c_char) -> Status;
    hsa_executable_destroy: fn(Executable) -> Status;
    hsa_executable_get_symbol_by_name: fn(Executable, *const c_char, *const Agent, *mut ExecutableSymbol) -> Status;
    hsa_executable_symbol_get_info: fn(ExecutableSymbol, u32, *mut c_void) -> Status;
    hsa_queue_create: fn(Agent, u32, u32, QueueCallback, *mut c_void, u32, u32, *mut *mut Queue) -> Status;
    hsa_queue_destroy: fn(*mut Queue) -> Status;
    hsa_queue_add_write_index_screlease: fn(*const Queue, u64) -> u64;
    hsa_queue_load_read_index_scacquire: fn(*const Queue) -> u64;
    hsa_signal_create: fn(i64, u32, *const Agent, *mut Signal) -> Status;
    hsa_signal_destroy: fn(Signal) -> Status;
    hsa_signal_store_relaxed: fn(Signal, i64);
    hsa_signal_store_screlease: fn(Signal, i64);
    hsa_signal_wait_scacquire: fn(Signal, u32, i64, u64, u32) -> i64;
}

/// The library's file name, as Debian ships it (`libhsa-runtime64-1`).
pub const LIBRARY: &str = "libhsa-runtime64.so.1";

/// Why the runtime could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `dlopen` failed.
    #[error("cannot load {name}: {why}")]
    Open {
        /// The file name tried.
        name: String,
        /// `dlerror()`.
        why: String,
    },
    /// A function is missing: an HSA runtime too old or not AMD's.
    #[error("{name} has no `{symbol}`")]
    Symbol {
        /// The library.
        name: String,
        /// The function.
        symbol: String,
    },
}

/// A `dlopen`ed library, closed on drop.
struct Library {
    name: String,
    handle: *mut c_void,
}

impl Library {
    fn open(name: &str) -> Result<Self, LoadError> {
        let c = std::ffi::CString::new(name).map_err(|_| LoadError::Open {
            name: name.into(),
            why: "a NUL in the name".into(),
        })?;
        // SAFETY: a NUL-terminated name; RTLD_NOW resolves everything now.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(LoadError::Open {
                name: name.into(),
                why: dl_error(),
            });
        }
        Ok(Self {
            name: name.into(),
            handle,
        })
    }

    /// `symbol` must end in NUL.
    fn symbol(&self, symbol: &str) -> Result<*mut c_void, LoadError> {
        // SAFETY: `symbol` is NUL-terminated (the macro appends it); the handle is open.
        let p = unsafe { libc::dlsym(self.handle, symbol.as_ptr().cast()) };
        if p.is_null() {
            return Err(LoadError::Symbol {
                name: self.name.clone(),
                symbol: symbol.trim_end_matches('\0').into(),
            });
        }
        Ok(p)
    }
}

fn dl_error() -> String {
    // SAFETY: dlerror returns a thread-local C string or null.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        return "unknown dlopen error".into();
    }
    // SAFETY: non-null, NUL-terminated.
    unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
}

/// The loaded runtime: its functions, valid while this lives. The library is never closed
/// (HSA's threads may outlive `hsa_shut_down`).
pub struct Hsa {
    /// The functions.
    pub f: Functions,
    /// The file it was loaded from.
    pub library: String,
}

impl Hsa {
    /// Load `name` (normally [`LIBRARY`]) and resolve every function.
    pub fn load(name: &str) -> Result<Self, LoadError> {
        let lib = Library::open(name)?;
        let f = Functions::resolve(&lib)?;
        std::mem::forget(lib);
        Ok(Self {
            f,
            library: name.into(),
        })
    }

    /// The runtime's text for `status`, with its number.
    pub fn describe(&self, status: Status) -> String {
        let mut text: *const c_char = std::ptr::null();
        // SAFETY: hsa_status_string writes a static string pointer; it works before hsa_init.
        let ok = unsafe { (self.f.hsa_status_string)(status, &mut text) } == STATUS_SUCCESS;
        if ok && !text.is_null() {
            // SAFETY: a static NUL-terminated string from the runtime.
            let s = unsafe { CStr::from_ptr(text) }.to_string_lossy();
            format!("{s} (0x{status:x})")
        } else {
            format!("HSA status 0x{status:x}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_and_queue_layouts_match_the_header_sizes() {
        assert_eq!(std::mem::size_of::<KernelDispatchPacket>(), 64);
        assert_eq!(std::mem::size_of::<HdpFlush>(), 16);
        assert_eq!(std::mem::size_of::<Queue>(), 40);
    }

    #[test]
    fn every_declared_function_is_checked_by_the_c_file() {
        let c = include_str!("../../gpu/hsa_check.c");
        for name in FUNCTION_NAMES {
            assert!(
                c.contains(&format!("= {name};")),
                "gpu/hsa_check.c does not check {name}"
            );
        }
    }

    #[test]
    fn a_missing_library_is_a_load_error_naming_it() {
        match Hsa::load("libhdpflush-no-such-hsa.so.1") {
            Err(LoadError::Open { name, .. }) => assert_eq!(name, "libhdpflush-no-such-hsa.so.1"),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("loaded a library that does not exist"),
        }
    }
}
