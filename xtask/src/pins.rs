//! Every pinned tool and package version, in one place.

/// Debian package with the kernel source tarball.
pub const KERNEL_SOURCE_PKG: &str = "linux-source-6.12";
/// Where that package puts the tarball.
pub const KERNEL_TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";
/// The directory the tarball unpacks to.
pub const KERNEL_TARBALL_DIR: &str = "linux-source-6.12";

/// The Debian package with the tree the upstream patch is for, the suites that carry it
/// (fetched with a private apt configuration, never installed), the directory its tarball
/// unpacks to, and the kernel series it must be.
pub const UPSTREAM_SOURCE_PKG: &str = "linux-source-7.3";
pub const UPSTREAM_SUITES: &[&str] = &["trixie-backports"];
pub const UPSTREAM_TARBALL_DIR: &str = "linux-source-7.3";
pub const UPSTREAM_SERIES: &str = "7.3.";

/// Debian 13's backports kernel the module is built for and booted on as shipped: the ABI in
/// its package names (`linux-binary-<abi>-<flavour>`, `linux-headers-...`), from
/// `UPSTREAM_SUITES`, and its `uname -r` suffix.
pub const DEB_KERNEL_ABI: &str = "7.3.4+deb13";
pub const DEB_KERNEL_FLAVOUR: &str = "amd64";
/// The suite of the Debian 13 root that builds its Rust metadata (the kernel's exact rustc and
/// bindgen come from there: checked against the kernel's config), and what the root holds.
pub const DEB13_SUITE: &str = "trixie";
pub const DEB13_ROOT_PACKAGES: &[&str] = &[
    "rustc",
    "rust-src",
    "bindgen",
    "clang",
    "llvm",
    "lld",
    "libclang-dev",
    "make",
    "gcc",
    "flex",
    "bison",
    "bc",
    "libelf-dev",
    "libssl-dev",
    "cpio",
    "python3",
    "kmod",
    "xz-utils",
    "dwarves",
];

/// Where `cargo xtask upstream` takes sparse's source from: 7.3 needs a sparse newer than
/// Debian 12's 0.6.4 (`__typeof_unqual__`); sid had 0.6.5~rc1 on 2026-12-02.
pub const SPARSE_SOURCE_SUITES: &[&str] = &["sid"];

/// Debian's Rust for the kernel (it must match `rust-web-src`, which the kernel compiles
/// `core` from). Pinned by upstream version: any Debian revision of it is accepted.
pub const RUSTC_WEB_UPSTREAM: &str = "1.85.0";
/// The LLVM release rustc-web 1.85 is built on; clang/lld of the same release build the kernel.
pub const LLVM: &str = "19";
/// bindgen-cli from crates.io (Debian's is too old for the kernel).
pub const BINDGEN_CLI: &str = "0.69.5";

/// Host packages for building and booting test kernels (rustc-web is added with its pin).
pub const HOST_PACKAGES: &[&str] = &[
    "linux-source-6.12",
    "clang-19",
    "lld-19",
    "llvm-19",
    "libclang-19-dev",
    "bc",
    "flex",
    "bison",
    "libelf-dev",
    "cpio",
    "xz-utils",
    "busybox-static",
    "qemu-system-x86",
    "qemu-system-arm",
    // 32-bit x86 C programs (tests/guest/c/compat32.c: the module's compat ioctl path). Not
    // the gcc-multilib meta package: Debian 12's conflicts with the arm64 cross compiler, and
    // each install would remove the other.
    "gcc-12-multilib",
];

/// The rustc-web packages installed at the pinned version.
pub const RUSTC_WEB_PACKAGES: &[&str] = &["rustc-web", "rust-web-src", "libstd-rust-web-dev"];

/// Extra packages to cross-build static arm64 guest binaries.
pub const ARM64_CROSS_PACKAGES: &[&str] = &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"];

/// Extra packages to cross-build libflush for powerpc64le and run its tests under qemu-user.
pub const PPC64LE_CROSS_PACKAGES: &[&str] = &[
    "gcc-powerpc64le-linux-gnu",
    "libc6-dev-ppc64el-cross",
    "qemu-user-static",
];
