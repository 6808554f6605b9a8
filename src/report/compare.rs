//! `unet-lab compare DIR...`: one page across several experiment directories (e.g. the same
//! grid on synthetic and on real data), linking to each experiment's own report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::html_escape as esc;
use super::load::ExperimentData;
use super::summary;
use crate::track::write_atomic;

/// A path to `target` relative to the directory `from` (both made absolute first).
fn relative(target: &Path, from: &Path) -> PathBuf {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (t, f) = (abs(target), abs(from));
    let tc: Vec<_> = t.components().collect();
    let fc: Vec<_> = f.components().collect();
    let common = tc.iter().zip(&fc).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..fc.len() {
        rel.push("..");
    }
    for c in &tc[common..] {
        rel.push(c.as_os_str());
    }
    rel
}

pub fn render_comparison(dirs: &[PathBuf], out: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let experiments: Vec<ExperimentData> = dirs
        .iter()
        .map(|d| ExperimentData::load(d))
        .collect::<Result<_>>()?;
    let mut s = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>unet-lab comparison</title>\
         <style>body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem}\
         table{border-collapse:collapse}th,td{border:1px solid #ddd;padding:.3rem .6rem}th{background:#f4f4f4}\
         td.num{text-align:right}img{max-width:48%;border:1px solid #eee}</style></head><body><h1>Comparison</h1>",
    );
    // Variants by name across experiments: one row per variant name, one column per experiment.
    let mut names: Vec<String> = Vec::new();
    for e in &experiments {
        for v in &e.variants {
            if !names.contains(&v.name) {
                names.push(v.name.clone());
            }
        }
    }
    s.push_str(
        "<h2>Best validation Dice (mean ± sd over seeds)</h2><table><thead><tr><th>variant</th>",
    );
    for e in &experiments {
        let link = relative(&e.dir.join("index.html"), out);
        let _ = write!(
            s,
            "<th><a href=\"{}\">{}</a></th>",
            esc(&link.to_string_lossy()),
            esc(&e.manifest.name)
        );
    }
    s.push_str("</tr></thead><tbody>");
    for name in &names {
        let _ = write!(s, "<tr><td>{}</td>", esc(name));
        for e in &experiments {
            let cell = e
                .variants
                .iter()
                .find(|v| &v.name == name)
                .map(|v| summary::variant_row(v).best())
                .unwrap_or_else(|| "—".into());
            let _ = write!(s, "<td class=\"num\">{}</td>", esc(&cell));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    for e in &experiments {
        let dice = relative(&e.dir.join("dice.png"), out);
        let _ = write!(
            s,
            "<h2>{}</h2><p>{}</p>",
            esc(&e.manifest.name),
            esc(&e.manifest.description)
        );
        for effect in summary::effects(e) {
            let _ = write!(s, "<p>{}</p>", esc(&summary::verdict(&effect)));
        }
        if e.dir.join("dice.png").exists() {
            let _ = write!(
                s,
                "<img src=\"{}\" alt=\"validation Dice\">",
                esc(&dice.to_string_lossy())
            );
        }
    }
    s.push_str("</body></html>\n");
    let path = out.join("index.html");
    write_atomic(&path, s.as_bytes())?;
    Ok(path)
}
