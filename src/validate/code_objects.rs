//! The check kernel's code objects, built by build.rs from gpu/check_pattern.cl (empty, with
//! the reason, when clang-19 and ld.lld-19 were missing at build time).

include!(concat!(env!("OUT_DIR"), "/code_objects.rs"));
