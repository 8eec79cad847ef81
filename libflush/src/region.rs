//! Memory that BAR stores go to: the [`Bar`] trait, and [`MappedRegion`], a real mapping.
//!
//! Strategies that store into memory (MMIO remap, legacy, dummy page) are generic over
//! [`Bar`], so the same code runs on a device mapping, on anonymous memory standing in for
//! one, and on the simulator's BAR ([`crate::sim::SimBar`]), which is how the oracle tests them.

use std::fs::OpenOptions;
use std::num::NonZeroUsize;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;

use nix::errno::Errno;
use nix::sys::mman::{mmap, mmap_anonymous, munmap, MapFlags, ProtFlags};

use crate::barrier::Fences;
use crate::error::errno_of;
use crate::strategy::{Backing, BackingKind};
use crate::{Error, Result};

/// A window of device-visible memory, accessed with single volatile loads and stores, and the
/// CPU that issues them (its [`Fences`]).
///
/// Offsets are bytes from the start of the window. An offset past [`len`](Bar::len) is a bug
/// in the caller: implementations panic rather than touch memory outside the window.
pub trait Bar: Fences + Send + Sync {
    /// Window length in bytes.
    fn len(&self) -> usize;
    /// True if the window is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// What the window is backed by.
    fn backing(&self) -> Backing;
    /// One 32-bit store; `offset` must be 4-aligned.
    fn write_u32(&self, offset: usize, value: u32);
    /// One 8-bit store.
    fn write_u8(&self, offset: usize, value: u8);
    /// One 32-bit load; `offset` must be 4-aligned.
    fn read_u32(&self, offset: usize) -> u32;
    /// One 8-bit load.
    fn read_u8(&self, offset: usize) -> u8;
}

/// Fail unless `bar` holds at least `need` bytes.
pub(crate) fn require_len(bar: &dyn Bar, what: &str, need: usize) -> Result<()> {
    if bar.len() < need {
        return Err(Error::RegionTooSmall {
            what: what.to_owned(),
            len: bar.len(),
            need,
        });
    }
    Ok(())
}

/// Panic unless `size` bytes at `offset` lie inside a `len`-byte window and are aligned to
/// `size`. `offset + size` is computed without wrapping: an offset near `usize::MAX` is out of
/// bounds, never a small number.
pub(crate) fn check_access(offset: usize, size: usize, len: usize) {
    let inside = offset.checked_add(size).is_some_and(|end| end <= len);
    assert!(
        inside && offset % size == 0,
        "offset {offset:#x} (size {size}) outside a {len}-byte window or misaligned"
    );
}

/// The CPU page size (4096 when sysconf cannot tell, which it always can on Linux).
pub fn page_size() -> usize {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(n)) if n > 0 => n as usize,
        _ => 4096,
    }
}

/// Where a [`MappedRegion`] comes from, and who unmaps it.
#[derive(Clone, Debug)]
enum Origin {
    /// Ours, anonymous: standing in for a device mapping.
    Anonymous,
    /// Ours, a file: a device resource or something standing in for one.
    File(String),
    /// The caller's (a runtime's mapping of the remap page or of VRAM): never unmapped here.
    Borrowed(Backing),
}

/// An `mmap`ed window: a device resource (sysfs `resourceN`, `/dev/kfd`), a mapping the caller
/// already has, or anonymous memory standing in for one. Our own mappings are unmapped on drop.
#[derive(Debug)]
pub struct MappedRegion {
    /// Start of the whole mapping (page-aligned for our own).
    map: NonNull<u8>,
    /// Length of the whole mapping.
    map_len: usize,
    /// The window: `len` bytes at `map + start`.
    start: usize,
    len: usize,
    origin: Origin,
}

// SAFETY: the mapping is owned by this value (or, when borrowed, guaranteed by the caller of
// `from_raw` to outlive it) and only accessed through volatile single-word loads and stores,
// which are valid from any thread.
unsafe impl Send for MappedRegion {}
// SAFETY: as above; shared access is volatile loads/stores of device memory, which the device
// (or, for anonymous memory, the cache hierarchy) serialises.
unsafe impl Sync for MappedRegion {}

impl MappedRegion {
    /// `len` bytes of zeroed anonymous memory, standing in for a device mapping.
    pub fn anonymous(len: usize) -> Result<Self> {
        let length = NonZeroUsize::new(len).ok_or(Error::RegionTooSmall {
            what: "anonymous mapping".into(),
            len,
            need: 1,
        })?;
        // SAFETY: a fresh private anonymous mapping aliases nothing.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }
        .map_err(|e| Error::os("anonymous mapping", "mmap", e))?;
        Ok(Self {
            map: ptr.cast(),
            map_len: len,
            start: 0,
            len,
            origin: Origin::Anonymous,
        })
    }

    /// Map `len` bytes of `path` at `offset`, shared, read-write: a PCI BAR through sysfs
    /// (`/sys/bus/pci/devices/*/resourceN`) or a KFD allocation through `/dev/kfd`.
    ///
    /// `offset` need not be page-aligned: the pages that hold the window are mapped (on a
    /// 64K-page kernel, offset 0x1000 lies in the page at 0), and the window starts inside.
    pub fn map_file(path: &Path, offset: u64, len: usize) -> Result<Self> {
        let what = path.display().to_string();
        let page = page_size() as u64;
        let page_start = offset & !(page - 1);
        let start = (offset - page_start) as usize;
        let map_len = start
            .checked_add(len)
            .and_then(|end| end.checked_next_multiple_of(page as usize))
            .ok_or_else(|| Error::os(&what, "mmap", Errno::EOVERFLOW))?;
        let length = NonZeroUsize::new(map_len).ok_or(Error::RegionTooSmall {
            what: what.clone(),
            len,
            need: 1,
        })?;
        let file_offset = page_start
            .try_into()
            .map_err(|_| Error::os(&what, "mmap", Errno::EOVERFLOW))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_SYNC.bits())
            .open(path)
            .map_err(|e| Error::os(&what, "open", errno_of(&e)))?;
        // SAFETY: a shared mapping of a device resource; we only access it through volatile
        // loads and stores inside the window, and the kernel keeps the mapping alive after the
        // file is closed.
        let ptr = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &file,
                file_offset,
            )
        }
        .map_err(|e| Error::os(&what, "mmap", e))?;
        Ok(Self {
            map: ptr.cast(),
            map_len,
            start,
            len,
            origin: Origin::File(what),
        })
    }

    /// A window onto `len` bytes the caller has already mapped at `ptr`: the MMIO remap page a
    /// runtime got from ROCr, or a host-visible VRAM page. Never unmapped here.
    ///
    /// # Safety
    ///
    /// `ptr..ptr + len` must be mapped, readable and writable with single volatile 8- and
    /// 32-bit accesses, for as long as the returned region (and any flusher built on it) lives,
    /// and must be the device memory `backing` says it is.
    pub unsafe fn from_raw(ptr: NonNull<u8>, len: usize, backing: Backing) -> Self {
        Self {
            map: ptr,
            map_len: len,
            start: 0,
            len,
            origin: Origin::Borrowed(backing),
        }
    }

    /// [`from_raw`](Self::from_raw) after checking what a C caller can get wrong: a null or
    /// misaligned pointer, a window smaller than `need`.
    ///
    /// # Safety
    ///
    /// As [`from_raw`](Self::from_raw), for a non-null `ptr`.
    pub(crate) unsafe fn from_caller(
        ptr: *mut u8,
        len: usize,
        need: usize,
        backing: Backing,
    ) -> Result<Self> {
        let what = backing.detail.clone();
        let ptr = NonNull::new(ptr)
            .filter(|p| p.as_ptr() as usize % 4 == 0)
            .ok_or_else(|| Error::InvalidArgument {
                what: format!("{what}: pointer {ptr:p} is null or not 4-byte aligned"),
            })?;
        if len < need {
            return Err(Error::RegionTooSmall { what, len, need });
        }
        // SAFETY: the caller's contract, and `ptr` is non-null.
        Ok(unsafe { Self::from_raw(ptr, len, backing) })
    }

    fn at<T>(&self, offset: usize) -> *mut T {
        check_access(offset, std::mem::size_of::<T>(), self.len);
        // SAFETY: start + len <= map_len and check_access showed offset + size <= len, so the
        // result stays inside the mapping.
        unsafe { self.map.as_ptr().add(self.start + offset).cast() }
    }
}

/// What a mapped file is: hardware, an emulated device, or something standing in for one.
fn file_backing(path: &str) -> Backing {
    if path == "/dev/kfd" {
        return Backing::new(
            BackingKind::Hardware,
            "KFD mapping of GPU memory (/dev/kfd)",
        );
    }
    if let Some((vendor, device)) = pci_resource_ids(Path::new(path)) {
        return match vendor {
            crate::gpu::AMD_VENDOR => Backing::new(
                BackingKind::Hardware,
                format!("AMD GPU BAR {path} ({vendor:04x}:{device:04x})"),
            ),
            // QEMU's own PCI vendor ids (edu, pci-testdev, ivshmem) and virtio.
            0x1234 | 0x1b36 | 0x1af4 => Backing::new(
                BackingKind::EmulatedDevice,
                format!("emulated PCI device BAR {path} ({vendor:04x}:{device:04x}), not a GPU"),
            ),
            _ => Backing::new(
                BackingKind::Hardware,
                format!("PCI device BAR {path} ({vendor:04x}:{device:04x}), not an AMD GPU"),
            ),
        };
    }
    Backing::new(
        BackingKind::StandIn,
        format!("file {path} standing in for a device mapping"),
    )
}

/// The (vendor, device) ids of the PCI function whose sysfs `resourceN` file `path` is.
fn pci_resource_ids(path: &Path) -> Option<(u32, u32)> {
    let name = path.file_name()?.to_str()?;
    let bar = name.strip_prefix("resource")?;
    let bar = bar.strip_suffix("_wc").unwrap_or(bar);
    if bar.is_empty() || !bar.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let dir = path.parent()?;
    let id = |file| crate::gpu::read_hex(&dir.join(file));
    Some((id("vendor")?, id("device")?))
}

impl Fences for MappedRegion {}

impl Bar for MappedRegion {
    fn len(&self) -> usize {
        self.len
    }

    fn backing(&self) -> Backing {
        match &self.origin {
            Origin::Anonymous => Backing::new(
                BackingKind::StandIn,
                "anonymous memory standing in for a device mapping",
            ),
            Origin::File(path) => file_backing(path),
            Origin::Borrowed(backing) => backing.clone(),
        }
    }

    fn write_u32(&self, offset: usize, value: u32) {
        // SAFETY: `at` checked bounds and alignment.
        unsafe { self.at::<u32>(offset).write_volatile(value) }
    }

    fn write_u8(&self, offset: usize, value: u8) {
        // SAFETY: `at` checked bounds.
        unsafe { self.at::<u8>(offset).write_volatile(value) }
    }

    fn read_u32(&self, offset: usize) -> u32 {
        // SAFETY: `at` checked bounds and alignment.
        unsafe { self.at::<u32>(offset).read_volatile() }
    }

    fn read_u8(&self, offset: usize) -> u8 {
        // SAFETY: `at` checked bounds.
        unsafe { self.at::<u8>(offset).read_volatile() }
    }
}

impl Drop for MappedRegion {
    fn drop(&mut self) {
        if matches!(self.origin, Origin::Borrowed(_)) {
            return;
        }
        // SAFETY: we own the mapping of exactly `map_len` bytes at `map` and nothing borrows
        // it now. An munmap failure here could only mean a bug elsewhere; there is nobody to
        // report to.
        let _ = unsafe { munmap(self.map.cast(), self.map_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_region_round_trips_and_is_labelled_a_stand_in() {
        let r = MappedRegion::anonymous(4096).unwrap();
        r.write_u32(8, 0xdead_beef);
        r.write_u8(4095, 0x5a);
        assert_eq!(r.read_u32(8), 0xdead_beef);
        assert_eq!(r.read_u8(4095), 0x5a);
        assert_eq!(r.backing().kind, BackingKind::StandIn);
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn out_of_bounds_access_panics_instead_of_touching_memory() {
        let r = MappedRegion::anonymous(4096).unwrap();
        r.write_u32(4096, 1);
    }

    #[test]
    fn an_offset_whose_end_wraps_around_is_refused() {
        // usize::MAX - 1 + 4 wraps to 2 in release builds: a naive check would pass it and
        // write before the mapping.
        let r = MappedRegion::anonymous(4096).unwrap();
        for offset in [usize::MAX - 3, usize::MAX - 1, usize::MAX] {
            let refused = std::panic::catch_unwind(|| r.write_u32(offset & !3, 1));
            assert!(refused.is_err(), "offset {offset:#x} was accepted");
        }
        let refused = std::panic::catch_unwind(|| r.read_u8(usize::MAX));
        assert!(refused.is_err());
        // The window is intact.
        assert_eq!(r.read_u32(0), 0);
    }

    #[test]
    fn a_file_mapping_is_shared_and_a_plain_file_is_labelled_a_stand_in() {
        let path = std::env::temp_dir().join(format!("libflush-map-{}", std::process::id()));
        std::fs::write(&path, vec![0u8; 3 * 65536]).unwrap();
        let r = MappedRegion::map_file(&path, 4096, 4096).unwrap();
        r.write_u32(0, 0x0102_0304);
        assert_eq!(r.backing().kind, BackingKind::StandIn);
        drop(r);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            bytes[4096..4100],
            0x0102_0304u32.to_ne_bytes(),
            "MAP_SHARED at the offset"
        );
        // An offset that is not page-aligned on this kernel maps the enclosing page.
        let r = MappedRegion::map_file(&path, 65536 + 0x1004, 8).unwrap();
        r.write_u32(4, 0x0a0b_0c0d);
        drop(r);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            bytes[65536 + 0x1008..65536 + 0x100c],
            0x0a0b_0c0du32.to_ne_bytes()
        );
    }

    #[test]
    fn dev_zero_is_not_hardware() {
        let zero = MappedRegion::map_file(Path::new("/dev/zero"), 0, 4096).unwrap();
        assert_eq!(zero.backing().kind, BackingKind::StandIn);
        assert!(zero.backing().detail.contains("/dev/zero"));
    }

    #[test]
    fn sysfs_resources_are_labelled_by_their_pci_ids() {
        let dir = std::env::temp_dir().join(format!("libflush-pci-{}", std::process::id()));
        for (name, vendor, device, kind) in [
            (
                "0000:00:04.0",
                "0x1234",
                "0x11e8",
                BackingKind::EmulatedDevice,
            ),
            ("0000:03:00.0", "0x1002", "0x740f", BackingKind::Hardware),
        ] {
            let dev = dir.join(name);
            std::fs::create_dir_all(&dev).unwrap();
            std::fs::write(dev.join("vendor"), format!("{vendor}\n")).unwrap();
            std::fs::write(dev.join("device"), format!("{device}\n")).unwrap();
            let resource = dev.join("resource0");
            assert_eq!(
                file_backing(resource.to_str().unwrap()).kind,
                kind,
                "{name}"
            );
            // Not a resource file: nothing to say it is a device.
            let other = dev.join("config");
            assert_eq!(
                file_backing(other.to_str().unwrap()).kind,
                BackingKind::StandIn
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_borrowed_mapping_is_never_unmapped_and_keeps_the_callers_label() {
        let owner = MappedRegion::anonymous(4096).unwrap();
        let ptr = NonNull::new(owner.at::<u8>(0)).unwrap();
        let label = Backing::new(BackingKind::Hardware, "caller's remap page");
        // SAFETY: `owner` keeps the page mapped for the whole test.
        let borrowed = unsafe { MappedRegion::from_raw(ptr, 8, label.clone()) };
        borrowed.write_u32(4, 7);
        assert_eq!(borrowed.backing(), label);
        drop(borrowed);
        assert_eq!(owner.read_u32(4), 7, "still mapped after the borrow ended");
    }

    #[test]
    fn mapping_a_missing_file_names_the_path() {
        let err = MappedRegion::map_file(Path::new("/nonexistent/resource0"), 0, 4096).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/nonexistent/resource0") && msg.contains("open"),
            "{msg}"
        );
    }
}
