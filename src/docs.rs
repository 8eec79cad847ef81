//! The tables the docs carry between generated markers, regenerated from an assembled
//! evidence.json and checked against it, so a hand-edited number cannot drift from its source.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::data::evidence::Evidence;
use crate::error::CliError;
use crate::model::Pcie;
use crate::print;
use crate::stdout::emit;

/// The Markdown sections the docs carry, by name.
pub fn sections(e: &Evidence) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    m.insert("provenance", print::evidence::provenance(e));
    m.insert("targets", print::evidence::targets_md(e));
    m.insert("targets-brief", print::evidence::targets_brief_md(e));
    m.insert("runs", print::evidence::runs_md(e));
    m.insert("oracle", print::evidence::oracle_md(e));
    m.insert("model", print::model::table_md(e, &Pcie::default()));
    m.insert("patch", print::model::patch_md(e, &Pcie::default()));
    m
}

/// The markers around a generated section in a doc.
fn markers(name: &str) -> (String, String) {
    (
        format!("<!-- generated:{name} by `hdpflush report --evidence docs/evidence/evidence.json --update-docs docs`; do not edit -->"),
        format!("<!-- end generated:{name} -->"),
    )
}

/// `doc` with every generated section replaced by `sections`' text; an error names a section
/// the doc opens and never closes, or one that does not exist.
pub fn regenerate(doc: &str, sections: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = doc;
    const OPEN: &str = "<!-- generated:";
    while let Some(i) = rest.find(OPEN) {
        let start = i + OPEN.len();
        let name_end = rest[start..]
            .find(' ')
            .map(|j| start + j)
            .ok_or("unterminated generated marker")?;
        let name = &rest[start..name_end];
        let (begin, end) = markers(name);
        let body = sections
            .get(name)
            .ok_or_else(|| format!("unknown generated section `{name}`"))?;
        let close = rest[i..]
            .find(&end)
            .map(|j| i + j)
            .ok_or_else(|| format!("generated section `{name}` is never closed"))?;
        out.push_str(&rest[..i]);
        let _ = write!(out, "{begin}\n{body}{end}");
        rest = &rest[close + end.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The docs that carry generated sections.
pub const DOCS: [&str; 3] = ["patch-evidence.md", "evidence.md", "cost-model.md"];

/// Rewrite (or, with `check`, compare) the generated sections of `docs_dir`'s docs.
pub fn update_docs(e: &Evidence, docs_dir: &Path, check: bool) -> Result<(), CliError> {
    let sections = sections(e);
    let mut stale = Vec::new();
    for name in DOCS {
        let path = docs_dir.join(name);
        let doc = std::fs::read_to_string(&path).map_err(|err| CliError::io(&path, err))?;
        let new = regenerate(&doc, &sections)
            .map_err(|why| CliError::Selection(format!("{}: {why}", path.display())))?;
        if !doc.contains("<!-- generated:") {
            return Err(CliError::Selection(format!(
                "{}: carries no generated section",
                path.display()
            )));
        }
        if new != doc {
            if check {
                stale.push(path.display().to_string());
            } else {
                std::fs::write(&path, new).map_err(|err| CliError::io(&path, err))?;
                emit(&format!("updated {}\n", path.display()))?;
            }
        }
    }
    if stale.is_empty() {
        Ok(())
    } else {
        Err(CliError::Selection(format!(
            "the tables in {} do not match the evidence JSON; regenerate them with `hdpflush report --evidence docs/evidence/evidence.json --update-docs docs`",
            stale.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_sections_are_replaced_and_unknown_or_open_ones_refused() {
        let mut sections = BTreeMap::new();
        sections.insert("targets", "| new |\n".to_owned());
        let (b, e) = markers("targets");
        let doc = format!("intro\n{b}\n| old |\n{e}\noutro\n");
        let new = regenerate(&doc, &sections).unwrap();
        assert_eq!(new, format!("intro\n{b}\n| new |\n{e}\noutro\n"));
        assert_eq!(regenerate(&new, &sections).unwrap(), new, "idempotent");
        let (b2, e2) = markers("nope");
        assert!(regenerate(&format!("{b2}\n{e2}"), &sections)
            .unwrap_err()
            .contains("unknown"));
        assert!(regenerate(&format!("{b}\n| old |\n"), &sections)
            .unwrap_err()
            .contains("never closed"));
    }
}
