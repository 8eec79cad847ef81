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

use crate::error::errno_of;
use crate::strategy::{Backing, BackingKind};
use crate::{Error, Result};

/// A window of device-visible memory, accessed with single volatile loads and stores.
///
/// Offsets are bytes from the start of the window. An offset past [`len`](Bar::len) is a bug
/// in the caller: implementations panic rather than touch memory outside the window.
pub trait Bar: Send + Sync {
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

/// Where a [`MappedRegion`] comes from.
#[derive(Clone, Debug)]
enum Origin {
    Anonymous,
    File(String),
}

/// An `mmap`ed window: a device resource (sysfs `resourceN`, `/dev/kfd`) or anonymous memory
/// standing in for one. Unmapped on drop.
#[derive(Debug)]
pub struct MappedRegion {
    ptr: NonNull<u8>,
    len: usize,
    origin: Origin,
}

// SAFETY: the mapping is owned by this value and only accessed through volatile single-word
// loads and stores, which are valid from any thread; it is unmapped only in Drop.
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
            ptr: ptr.cast(),
            len,
            origin: Origin::Anonymous,
        })
    }

    /// Map `len` bytes of `path` at `offset`, shared, read-write: a PCI BAR through sysfs
    /// (`/sys/bus/pci/devices/*/resourceN`) or a KFD allocation through `/dev/kfd`.
    pub fn map_file(path: &Path, offset: u64, len: usize) -> Result<Self> {
        let what = path.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_SYNC.bits())
            .open(path)
            .map_err(|e| Error::os(&what, "open", errno_of(&e)))?;
        let length = NonZeroUsize::new(len).ok_or(Error::RegionTooSmall {
            what: what.clone(),
            len,
            need: 1,
        })?;
        let offset = offset
            .try_into()
            .map_err(|_| Error::os(&what, "mmap", Errno::EOVERFLOW))?;
        // SAFETY: a shared mapping of a device resource; we only access it through volatile
        // loads and stores inside [0, len), and the kernel keeps the mapping alive after the
        // file is closed.
        let ptr = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &file,
                offset,
            )
        }
        .map_err(|e| Error::os(&what, "mmap", e))?;
        Ok(Self {
            ptr: ptr.cast(),
            len,
            origin: Origin::File(what),
        })
    }

    fn at<T>(&self, offset: usize) -> *mut T {
        let size = std::mem::size_of::<T>();
        assert!(
            offset % size == 0 && offset + size <= self.len,
            "offset {offset:#x} (size {size}) outside a {}-byte mapping",
            self.len
        );
        // SAFETY: offset + size <= len, so the result stays inside the mapping.
        unsafe { self.ptr.as_ptr().add(offset).cast() }
    }
}

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
            // Device nodes and sysfs PCI resources are hardware; any other file only stands in.
            Origin::File(path) if path.starts_with("/dev/") || path.starts_with("/sys/") => {
                Backing::new(BackingKind::Hardware, path.clone())
            }
            Origin::File(path) => Backing::new(
                BackingKind::StandIn,
                format!("file {path} standing in for a device mapping"),
            ),
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
        // SAFETY: we own the mapping of exactly `len` bytes at `ptr` and nothing borrows it now.
        // An munmap failure here could only mean a bug elsewhere; there is nobody to report to.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
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
    fn a_file_mapping_is_shared_and_labelled_by_what_it_maps() {
        let path = std::env::temp_dir().join(format!("libflush-map-{}", std::process::id()));
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        let r = MappedRegion::map_file(&path, 4096, 4096).unwrap();
        r.write_u32(0, 0x0102_0304);
        drop(r);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            bytes[4096..4100],
            0x0102_0304u32.to_ne_bytes(),
            "MAP_SHARED at the offset"
        );
        let null = MappedRegion::map_file(Path::new("/dev/zero"), 0, 4096).unwrap();
        assert_eq!(null.backing().kind, BackingKind::Hardware);
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
