//! docs/upstream/rocm/: the ROCm consumer patches (libhsakmt, ROCr, ROCclr, HIP) must apply, in
//! `series` order, to the ROCm tree they were made against (ROCM_DIR; its README says which),
//! and the C and C++ files they touch must compile with Debian's GCC and Clang.
//!
//! Nothing is built or linked. The three projects the series needs are copied out of ROCM_DIR
//! into the cache and patched there (ROCM_DIR is only read); every touched translation unit is
//! then compiled with `-fsyntax-only`, by `g++` and by `clang++-19`, with the definitions and
//! include paths the projects' CMake gives it. What the build would generate is written
//! minimally: `hip/hip_version.h` from HIP's VERSION file, ROCr's trap handler and blit shader
//! headers as declarations of the arrays ROCr uses (the real ones hold AMDGPU machine code), and
//! the installed header layout (`hsa/`, `amd_comgr/`) as links. A compile error fails the check,
//! and so does a warning on a line the series adds; other warnings are counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use crate::pins;
use crate::run::{command, fail, output, shown, step, workspace_root, StepResult};
use crate::setup::{self, cache_dir};
use crate::upstream::{series_in, touched, Patch};

const STEP: &str = "upstream rocm";

/// The projects of ROCM_DIR the series patches or includes from.
const PROJECTS: &[&str] = &["projects/rocr-runtime", "projects/clr", "projects/hip"];

/// Headers from Debian packages that the touched files include: (header, package).
const HEADERS: &[(&str, &str)] = &[
    ("/usr/include/libdrm/drm.h", "libdrm-dev"),
    ("/usr/include/libdrm/amdgpu.h", "libdrm-dev"),
    ("/usr/include/xf86drm.h", "libdrm-dev"),
    ("/usr/include/numa.h", "libnuma-dev"),
    ("/usr/include/amd_comgr.h", "libamd-comgr-dev"),
];

/// Where ROCr's public headers are, in the tree and (as `hsa/`) once installed.
const HSA_INC: &str = "projects/rocr-runtime/runtime/hsa-runtime/inc";

fn rocm_patch_dir() -> PathBuf {
    workspace_root().join("docs/upstream/rocm")
}

/// The translation units of one project, which share definitions and include paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Libhsakmt,
    Rocr,
    Rocclr,
    Hipamd,
}

impl Unit {
    fn of(file: &str) -> Option<Unit> {
        let (unit, ext) = if file.starts_with("projects/rocr-runtime/libhsakmt/src/") {
            (Unit::Libhsakmt, ".c")
        } else if file.starts_with("projects/rocr-runtime/runtime/hsa-runtime/") {
            (Unit::Rocr, ".cpp")
        } else if file.starts_with("projects/clr/rocclr/") {
            (Unit::Rocclr, ".cpp")
        } else if file.starts_with("projects/clr/hipamd/src/") {
            (Unit::Hipamd, ".cpp")
        } else {
            return None;
        };
        file.ends_with(ext).then_some(unit)
    }

    fn is_c(self) -> bool {
        self == Unit::Libhsakmt
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compiler {
    Gcc,
    Clang,
}

impl Compiler {
    const ALL: [Compiler; 2] = [Compiler::Gcc, Compiler::Clang];

    fn program(self, c: bool) -> String {
        match (self, c) {
            (Compiler::Gcc, true) => "gcc".into(),
            (Compiler::Gcc, false) => "g++".into(),
            (Compiler::Clang, true) => format!("clang-{}", pins::LLVM),
            (Compiler::Clang, false) => format!("clang++-{}", pins::LLVM),
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Compiler::Gcc => "gcc",
            Compiler::Clang => "clang",
        }
    }
}

/// `-I` for each path, which is relative to `base`.
fn includes(base: &Path, dirs: &[&str]) -> Vec<String> {
    dirs.iter()
        .map(|d| format!("-I{}", base.join(d).display()))
        .collect()
}

/// `-D` for each definition.
fn defines(defs: &[&str]) -> Vec<String> {
    defs.iter().map(|d| format!("-D{d}")).collect()
}

const X86_64: bool = cfg!(target_arch = "x86_64");

/// libhsakmt's CMakeLists.txt: HSAKMT_C_FLAGS, its include directories and libdrm's.
fn libhsakmt_flags(tree: &Path, compiler: Compiler) -> Vec<String> {
    let mut f: Vec<String> = [
        "-std=gnu99",
        "-fPIC",
        "-fvisibility=hidden",
        "-W",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter",
        "-Wformat-security",
        "-Wswitch-default",
        "-Wundef",
        "-Wshadow",
        "-Wpointer-arith",
        "-Wbad-function-cast",
        "-Wcast-qual",
        "-Wstrict-prototypes",
        "-Wmissing-prototypes",
        "-Wmissing-declarations",
        "-Wredundant-decls",
        "-Wunreachable-code",
        "-DHAVE_MEMFD_CREATE=1",
        "-I/usr/include/libdrm",
    ]
    .map(String::from)
    .to_vec();
    if compiler == Compiler::Gcc {
        f.push("-Wlogical-op".into());
    }
    let base = tree.join("projects/rocr-runtime/libhsakmt");
    f.extend(includes(&base, &["include", "src"]));
    f
}

/// hsa-runtime's CMakeLists.txt and hsa_common.cmake: HSA_CXX_FLAGS, the definitions of a
/// Linux build with PC sampling and (on x86) image support, and the include directories.
fn rocr_flags(tree: &Path, gen: &Path) -> Vec<String> {
    let mut f: Vec<String> = [
        "-std=c++17",
        "-Wall",
        "-fPIC",
        "-fno-strict-aliasing",
        "-fexceptions",
        "-fno-rtti",
        "-fvisibility=hidden",
        "-Wno-sign-compare",
        "-Wno-write-strings",
        "-Wno-conversion-null",
        "-fno-math-errno",
        "-fno-threadsafe-statics",
        "-fmerge-all-constants",
        "-fms-extensions",
        "-Wno-comment",
        "-Wno-pointer-arith",
        "-Wno-deprecated-declarations",
        "-I/usr/include/libdrm",
    ]
    .map(String::from)
    .to_vec();
    if X86_64 {
        f.extend(["-m64", "-msse", "-msse2", "-mmwaitx"].map(String::from));
    }
    f.extend(defines(&[
        "__STDC_LIMIT_MACROS",
        "__STDC_CONSTANT_MACROS",
        "__STDC_FORMAT_MACROS",
        "LITTLEENDIAN_CPU=1",
        "__linux__",
        "HSA_EXPORT=1",
        "HSA_EXPORT_FINALIZER=1",
        "HSA_EXPORT_IMAGES=1",
        "HSA_DEPRECATED=",
        "ROCR_BUILD_ID=\"syntax-check\"",
        "HAVE_MEMFD_CREATE",
        "HAVE_PTHREAD_ATTR_SETAFFINITY_NP",
        "HAVE_PTHREAD_RWLOCKATTR_SETKIND_NP",
        "HSA_PC_SAMPLING_SUPPORT",
    ]));
    if X86_64 {
        f.extend(defines(&[
            "HSA_IMAGE_SUPPORT",
            "UNIX_OS",
            "LINUX",
            "AMD_INTERNAL_BUILD",
            "BRAHMA_BUILD=1",
        ]));
    }
    let base = tree.join("projects/rocr-runtime/runtime/hsa-runtime");
    f.extend(includes(
        &base,
        &[
            "inc",
            ".",
            "libamdhsacode",
            "image",
            "image/addrlib",
            "image/addrlib/inc",
            "image/addrlib/src",
            "image/addrlib/src/core",
        ],
    ));
    f.push(format!("-I{}", gen.display()));
    f.extend(includes(tree, &["projects/rocr-runtime/libhsakmt/include"]));
    f
}

/// ROCclr.cmake, ROCclrHSA.cmake, ROCclrLC.cmake and FindAMD_OPENCL.cmake: a shared build with
/// the HSA device and the comgr library; ROCr's headers come from `gen/hsa`.
fn rocclr_flags(tree: &Path, gen: &Path) -> Vec<String> {
    let mut f: Vec<String> = ["-std=c++17", "-fPIC", "-pthread"]
        .map(String::from)
        .to_vec();
    f.extend(defines(&[
        "ATI_OS_LINUX",
        "LITTLEENDIAN_CPU",
        "HAVE_CL2_HPP",
        "OPENCL_MAJOR=2",
        "OPENCL_MINOR=1",
        "OPENCL_C_MAJOR=2",
        "OPENCL_C_MINOR=0",
        "CL_TARGET_OPENCL_VERSION=220",
        "CL_USE_DEPRECATED_OPENCL_1_0_APIS",
        "CL_USE_DEPRECATED_OPENCL_1_1_APIS",
        "CL_USE_DEPRECATED_OPENCL_1_2_APIS",
        "CL_USE_DEPRECATED_OPENCL_2_0_APIS",
        "WITH_HSA_DEVICE",
        "WITH_LIGHTNING_COMPILER",
        "USE_COMGR_LIBRARY",
        "COMGR_DYN_DLL",
        "ROCCLR_SUPPORT_NUMA_POLICY",
    ]));
    let rocclr = tree.join("projects/clr/rocclr");
    f.extend(includes(
        &rocclr,
        &[
            ".",
            "compiler/lib",
            "compiler/lib/include",
            "compiler/lib/backends/common",
            "device",
            "elf",
            "include",
        ],
    ));
    // AMD_OPENCL_INCLUDE_DIRS: the directory of cl.h and four of its parents, and amdocl.
    let cl = tree.join("projects/clr/opencl/khronos/headers/opencl2.2/CL");
    f.extend(includes(
        &cl,
        &[
            ".",
            "..",
            "../..",
            "../../..",
            "../../../..",
            "../../../../amdocl",
        ],
    ));
    f.push(format!("-I{}", gen.display()));
    f
}

/// hipamd/src/CMakeLists.txt: ROCclr's definitions and includes (static build), HIP's own.
fn hipamd_flags(tree: &Path, gen: &Path) -> Vec<String> {
    let mut f = defines(&["__HIP_PLATFORM_AMD__", "USE_PROF_API=1", "__HIP_ENABLE_RTC"]);
    f.extend(includes(
        tree,
        &["projects/hip/include", "projects/clr/hipamd/include"],
    ));
    f.extend(rocclr_flags(tree, gen));
    f
}

fn flags(unit: Unit, compiler: Compiler, tree: &Path, gen: &Path) -> Vec<String> {
    match unit {
        Unit::Libhsakmt => libhsakmt_flags(tree, compiler),
        Unit::Rocr => rocr_flags(tree, gen),
        Unit::Rocclr => rocclr_flags(tree, gen),
        Unit::Hipamd => hipamd_flags(tree, gen),
    }
}

/// Identifiers `kCode...` in `text`.
fn kcode_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("kCode") {
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let before = rest[..at].chars().next_back();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.insert(tail[..len].to_owned());
        }
        rest = &tail[len..];
    }
    names
}

/// `major.minor.patch` from HIP's VERSION file (`#NAME` lines, each followed by its value).
fn hip_version(text: &str) -> Option<(u32, u32, u32)> {
    let mut numbers = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.parse::<u32>().ok());
    Some((numbers.next()??, numbers.next()??, numbers.next()??))
}

fn write(path: &Path, text: &str) -> StepResult {
    std::fs::write(path, text).map_err(|e| fail(STEP, format!("{}: {e}", path.display())))
}

fn symlink(target: &Path, link: &Path) -> StepResult {
    std::os::unix::fs::symlink(target, link).map_err(|e| {
        fail(
            STEP,
            format!("{} -> {}: {e}", link.display(), target.display()),
        )
    })
}

/// The headers the projects' build would generate or install, written minimally into `gen`.
fn generate(tree: &Path, gen: &Path) -> StepResult {
    std::fs::create_dir_all(gen.join("amd_comgr")).map_err(|e| fail(STEP, e.to_string()))?;
    std::fs::create_dir_all(gen.join("hip")).map_err(|e| fail(STEP, e.to_string()))?;
    // Installed layout: <hsa/hsa.h> is ROCr's inc/ (patched), <amd_comgr/amd_comgr.h> is
    // Debian's /usr/include/amd_comgr.h.
    symlink(&tree.join(HSA_INC), &gen.join("hsa"))?;
    symlink(
        Path::new("/usr/include/amd_comgr.h"),
        &gen.join("amd_comgr/amd_comgr.h"),
    )?;
    // hipamd/CMakeLists.txt writes hip_version.h from projects/hip/VERSION.
    let version_file = tree.join("projects/hip/VERSION");
    let version = std::fs::read_to_string(&version_file)
        .map_err(|e| fail(STEP, format!("{}: {e}", version_file.display())))?;
    let (major, minor, patch) = hip_version(&version).ok_or_else(|| {
        fail(
            STEP,
            format!("{}: no major, minor and patch", version_file.display()),
        )
    })?;
    write(
        &gen.join("hip/hip_version.h"),
        &format!(
            "#ifndef HIP_VERSION_H\n#define HIP_VERSION_H\n\
             #define HIP_VERSION_MAJOR {major}\n#define HIP_VERSION_MINOR {minor}\n\
             #define HIP_VERSION_PATCH {patch}\n#define HIP_VERSION_GITHASH \"\"\n\
             #define HIP_VERSION_BUILD_ID 0\n#define HIP_VERSION_BUILD_NAME \"\"\n\
             #define HIP_VERSION (HIP_VERSION_MAJOR * 10000000 + HIP_VERSION_MINOR * 100000 + \
             HIP_VERSION_PATCH)\n#define __HIP_HAS_GET_PCH 0\n#endif\n"
        ),
    )?;
    // ROCr's build assembles trap handlers and blit shaders for AMDGPU and turns them into
    // arrays (xxd -i); for a syntax check, declare the arrays amd_gpu_agent.cpp uses that the
    // checked-in headers do not.
    let rocr = tree.join("projects/rocr-runtime/runtime/hsa-runtime/core");
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p).map_err(|e| fail(STEP, format!("{}: {e}", p.display())))
    };
    let used = kcode_names(&read(rocr.join("runtime/amd_gpu_agent.cpp"))?);
    let mut declared = kcode_names(&read(rocr.join("inc/amd_trap_handler_v1.h"))?);
    declared.extend(kcode_names(&read(rocr.join("inc/amd_blit_shaders.h"))?));
    let mut stub = String::from(
        "// Written by cargo xtask for a syntax check.\nnamespace rocr {\nnamespace AMD {\n",
    );
    for name in used.difference(&declared) {
        stub.push_str(&format!("unsigned char {name}[] = {{0}};\n"));
    }
    stub.push_str("}  // namespace AMD\n}  // namespace rocr\n");
    write(&gen.join("amd_trap_handler_v2.h"), &stub)?;
    write(
        &gen.join("amd_blit_shaders_v2.h"),
        "// Written by cargo xtask: the arrays are in amd_trap_handler_v2.h.\n",
    )
}

/// Run `cmd`, returning (success, stdout and stderr).
fn run(cmd: &mut Command) -> StepResult<(bool, String)> {
    let out = cmd
        .output()
        .map_err(|e| fail(STEP, format!("cannot run `{}`: {e}", shown(cmd))))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// A fresh copy of ROCM_DIR's projects, patched in series order.
fn patched_tree(rocm_dir: &Path, patches: &[Patch], dir: &Path) -> StepResult {
    let _ = std::fs::remove_dir_all(dir);
    let projects = dir.join("projects");
    std::fs::create_dir_all(&projects).map_err(|e| fail(STEP, e.to_string()))?;
    for project in PROJECTS {
        let src = rocm_dir.join(project);
        if !src.is_dir() {
            return Err(fail(
                STEP,
                format!(
                    "{} has no {project}; ROCM_DIR is the tree docs/upstream/rocm/README.md describes",
                    rocm_dir.display()
                ),
            ));
        }
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(&src).arg(&projects);
        let (ok, text) = run(&mut cp)?;
        if !ok {
            return Err(fail(
                STEP,
                format!("copying {}: {}", src.display(), text.trim()),
            ));
        }
    }
    for patch in patches {
        let path = &patch.path;
        let name = path
            .strip_prefix(rocm_patch_dir())
            .unwrap_or(path)
            .display()
            .to_string();
        let mut apply = Command::new("patch");
        apply
            .args([
                "-p1",
                "--forward",
                "--batch",
                "--fuzz=0",
                "--no-backup-if-mismatch",
            ])
            .arg("-d")
            .arg(dir)
            .arg("-i")
            .arg(path);
        let (ok, text) = run(&mut apply)?;
        if !ok {
            return Err(fail(
                &format!("{STEP}: apply {name}"),
                format!(
                    "does not apply to the copy of {} (is it the unpatched tree the README names?):\n{}",
                    rocm_dir.display(),
                    text.trim()
                ),
            ));
        }
        let offsets = text.lines().filter(|l| l.contains("offset")).count();
        eprintln!(
            "==> {STEP}: applied {name}{}",
            if offsets == 0 {
                String::new()
            } else {
                format!(" ({offsets} hunks at an offset)")
            }
        );
    }
    Ok(())
}

/// The line numbers `diff -U0 old new` shows as added in `new`.
fn added_lines(diff: &str) -> BTreeSet<usize> {
    let mut lines = BTreeSet::new();
    for hunk in diff.lines().filter(|l| l.starts_with("@@ ")) {
        let Some(new) = hunk.split_whitespace().find(|w| w.starts_with('+')) else {
            continue;
        };
        let mut parts = new[1..].splitn(2, ',');
        let start = parts.next().and_then(|s| s.parse::<usize>().ok());
        let count = match parts.next() {
            Some(c) => c.parse::<usize>().ok(),
            None => Some(1),
        };
        if let (Some(start), Some(count)) = (start, count) {
            lines.extend(start..start + count);
        }
    }
    lines
}

/// A warning's location: (file as the compiler printed it, line).
fn warning_at(line: &str) -> Option<(&str, usize)> {
    let (head, _) = line.split_once(": warning:")?;
    let mut parts = head.rsplitn(3, ':');
    let _col = parts.next()?;
    let line_no = parts.next()?.parse().ok()?;
    Some((parts.next()?, line_no))
}

/// The files a make-style dependency list names (`-MD -MF`), in order.
fn dep_files(deps: &str) -> Vec<String> {
    deps.split_whitespace()
        .skip(1)
        .filter(|w| *w != "\\")
        .map(str::to_owned)
        .collect()
}

/// `path` relative to `root` after resolving links, if it is in `root`.
fn in_tree(root: &Path, path: &Path) -> Option<String> {
    let real = std::fs::canonicalize(path).ok()?;
    real.strip_prefix(root)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

struct Job {
    file: String,
    unit: Unit,
    compiler: Compiler,
}

struct Outcome {
    ok: bool,
    log: PathBuf,
    /// Tree-relative headers the translation unit includes (from GCC's dependency list).
    headers: Vec<String>,
    warnings: usize,
    /// Warnings on lines the series adds.
    patched_warnings: Vec<String>,
    first_error: Option<String>,
}

fn compile(
    job: &Job,
    tree: &Path,
    root: &Path,
    gen: &Path,
    logs: &Path,
    added: &BTreeMap<String, BTreeSet<usize>>,
) -> StepResult<Outcome> {
    let stem = job.file.replace('/', "_");
    let log = logs.join(format!("{stem}.{}.log", job.compiler.tag()));
    let deps = logs.join(format!("{stem}.d"));
    let mut cmd = Command::new(job.compiler.program(job.unit.is_c()));
    cmd.env("LC_ALL", "C")
        .arg("-fsyntax-only")
        .args(flags(job.unit, job.compiler, tree, gen));
    if job.compiler == Compiler::Gcc {
        cmd.arg("-MD").arg("-MF").arg(&deps);
    }
    cmd.arg(tree.join(&job.file));
    let (ok, text) = run(&mut cmd)?;
    write(&log, &format!("{}\n\n{text}", shown(&cmd)))?;
    let headers = if job.compiler == Compiler::Gcc && ok {
        let list = std::fs::read_to_string(&deps)
            .map_err(|e| fail(STEP, format!("{}: {e}", deps.display())))?;
        dep_files(&list)
            .iter()
            .filter_map(|f| in_tree(root, Path::new(f)))
            .collect()
    } else {
        Vec::new()
    };
    let mut warnings = 0;
    let mut patched_warnings = Vec::new();
    for line in text.lines() {
        let Some((file, line_no)) = warning_at(line) else {
            continue;
        };
        warnings += 1;
        let path = if Path::new(file).is_absolute() {
            PathBuf::from(file)
        } else {
            tree.join(file)
        };
        if let Some(rel) = in_tree(root, &path) {
            if added.get(&rel).is_some_and(|l| l.contains(&line_no)) {
                patched_warnings.push(line.to_owned());
            }
        }
    }
    let first_error = text
        .lines()
        .find(|l| l.contains("error:"))
        .map(str::to_owned);
    Ok(Outcome {
        ok,
        log,
        headers,
        warnings,
        patched_warnings,
        first_error,
    })
}

/// Run `jobs` on as many threads as there are CPUs.
fn compile_all(
    jobs: Vec<Job>,
    tree: &Path,
    gen: &Path,
    logs: &Path,
    added: &BTreeMap<String, BTreeSet<usize>>,
) -> StepResult<Vec<(Job, Outcome)>> {
    let root = std::fs::canonicalize(tree).map_err(|e| fail(STEP, e.to_string()))?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let queue = Mutex::new(jobs.into_iter());
    let done: Mutex<Vec<StepResult<(Job, Outcome)>>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let next = match queue.lock() {
                    Ok(mut q) => q.next(),
                    Err(_) => None,
                };
                let Some(job) = next else { break };
                let result = compile(&job, tree, &root, gen, logs, added).map(|o| (job, o));
                if let Ok(mut d) = done.lock() {
                    d.push(result);
                }
            });
        }
    });
    let done = done
        .into_inner()
        .map_err(|_| fail(STEP, "a compile thread panicked"))?;
    done.into_iter().collect()
}

/// What a file the series touches is, when it is not compiled itself.
fn not_compiled_because(file: &str) -> &'static str {
    if file.ends_with(".ver") || file.ends_with(".def") {
        "a linker version script, used only when the library is linked"
    } else if file.ends_with(".h") || file.ends_with(".hpp") {
        "a header no compiled translation unit includes"
    } else {
        "not a C or C++ file"
    }
}

/// Install the Debian packages whose headers are missing (as root; otherwise say how).
fn header_packages() -> StepResult {
    let mut missing: Vec<&str> = HEADERS
        .iter()
        .filter(|(file, _)| !Path::new(file).exists())
        .map(|(_, package)| *package)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    if !output("id", command("id", &["-u"])).is_ok_and(|s| s.trim() == "0") {
        return Err(fail(
            STEP,
            format!(
                "missing headers; install them with: sudo apt-get install {}",
                missing.join(" ")
            ),
        ));
    }
    let mut apt = Command::new("apt-get");
    apt.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing);
    step(&format!("{STEP}: install header packages"), apt)
}

fn compiler_version(compiler: Compiler) -> String {
    let program = compiler.program(false);
    let mut cmd = Command::new(&program);
    // Clang does not know -dumpfullversion; its -dumpversion is the full version.
    cmd.arg(match compiler {
        Compiler::Gcc => "-dumpfullversion",
        Compiler::Clang => "-dumpversion",
    });
    output(&program, cmd).map_or_else(|_| "?".into(), |v| v.trim().to_owned())
}

/// Apply the series to a copy of `rocm_dir`'s projects and compile what it touches.
pub fn check(rocm_dir: &Path) -> StepResult {
    let started = Instant::now();
    let patches = series_in(&rocm_patch_dir())?;
    let clang_pkg = format!("clang-{}", pins::LLVM);
    let (clang, clangxx) = (
        Compiler::Clang.program(true),
        Compiler::Clang.program(false),
    );
    setup::commands(&[
        ("gcc", "gcc"),
        ("g++", "g++"),
        (&clang, &clang_pkg),
        (&clangxx, &clang_pkg),
        ("patch", "patch"),
        ("diff", "diffutils"),
    ])?;
    header_packages()?;

    let dir = cache_dir().join("upstream-rocm");
    let (tree, gen) = (dir.join("tree"), dir.join("gen"));
    patched_tree(rocm_dir, &patches, &tree)?;
    let _ = std::fs::remove_dir_all(&gen);
    generate(&tree, &gen)?;

    let mut files: Vec<String> = Vec::new();
    for p in &patches {
        for f in touched(&p.text) {
            if !files.contains(&f) {
                files.push(f);
            }
        }
    }
    let mut added = BTreeMap::new();
    for f in &files {
        let mut diff = Command::new("diff");
        diff.arg("-U0")
            .arg("-N")
            .arg(rocm_dir.join(f))
            .arg(tree.join(f));
        let (_, text) = run(&mut diff)?;
        added.insert(f.clone(), added_lines(&text));
    }

    let logs = workspace_root().join("target/upstream-rocm");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).map_err(|e| fail(STEP, e.to_string()))?;
    let jobs: Vec<Job> = files
        .iter()
        .filter_map(|f| Unit::of(f).map(|unit| (f, unit)))
        .flat_map(|(f, unit)| {
            Compiler::ALL.map(|compiler| Job {
                file: f.clone(),
                unit,
                compiler,
            })
        })
        .collect();
    eprintln!(
        "==> {STEP}: compiling {} translation units with gcc/g++ {} and clang/clang++-{} {} (-fsyntax-only)",
        jobs.len() / Compiler::ALL.len(),
        compiler_version(Compiler::Gcc),
        pins::LLVM,
        compiler_version(Compiler::Clang),
    );
    let mut results = compile_all(jobs, &tree, &gen, &logs, &added)?;
    results.sort_by_key(|(j, _)| j.compiler == Compiler::Clang);

    let mut errors = Vec::new();
    for (job, o) in &results {
        if !o.ok {
            errors.push(format!(
                "{} ({}): {} (log: {})",
                job.file,
                job.compiler.program(job.unit.is_c()),
                o.first_error.as_deref().unwrap_or("failed"),
                o.log.display()
            ));
        }
        for w in &o.patched_warnings {
            errors.push(format!(
                "{} ({}): a warning on a patched line: {w}",
                job.file,
                job.compiler.program(job.unit.is_c())
            ));
        }
    }

    // GCC lists a translation unit's headers only when it compiles.
    let all_compiled = results.iter().all(|(_, o)| o.ok);
    let (mut compiled, mut only_read) = (0, 0);
    for f in &files {
        let own: Vec<&(Job, Outcome)> = results.iter().filter(|(j, _)| &j.file == f).collect();
        if !own.is_empty() {
            compiled += 1;
            let status = own
                .iter()
                .map(|(j, o)| {
                    format!(
                        "{}: {}, {} warnings",
                        j.compiler.program(j.unit.is_c()),
                        if o.ok { "ok" } else { "ERROR" },
                        o.warnings
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            eprintln!("    compiled: {f} ({status})");
            continue;
        }
        let users: Vec<&str> = results
            .iter()
            .filter(|(j, o)| j.compiler == Compiler::Gcc && o.headers.contains(f))
            .map(|(j, _)| j.file.rsplit('/').next().unwrap_or(&j.file))
            .collect();
        if users.is_empty() {
            only_read += 1;
            let why = if all_compiled || !(f.ends_with(".h") || f.ends_with(".hpp")) {
                not_compiled_because(f)
            } else {
                "a header; which units include it is not known, as one failed to compile"
            };
            eprintln!("    only read: {f} ({why})");
        } else {
            compiled += 1;
            eprintln!("    compiled: {f} (included by {})", users.join(", "));
        }
    }
    if !errors.is_empty() {
        return Err(fail(STEP, errors.join("\n")));
    }
    eprintln!(
        "==> {STEP}: ok, {} series entries apply to {}, {compiled} touched files compiled, {only_read} only read, in {:.1} s (logs in {})",
        patches.len(),
        rocm_dir.display(),
        started.elapsed().as_secs_f64(),
        logs.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touched_files_are_the_plus_lines() {
        let patch = "--- a/projects/clr/x.cpp\n+++ b/projects/clr/x.cpp\n@@ -1 +1 @@\n-a\n+b\n";
        assert_eq!(touched(patch), ["projects/clr/x.cpp"]);
    }

    #[test]
    fn units_follow_the_project_and_the_extension() {
        assert_eq!(
            Unit::of("projects/rocr-runtime/libhsakmt/src/memory.c"),
            Some(Unit::Libhsakmt)
        );
        assert_eq!(
            Unit::of("projects/rocr-runtime/runtime/hsa-runtime/core/runtime/hsa_ext_amd.cpp"),
            Some(Unit::Rocr)
        );
        assert_eq!(
            Unit::of("projects/clr/rocclr/device/rocm/rocvirtual.cpp"),
            Some(Unit::Rocclr)
        );
        assert_eq!(
            Unit::of("projects/clr/hipamd/src/hip_device.cpp"),
            Some(Unit::Hipamd)
        );
        assert_eq!(
            Unit::of("projects/rocr-runtime/libhsakmt/src/libhsakmt.ver"),
            None
        );
        assert_eq!(Unit::of("projects/clr/rocclr/device/device.hpp"), None);
    }

    #[test]
    fn added_lines_come_from_the_new_side_of_each_hunk() {
        let diff = "--- a\n+++ b\n@@ -3,0 +4,2 @@\n+x\n+y\n@@ -10 +12 @@\n-p\n+q\n@@ -20,2 +22,0 @@\n-r\n-s\n";
        assert_eq!(added_lines(diff), BTreeSet::from([4, 5, 12]));
    }

    #[test]
    fn warnings_are_located() {
        assert_eq!(
            warning_at("/t/a.cpp:65:10: warning: 'alignof' applied to an expression"),
            Some(("/t/a.cpp", 65))
        );
        assert_eq!(warning_at("/t/a.cpp:65:10: error: no"), None);
        assert_eq!(warning_at("1 warning generated."), None);
    }

    #[test]
    fn dependency_lists_are_split() {
        let deps = "x.o: /a/x.cpp /a/b.h \\\n /a/c.h\n";
        assert_eq!(dep_files(deps), ["/a/x.cpp", "/a/b.h", "/a/c.h"]);
    }

    #[test]
    fn kcode_names_are_whole_identifiers() {
        let names =
            kcode_names("{kCodeFill9, sizeof(kCodeFill9)}, xkCodeNo, kCodeTrapHandlerV2_12;");
        assert_eq!(
            names,
            BTreeSet::from(["kCodeFill9".to_owned(), "kCodeTrapHandlerV2_12".to_owned()])
        );
    }

    #[test]
    fn hip_version_reads_the_three_numbers() {
        let v = "#HIP_VERSION_MAJOR\n6\n#HIP_VERSION_MINOR\n3\n#HIP_VERSION_PATCH\n0\n";
        assert_eq!(hip_version(v), Some((6, 3, 0)));
        assert_eq!(hip_version("#HIP_VERSION_MAJOR\n6\n"), None);
    }

    #[test]
    fn the_series_lists_files_that_exist_and_change_something() {
        let patches = series_in(&rocm_patch_dir()).unwrap();
        assert!(patches.len() >= 4);
        for p in &patches {
            assert!(!touched(&p.text).is_empty(), "{} changes nothing", p.name());
        }
    }

    #[test]
    fn sendable_patches_carry_the_author_placeholders() {
        for Patch { path, text } in series_in(&rocm_patch_dir()).unwrap() {
            if path.parent().is_some_and(|p| p.ends_with("base")) {
                continue;
            }
            assert!(
                text.contains("\nFrom: FIRSTNAME LASTNAME <EMAIL>\n"),
                "{}",
                path.display()
            );
            assert!(
                text.contains("\nSigned-off-by: FIRSTNAME LASTNAME <EMAIL>\n"),
                "{}",
                path.display()
            );
            assert!(
                text.contains("Compile-tested only; not run on a GPU."),
                "{}",
                path.display()
            );
        }
    }
}
