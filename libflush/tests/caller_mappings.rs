//! Mappings a runtime already has, handed to a per-GPU flusher: the remap page is preferred,
//! the VRAM page is the dummy page only when opted into, and bad pointers are refused. Plain
//! memory stands in for the mappings so the stores can be checked where they land.

use libflush::{BackingKind, Completion, Error, Flush, FlusherOptions, GpuSelector, StrategyKind};

/// A GPU address no module serves and no sysfs has: only the caller's mappings can flush it.
fn gpu() -> GpuSelector {
    "0000:7f:1f.7".parse().unwrap()
}

/// A 4K page of our own, 4K-aligned.
#[repr(align(4096))]
struct Page([u32; 1024]);

fn page() -> Box<Page> {
    Box::new(Page([0; 1024]))
}

/// Word `word` of a page, read through the same raw pointer the flusher was given.
fn read(p: *mut u32, word: usize) -> u32 {
    assert!(word < 1024);
    // SAFETY: in bounds of a live page; volatile, as the flusher's stores were.
    unsafe { p.add(word).read_volatile() }
}

#[test]
fn the_callers_remap_page_wins_and_gets_rocclrs_store() {
    std::env::remove_var("HDPFLUSH_STRATEGY");
    let (mut remap_page, mut vram_page) = (page(), page());
    let (remap, vram) = (remap_page.0.as_mut_ptr(), vram_page.0.as_mut_ptr());
    // SAFETY: both pages outlive the flusher (dropped at the end of the test).
    let options = unsafe {
        FlusherOptions::new()
            .remap_page(remap)
            .and_then(|o| o.dummy_page(vram.cast(), 4096))
    }
    .unwrap()
    .allow_dummy_page(true);
    let f = libflush::open_gpu(gpu(), options).unwrap();
    assert_eq!(f.kind(), StrategyKind::MmioRemap);
    assert_eq!(f.completion(), Completion::Completed);
    assert_eq!(
        f.backing().kind,
        BackingKind::Hardware,
        "the caller says it is the GPU's"
    );
    assert!(
        f.selection().reason.contains("remap page"),
        "{:?}",
        f.selection()
    );
    f.flush().unwrap();
    assert_eq!(read(remap, 0), 1, "1 stored to HDP_MEM_FLUSH_CNTL");
    assert_eq!(read(vram, 0), 0, "the VRAM page untouched");
    drop(f);
    drop((remap_page, vram_page));
}

#[test]
fn a_vram_page_is_the_dummy_page_only_when_opted_into() {
    std::env::remove_var("HDPFLUSH_STRATEGY");
    let mut vram_page = page();
    let vram = vram_page.0.as_mut_ptr();
    // SAFETY: the page outlives every flusher below.
    let offer = || unsafe { FlusherOptions::new().dummy_page(vram.cast(), 4096) };
    let err = libflush::open_gpu(gpu(), offer().unwrap()).unwrap_err();
    assert!(matches!(err, Error::NoFlushPath { .. }), "{err}");
    assert!(err.to_string().contains("not opted into"), "{err}");

    let f = libflush::open_gpu(gpu(), offer().unwrap().allow_dummy_page(true)).unwrap();
    assert_eq!(f.kind(), StrategyKind::DummyPage);
    f.flush().unwrap();
    f.flush().unwrap();
    assert_eq!(
        (read(vram, 0), read(vram, 512)),
        (1, 1),
        "two stores half a page apart"
    );
    drop(f);
}

#[test]
fn bad_caller_pointers_are_refused_before_anything_is_touched() {
    let mut word = [0u32; 2];
    // SAFETY (all below): each pointer is refused before it is dereferenced.
    let null = unsafe { FlusherOptions::new().remap_page(std::ptr::null_mut()) }.unwrap_err();
    assert_eq!(null.errno(), nix::errno::Errno::EINVAL, "{null}");
    let misaligned = word.as_mut_ptr().cast::<u8>().wrapping_add(1).cast::<u32>();
    let err = unsafe { FlusherOptions::new().remap_page(misaligned) }.unwrap_err();
    assert!(err.to_string().contains("not 4-byte aligned"), "{err}");
    let err = unsafe { FlusherOptions::new().dummy_page(word.as_mut_ptr().cast(), 8) }.unwrap_err();
    assert!(
        matches!(err, Error::RegionTooSmall { need: 4096, .. }),
        "{err}"
    );
    assert_eq!(word, [0, 0]);
}
