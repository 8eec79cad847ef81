//! kmod/params.rs (the module's `amdgpu_devices=` parser), on the host: what it accepts, and
//! that everything it refuses names the entry and the reason.

#[path = "../../kmod/params.rs"]
mod params;

use params::{parse_amdgpu_devices, AmdgpuDevice, Invalidate, PciLocation};

fn loc(domain: u32, bus: u8, device: u8, function: u8) -> PciLocation {
    PciLocation {
        domain,
        bus,
        devfn: device << 3 | function,
    }
}

#[test]
fn one_gpu_per_entry_with_optional_post_and_invalidate() {
    let v = parse_amdgpu_devices(
        "0000:03:00.0@0x7f000, 0001:c1:00.1@0x1a000/post=0x13b0c/invalidate=0x3ad4,83:00.0@503772/invalidate=none",
    )
    .unwrap();
    let all: Vec<AmdgpuDevice> = v.iter().copied().collect();
    assert_eq!(
        all,
        [
            AmdgpuDevice {
                pci: loc(0, 3, 0, 0),
                flush: 0x7f000,
                post: 0,
                invalidate: Invalidate::Unset,
            },
            AmdgpuDevice {
                pci: loc(1, 0xc1, 0, 1),
                flush: 0x1a000,
                post: 0x13b0c,
                invalidate: Invalidate::Register(0x3ad4),
            },
            AmdgpuDevice {
                pci: loc(0, 0x83, 0, 0),
                flush: 503772,
                post: 0,
                invalidate: Invalidate::NotNeeded,
            },
        ]
    );
    assert_eq!(v.len(), 3);
    assert!(parse_amdgpu_devices("").unwrap().is_empty());
    assert!(parse_amdgpu_devices("  ").unwrap().is_empty());
}

#[test]
fn every_refusal_names_the_entry_and_the_reason() {
    for (value, entry, why) in [
        ("0000:03:00.0", "0000:03:00.0", "no `@FLUSH`"),
        (
            "0000:03:00@0x7f000",
            "0000:03:00@0x7f000",
            "not a PCI address",
        ),
        (
            "0000:03:20.0@0x7f000",
            "0000:03:20.0@0x7f000",
            "not a PCI address",
        ),
        ("0000:03:00.0@", "0000:03:00.0@", "not a number"),
        ("0000:03:00.0@0x", "0000:03:00.0@0x", "not a number"),
        (
            "0000:03:00.0@0x7f002",
            "0000:03:00.0@0x7f002",
            "not 4-byte aligned",
        ),
        (
            "0000:03:00.0@0x7f000/post=0x2",
            "0000:03:00.0@0x7f000/post=0x2",
            "not 4-byte aligned",
        ),
        (
            "0000:03:00.0@0x7f000/post=0x7f000",
            "0000:03:00.0@0x7f000/post=0x7f000",
            "three different",
        ),
        (
            "0000:03:00.0@4/invalidate=0",
            "0000:03:00.0@4/invalidate=0",
            "three different",
        ),
        (
            "0000:03:00.0@4/invalidate=nothing",
            "0000:03:00.0@4/invalidate=nothing",
            "neither a number nor `none`",
        ),
        (
            "0000:03:00.0@4/invalidate=none/invalidate=8",
            "0000:03:00.0@4/invalidate=none/invalidate=8",
            "twice",
        ),
        (
            "0000:03:00.0@0x7f000/flush=4",
            "0000:03:00.0@0x7f000/flush=4",
            "unknown option",
        ),
        (
            "0000:03:00.0@0x7f000/post",
            "0000:03:00.0@0x7f000/post",
            "KEY=OFFSET",
        ),
        (
            "0000:03:00.0@8/post=4/post=12",
            "0000:03:00.0@8/post=4/post=12",
            "twice",
        ),
        (
            "03:00.0@8,0000:03:00.0@12",
            "0000:03:00.0@12",
            "named twice",
        ),
        ("03:00.0@8,", "", "no `@FLUSH`"),
    ] {
        let err = parse_amdgpu_devices(value).unwrap_err();
        assert_eq!(err.entry, entry, "{value}");
        assert!(err.why.contains(why), "{value}: {}", err.why);
        let msg = err.to_string();
        assert!(msg.contains("expected DOMAIN:BUS:DEV.FN@FLUSH"), "{msg}");
    }
    let seventeen: Vec<String> = (0..17).map(|i| format!("00:{i:02x}.0@8")).collect();
    let value = seventeen.join(",");
    let err = parse_amdgpu_devices(&value).unwrap_err();
    assert!(err.why.contains("more than 16"), "{err}");
}

#[test]
fn offsets_are_checked_against_the_register_bar() {
    let v = parse_amdgpu_devices("03:00.0@0x7f000/post=0x0/invalidate=0x7fffc").unwrap();
    let gpu = v.iter().next().unwrap();
    assert_eq!(gpu.check_bar(0x80000), Ok(()));
    let err = gpu.check_bar(0x7f000).unwrap_err();
    assert_eq!(err.which, "flush");
    assert!(
        err.to_string()
            .contains("0x7f000 lies outside the 0x7f000-byte"),
        "{err}"
    );
    let near_end = parse_amdgpu_devices("03:00.0@0xfffffffffffffffc").unwrap();
    let err = near_end
        .iter()
        .next()
        .unwrap()
        .check_bar(u64::MAX)
        .unwrap_err();
    assert_eq!(err.which, "flush", "the end of the register wraps: outside");
}
