//! The `hdpflush` binary as a user runs it: output, files written, exit codes, error lines.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hdpflush(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hdpflush"));
    cmd.args(args).env_remove("HDPFLUSH_STRATEGY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run hdpflush")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `hdpflush bench ARGS --out-dir DIR`, which must succeed: its table and its JSON report.
fn bench_in(dir: &Path, args: &[&str]) -> (String, serde_json::Value) {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out-dir", dir.to_str().unwrap()]);
    let out = hdpflush(&all, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json = std::fs::read_to_string(dir.join("bench.json")).unwrap();
    (text(&out.stdout), serde_json::from_str(&json).unwrap())
}

#[path = "support/fake_kfd.rs"]
mod fake_kfd;

#[test]
fn probe_never_issues_the_kfd_flush_whatever_kfd_reports_named_or_not() {
    let Some(fixture) = fake_kfd::FakeKfd::checked(Path::new(env!("CARGO_TARGET_TMPDIR"))) else {
        return;
    };

    let exe = Path::new(env!("CARGO_BIN_EXE_hdpflush"));
    // 1.23: Debian's 7.3.4 (read 2026-12-02), which the fake aborts on nr 0x29 for; 1.24: the
    // patch's, on which the fake would serve the flush, and probe must still not call it.
    for version in [fake_kfd::UPSTREAM_VERSION, fake_kfd::PATCH_VERSION, "1.25"] {
        let (out, log) = fixture.run(version, exe, &["probe"], &[]);
        let s = text(&out.stdout);
        assert!(out.status.success(), "{version}: {s}{}", text(&out.stderr));
        let kfd_line = if version == fake_kfd::PATCH_VERSION {
            format!("KFD              {version} (the version hdpflush's KFD patch sets: kfd-ioctl, its proposed flush ioctl, is called here when named, never chosen)")
        } else {
            format!("KFD              {version} (kfd-ioctl, the proposed flush ioctl of hdpflush's KFD patch, is called only when named, and only on KFD 1.24)")
        };
        assert!(s.contains(&kfd_line), "{s}");
        assert!(
            s.contains(&format!(
                "  {}  AMD GPU, KFD gpu_id {}",
                fake_kfd::GPU,
                fake_kfd::GPU_ID
            )),
            "{s}"
        );
        assert!(
            s.contains(&format!(
                "    -> none: no HDP flush for GPU {}",
                fake_kfd::GPU
            )),
            "{version}: {s}"
        );
        assert!(
            s.contains("process-wide: none (no HDP flush for GPU"),
            "{version}: {s}"
        );
        assert!(
            log.contains("GET_VERSION nr=0x01"),
            "the fixture was asked: {log}"
        );
        assert!(!fake_kfd::issued_0x29(&log), "{version}: {log}");
        assert!(!log.contains("KFD ioctl"), "{version}: {log}");

        // Named, probe shows the decision and still flushes nothing.
        let (out, log) = fixture.run(
            version,
            exe,
            &["probe"],
            &[("HDPFLUSH_STRATEGY", "kfd-ioctl")],
        );
        let s = text(&out.stdout);
        assert!(out.status.success(), "{version}: {s}{}", text(&out.stderr));
        assert!(
            s.contains(&format!("    -> kfd-ioctl (HDPFLUSH_STRATEGY=kfd-ioctl: KFD's proposed AMDKFD_IOC_HDP_FLUSH for gpu_id {} (named: needs a kernel carrying hdpflush's KFD patch, whose KFD reports 1.24; checked when the flusher is opened))", fake_kfd::GPU_ID)),
            "{version}: {s}"
        );
        assert!(s.contains(&kfd_line), "{s}");
        assert!(!fake_kfd::issued_0x29(&log), "{version}, named: {log}");
    }
}

/// The device only exists inside our QEMU guests; on a host it must be reported missing.
fn device_present() -> bool {
    Path::new(libflush::uapi::HDP_FLUSH_DEVICE_PATH).exists()
}

#[test]
fn probe_explains_page_size_gpus_what_bench_can_measure_and_the_process_wide_choice() {
    let out = hdpflush(&["probe"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let page = nix_page_size();
    assert!(s.contains(&format!("page size        {page} bytes")), "{s}");
    assert!(s.contains("bench can measure:"), "{s}");
    for name in [
        "mmio-remap",
        "ioctl",
        "uring",
        "dummy-page",
        "legacy",
        "sim",
    ] {
        assert!(s.contains(&format!("  {name} ")), "{name} missing:\n{s}");
    }
    assert!(s.contains("process-wide: "), "{s}");
    assert!(
        !s.contains("process-wide: sim"),
        "never the simulator unless named:\n{s}"
    );
    if !device_present() && !Path::new("/dev/kfd").exists() {
        assert!(s.contains("GPUs: none found"), "{s}");
        assert!(
            s.contains(
                "process-wide: none (the process-wide flusher has no GPU: no AMD GPU on this host"
            ),
            "{s}"
        );
        assert!(s.contains("module is not loaded"), "{s}");
    }
}

fn nix_page_size() -> usize {
    // Same source the library uses, read independently.
    let out = Command::new("getconf").arg("PAGESIZE").output().unwrap();
    text(&out.stdout).trim().parse().unwrap()
}

#[test]
fn probe_json_is_machine_readable_and_names_the_simulator_only_when_asked() {
    let out = hdpflush(&["probe", "--json"], &[]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["page_size"].as_u64().unwrap() as usize, nix_page_size());
    assert_eq!(v["strategies"].as_array().unwrap().len(), 7);
    assert!(v["gpus"].is_array(), "{v}");
    // KFD's version is shown, never used to choose: no KFD here, and the reason says so.
    if !Path::new("/dev/kfd").exists() {
        let why = v["kfd_version"]["absent"]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"));
        assert!(why.contains("/dev/kfd"), "{why}");
    }
    assert!(v["config_error"].is_null(), "{v}");
    assert_ne!(v["process_wide"]["Ok"]["kind"], "sim", "{v}");

    let out = hdpflush(&["probe", "--json"], &[("HDPFLUSH_STRATEGY", "sim")]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["process_wide"]["Ok"]["kind"], "sim", "{v}");
    assert_eq!(v["strategy_env"], "sim", "{v}");
}

#[test]
fn bench_prints_a_table_and_writes_json_and_svg() {
    let dir = scratch("bench_default");
    let out_dir = dir.join("out");
    let (table, report) = bench_in(&out_dir, &["-n", "2000", "--warmup", "100"]);
    assert!(
        table.contains("p50 ns") && table.contains("flushes/s"),
        "{table}"
    );
    for name in ["mmio-remap", "dummy-page", "legacy", "sim"] {
        assert!(
            table.lines().any(|l| l.starts_with(name)),
            "{name} row missing:\n{table}"
        );
    }
    assert!(
        table.contains("stand-in: anonymous memory"),
        "stand-ins labelled:\n{table}"
    );

    let results = report["results"].as_array().unwrap();
    assert!(results.len() >= 4);
    for r in results {
        let mean = r["mean_ns"].as_f64().unwrap();
        assert!(mean > 0.0 && r["p99_ns"].as_f64().unwrap() >= r["p50_ns"].as_f64().unwrap());
        assert_eq!(
            r["flushes"].as_u64().unwrap() % r["batch"].as_u64().unwrap(),
            0
        );
        assert!(r["flushes"].as_u64().unwrap() >= 2000);
    }
    let stand_in = results
        .iter()
        .find(|r| r["strategy"] == "dummy-page")
        .unwrap();
    assert_eq!(stand_in["backing"]["kind"], "stand-in");
    if !device_present() {
        let skipped = report["skipped"].as_array().unwrap();
        assert!(skipped.iter().any(|s| s["strategy"] == "ioctl"), "{report}");
    }
    let svg = std::fs::read_to_string(out_dir.join("bench.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("dummy-page"),
        "{svg:.200}"
    );

    // `report` re-reads what `bench` wrote.
    let again_svg = dir.join("again.svg");
    let out = hdpflush(
        &[
            "report",
            out_dir.join("bench.json").to_str().unwrap(),
            "--svg",
            again_svg.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("dummy-page"));
    assert!(again_svg.exists());
}

#[test]
fn bench_honours_explicit_paths_and_one_strategy() {
    let dir = scratch("bench_paths");
    let json = dir.join("r.json");
    let svg = dir.join("nested/r.svg");
    let out = hdpflush(
        &[
            "bench",
            "-s",
            "sim",
            "-n",
            "500",
            "--quiet",
            "--json",
            json.to_str().unwrap(),
            "--svg",
            svg.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(json.exists() && svg.exists());
    let table = text(&out.stdout);
    assert!(
        !table.contains("legacy"),
        "only the requested strategy runs:\n{table}"
    );
    assert!(
        text(&out.stderr).is_empty(),
        "--quiet: {}",
        text(&out.stderr)
    );
}

#[test]
fn bench_reference_adds_the_floors_to_named_strategies() {
    let dir = scratch("bench_reference");
    let args = [
        "-s",
        "sim",
        "--reference",
        "--batch",
        "4",
        "-n",
        "400",
        "--quiet",
    ];
    let (table, report) = bench_in(&dir, &args);
    assert!(
        table.contains("reference (ioctl ENOTTY on /dev/null)"),
        "{table}"
    );
    let uring_floor = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["variant"] == "io_uring NOP batch 4");
    let skipped_uring = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["strategy"] == "reference io_uring");
    // Either io_uring works here and the floor ran in batches of 4, or it was skipped with a reason.
    match uring_floor {
        Some(r) => assert_eq!(r["batch"], 4),
        None => assert!(skipped_uring, "{report}"),
    }
}

#[test]
fn bench_map_runs_a_mapping_strategy_over_a_file() {
    let dir = scratch("bench_map");
    let file = dir.join("vram");
    std::fs::write(&file, vec![0u8; 8192]).unwrap();
    let spec = format!("dummy-page={}@4096", file.display());
    let out = hdpflush(
        &[
            "bench",
            "-s",
            "dummy-page",
            "--map",
            &spec,
            "-n",
            "300",
            "--quiet",
            "--out-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains(&format!("dummy-page ({}@0x1000)", file.display())),
        "{table}"
    );
    assert!(
        table.contains("standing in for a device mapping"),
        "{table}"
    );
    // The flush really stored into the file: two words, half a page apart.
    let bytes = std::fs::read(&file).unwrap();
    assert_ne!(bytes[4096..4100], [0; 4]);
    assert_eq!(bytes[4096..4100], bytes[4096 + 2048..4096 + 2052]);

    let out = hdpflush(
        &[
            "bench",
            "--map",
            "dummy-page=/nonexistent/resource0",
            "-n",
            "10",
        ],
        &[],
    );
    assert_one_line_error(&out, &["/nonexistent/resource0", "open failed"]);
    let out = hdpflush(&["bench", "--map", "ioctl=/dev/null", "-n", "10"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("`ioctl` maps nothing"),
        "{}",
        text(&out.stderr)
    );
}

/// One line on stderr, starting `hdpflush: `, nonzero exit.
fn assert_one_line_error(out: &Output, needles: &[&str]) {
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("hdpflush: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` missing from: {err}");
    }
}

#[test]
fn an_unknown_strategy_in_the_environment_is_a_one_line_error() {
    for cmd in [&["probe"][..], &["bench", "-n", "10"][..]] {
        let out = hdpflush(cmd, &[("HDPFLUSH_STRATEGY", "turbo")]);
        assert_one_line_error(
            &out,
            &[
                "unknown strategy `turbo`",
                "HDPFLUSH_STRATEGY",
                "dummy-page",
                "sim",
            ],
        );
    }
}

#[test]
fn an_unusable_strategy_on_the_command_line_is_a_one_line_error() {
    if device_present() {
        let out = hdpflush(&["bench", "-s", "ioctl", "-n", "10", "--quiet"], &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        return;
    }
    for s in ["ioctl", "uring"] {
        let out = hdpflush(&["bench", "-s", s, "-n", "10"], &[]);
        assert_one_line_error(
            &out,
            &[
                &format!("strategy `{s}` is not usable here"),
                "not loaded",
                "insmod",
            ],
        );
    }
}

#[test]
fn a_setting_that_can_never_work_fails_probe_with_the_reason() {
    // A mapping strategy: the process-wide flusher never has a mapping to give it.
    let out = hdpflush(&["probe"], &[("HDPFLUSH_STRATEGY", "legacy")]);
    assert_one_line_error(
        &out,
        &[
            "strategy `legacy` is not usable here",
            "mapping the caller passes",
            "HDPFLUSH_STRATEGY=legacy",
        ],
    );
    let out = hdpflush(&["probe"], &[("HDPFLUSH_GPU", "card0")]);
    assert_one_line_error(&out, &["HDPFLUSH_GPU", "`card0` names no GPU", "gpu_id:N"]);
}

#[test]
fn an_unknown_strategy_on_the_command_line_is_rejected_by_the_parser() {
    let out = hdpflush(&["bench", "-s", "nope"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown strategy `nope`") && err.contains("valid strategies"),
        "{err}"
    );
}

#[test]
fn report_on_a_file_that_is_not_a_report_says_so() {
    let dir = scratch("bad_report");
    let f = dir.join("x.json");
    std::fs::write(&f, "{}").unwrap();
    let out = hdpflush(&["report", f.to_str().unwrap()], &[]);
    assert_one_line_error(&out, &["not what hdpflush wrote"]);
    let out = hdpflush(&["report", "/nonexistent/bench.json"], &[]);
    assert_one_line_error(&out, &["/nonexistent/bench.json", "No such file"]);
}

#[test]
fn a_closed_stdout_is_not_a_crash() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hdpflush"))
        .args(["probe"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
}

/// The evidence committed under docs/, as `cargo xtask vm-bench` assembled it.
fn committed_evidence() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/evidence/evidence.json")
}

/// The committed evidence as one boot per guest measured before boots were counted: each
/// place's first run of each phase, without boot numbers or provenance.
fn one_boot_evidence() -> serde_json::Value {
    let mut e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(committed_evidence()).unwrap()).unwrap();
    e.as_object_mut().unwrap().remove("provenance");
    for place in e["places"].as_array_mut().unwrap() {
        let mut seen = Vec::new();
        let runs = place["runs"].as_array_mut().unwrap();
        runs.retain(|r| {
            let phase = r["phase"].as_str().unwrap().to_owned();
            let first = !seen.contains(&phase);
            seen.push(phase);
            first
        });
        for r in runs {
            r.as_object_mut().unwrap().remove("boot");
        }
    }
    e
}

#[test]
fn the_docs_tables_match_the_evidence_json_they_came_from() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let evidence = committed_evidence();
    let out = hdpflush(
        &[
            "report",
            "--evidence",
            evidence.to_str().unwrap(),
            "--check-docs",
            docs.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A table edited by hand no longer matches, and the error says how to regenerate.
    let copy = scratch("docs_check");
    for name in ["patch-evidence.md", "evidence.md", "cost-model.md"] {
        std::fs::copy(docs.join(name), copy.join(name)).unwrap();
    }
    let doc = std::fs::read_to_string(copy.join("cost-model.md")).unwrap();
    let edited = doc.replacen("| `W + R` |", "| `W + R` | 1 |", 1);
    assert_ne!(doc, edited, "the model table has a `W + R` row");
    std::fs::write(copy.join("cost-model.md"), edited).unwrap();
    let out = hdpflush(
        &[
            "report",
            "--evidence",
            evidence.to_str().unwrap(),
            "--check-docs",
            copy.to_str().unwrap(),
        ],
        &[],
    );
    assert_one_line_error(&out, &["cost-model.md", "--update-docs docs"]);
}

#[test]
fn the_evidence_report_prints_every_target_the_oracle_and_the_model() {
    let evidence = committed_evidence();
    let out = hdpflush(
        &[
            "report",
            "--evidence",
            evidence.to_str().unwrap(),
            "--model",
            "--pcie-read-ns",
            "2000",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    for id in ["P1", "P2", "P3", "P5"] {
        assert!(
            s.lines().any(|l| ["PASS ", "FAIL ", "INCONCLUSIVE "]
                .iter()
                .any(|v| l.starts_with(v))
                && l.contains(id)),
            "no {id} line:\n{s}"
        );
    }
    assert!(s.contains("x86_64 guest, 4K pages") && s.contains("arm64 guest, 64K pages"));
    assert!(
        s.contains("dummy-page") && s.contains("same-address="),
        "{s}"
    );
    // The committed evidence was assembled with the delayed-flush-completion hypothesis.
    assert!(
        s.contains("delayed-flush-completion=600/600") && !s.contains("not in this evidence"),
        "{s}"
    );
    // The model at R = 2000 ns: the read-back is W + R = 2100 ns, and the grid's R = 2000
    // column is the highlighted one.
    let read_back = s
        .lines()
        .find(|l| l.starts_with("| ROCclr's read-back") && l.contains("| itself |"))
        .unwrap_or_else(|| panic!("no read-back row:\n{s}"));
    assert!(read_back.contains("| 2100 ns |"), "{read_back}");
    assert!(s.contains("| **R = 2000** |"), "{s}");
    assert!(s.contains("break-even R"), "{s}");
}

/// The body of a doc's generated section `name`.
fn generated_section(doc: &str, name: &str) -> String {
    let open = format!("<!-- generated:{name} ");
    let start = doc
        .find(&open)
        .unwrap_or_else(|| panic!("no {name} section"));
    let body = &doc[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body
        .find(&format!("<!-- end generated:{name} -->"))
        .unwrap()]
        .to_owned()
}

#[test]
fn the_cost_model_doc_is_what_report_model_prints() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cost-model.md"))
            .unwrap();
    let section = generated_section(&doc, "model");
    for table in [
        "### Per launch, completed",
        "### Posted",
        "### Batched",
        "R = 4000",
    ] {
        assert!(section.contains(table), "the doc's model lacks {table}");
    }
    let evidence = committed_evidence();
    let out = hdpflush(
        &[
            "report",
            "--evidence",
            evidence.to_str().unwrap(),
            "--model",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(
        printed.contains(&section),
        "docs/cost-model.md's model is not `report --model`'s output:\n{printed}"
    );
    // Other PCIe parameters print another model, which the doc does not carry.
    let out = hdpflush(
        &[
            "report",
            "--evidence",
            evidence.to_str().unwrap(),
            "--model",
            "--pcie-write-ns",
            "150",
        ],
        &[],
    );
    assert!(!text(&out.stdout).contains(&section));
    // A cost of zero would divide by zero.
    let out = hdpflush(
        &[
            "report",
            "--evidence",
            evidence.to_str().unwrap(),
            "--model",
            "--pcie-read-ns",
            "0",
        ],
        &[],
    );
    assert_one_line_error(&out, &["--pcie-read-ns 0", "positive"]);
}

#[test]
fn a_vm_bench_directory_is_assembled_into_evidence_tables_and_plots() {
    // One boot of the committed evidence, taken apart into what `cargo xtask vm-bench` left
    // behind before it booted each guest several times.
    let evidence = one_boot_evidence();
    let dir = scratch("assemble");
    for place in evidence["places"].as_array().unwrap() {
        let sub = dir.join(place["name"].as_str().unwrap());
        std::fs::create_dir_all(&sub).unwrap();
        for run in place["runs"].as_array().unwrap() {
            let file = sub.join(format!("{}.json", run["phase"].as_str().unwrap()));
            std::fs::write(file, run.to_string()).unwrap();
        }
    }
    for (name, ns) in [("direct", 1.5), ("dyn", 4.0)] {
        let estimates = serde_json::json!({ "mean": { "point_estimate": ns } });
        std::fs::write(
            dir.join(format!("host/dispatch-{name}.json")),
            estimates.to_string(),
        )
        .unwrap();
    }
    let out = hdpflush(&["report", "--evidence", dir.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("PASS P5 host") && s.contains("2.50 ns"),
        "dispatch from criterion's estimates:\n{s}"
    );
    for file in [
        "evidence.json",
        "tables.md",
        "cost.svg",
        "batch.svg",
        "callers.svg",
    ] {
        let len = std::fs::metadata(dir.join(file)).map_or(0, |m| m.len());
        assert!(len > 100, "{file}: {len} bytes");
    }
    let assembled: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("evidence.json")).unwrap()).unwrap();
    assert_eq!(
        assembled["places"], evidence["places"],
        "the runs, unchanged"
    );
    assert_eq!(
        assembled["oracle"].as_array().map(Vec::len),
        evidence["oracle"].as_array().map(Vec::len),
        "the oracle ran over every case"
    );
    let tables = std::fs::read_to_string(dir.join("tables.md")).unwrap();
    for section in [
        "## provenance",
        "## targets",
        "## runs",
        "## oracle",
        "## model",
    ] {
        assert!(tables.contains(section), "{section} missing");
    }
}

#[test]
fn several_boots_are_judged_on_their_median_and_a_spread_across_the_limit_is_inconclusive() {
    // The committed evidence's phases (one boot's), saved as three boots per guest (boot-K/),
    // each boot's sim ioctl cases set against a NOP floor of 100 ns, plus what vm-bench records.
    let evidence = one_boot_evidence();
    let dir = scratch("boots");
    // (completed, posted) mean ns per boot: completed 1.05/1.10/1.30x straddles the 1.15x
    // limit; posted 1.20/1.25/1.30x is over it at every boot.
    let boots = [(105.0, 120.0), (110.0, 125.0), (130.0, 130.0)];
    for place in evidence["places"].as_array().unwrap() {
        let name = place["name"].as_str().unwrap();
        for (k, (completed, posted)) in boots.iter().enumerate() {
            let sub = if name == "host" {
                dir.join(name)
            } else {
                dir.join(name).join(format!("boot-{}", k + 1))
            };
            std::fs::create_dir_all(&sub).unwrap();
            for run in place["runs"].as_array().unwrap() {
                let mut run = run.clone();
                if run["phase"] == "sim" {
                    for c in run["report"]["results"].as_array_mut().unwrap() {
                        let ns = match (c["strategy"].as_str(), c["variant"].as_str()) {
                            (Some("reference"), Some("ioctl NOP, kernel-entry floor")) => 100.0,
                            (Some("ioctl"), Some("completed")) => *completed,
                            (Some("ioctl"), Some("posted")) => *posted,
                            _ => continue,
                        };
                        c["mean_ns"] = serde_json::json!(ns);
                    }
                }
                let file = sub.join(format!("{}.json", run["phase"].as_str().unwrap()));
                std::fs::write(file, run.to_string()).unwrap();
            }
        }
    }
    let provenance = serde_json::json!({
        "git_commit": "0123abc",
        "git_dirty": true,
        "qemu": ["QEMU emulator version 9.9.9"],
        "host_cpu": "Test CPU @ 1 GHz",
        "host_kernel": "6.99.0-test",
        "rustc": ["rustc 1.99.0 (host)", "rustc 1.88.0 (/usr/bin/rustc)"],
        "boots": 3,
        "guest_boots": [
            {"guest": "x86_64", "boot": 1, "seed": 11, "kernel": "6.12.117"},
            {"guest": "arm64", "boot": 1, "seed": 11, "kernel": "6.12.117"},
            {"guest": "x86_64", "boot": 2, "seed": 12, "kernel": "6.12.117"},
            {"guest": "arm64", "boot": 2, "seed": 12, "kernel": "6.12.117"},
            {"guest": "x86_64", "boot": 3, "seed": 13, "kernel": null}
        ]
    });
    std::fs::write(dir.join("provenance.json"), provenance.to_string()).unwrap();
    let out = hdpflush(
        &["report", "--evidence", dir.to_str().unwrap(), "--model"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let line = |start: &str| {
        s.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line {start}:\n{s}"))
            .to_owned()
    };
    let completed = line("INCONCLUSIVE P1 x86_64: ioctl FLUSH (completed)");
    assert!(
        completed.contains("median 1.10x over 3 boots, range 1.05-1.30x (limit 1.15x)"),
        "{completed}"
    );
    let posted = line("FAIL P1 x86_64: ioctl FLUSH (posted)");
    assert!(posted.contains("median 1.25x over 3 boots"), "{posted}");
    let tables = std::fs::read_to_string(dir.join("tables.md")).unwrap();
    assert!(tables.contains("#### x86_64 guest, 4K pages: sim (3 boots)"));
    assert!(
        tables.contains("| ioctl (completed) | kernel model | 110 | 105-130 |"),
        "the median of the means, and their range:\n{tables}"
    );
    assert!(tables.contains("| P1 | x86_64 | ioctl FLUSH (completed), sim backend, 0 delay / NOP ioctl | 1.10x | 1.05-1.30x | 1.15x | **INCONCLUSIVE** |"));
    assert!(
        tables.contains(
            "x86_64 seeds 11, 12, 13 (kernel 6.12.117, not printed); arm64 seeds 11, 12 \
             (kernel 6.12.117); tables"
        ) && tables.contains("git 0123abc (with uncommitted changes); host CPU Test CPU @ 1 GHz"),
        "{tables}"
    );
    assert!(
        tables.contains("the spread over every boot"),
        "the model's band is the boots' spread:\n{tables}"
    );
    let assembled: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("evidence.json")).unwrap()).unwrap();
    assert_eq!(assembled["provenance"], provenance);
    let x86 = &assembled["places"][0];
    assert_eq!(x86["name"], "x86_64");
    let sim_boots: Vec<u64> = x86["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["phase"] == "sim")
        .map(|r| r["boot"].as_u64().unwrap())
        .collect();
    assert_eq!(sim_boots, [1, 2, 3]);
    // The assembled file reads back to the same report.
    let again = hdpflush(
        &[
            "report",
            "--evidence",
            dir.join("evidence.json").to_str().unwrap(),
        ],
        &[],
    );
    assert!(text(&again.stdout).contains(&completed));
}

#[test]
fn single_boot_evidence_without_provenance_says_so() {
    let file = scratch("one_boot").join("evidence.json");
    std::fs::write(&file, one_boot_evidence().to_string()).unwrap();
    let out = hdpflush(&["report", "--evidence", file.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("boots: 1 per guest (spread across boots: n/a (1 boot)); git commit, QEMU version, host CPU and rustc: not recorded"),
        "{s}"
    );
    // One boot: the value alone, no median line, and PASS/FAIL as before.
    assert!(
        s.lines().any(
            |l| (l.starts_with("FAIL P1 x86_64") || l.starts_with("PASS P1 x86_64"))
                && !l.contains("median")
        ),
        "{s}"
    );
    assert!(!s.contains("INCONCLUSIVE"), "{s}");
}
