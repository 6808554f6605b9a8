//! `index.html`: one static, self-contained page (inline CSS and a few lines of inline script
//! for sorting; images by relative path) that opens from disk in any browser.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;

use super::Renderer;
use super::html_escape as esc;
use super::load::ExperimentData;
use super::summary::{self, VariantRow, fmt_effect, verdict};
use crate::track::write_atomic;

pub struct HtmlRenderer;

const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} .desc{color:#555;margin-top:0}
table{border-collapse:collapse;margin:1rem 0;font-size:.92rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f4f4} th.sortable{cursor:pointer} th.sortable:after{content:" ⇅";color:#aaa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:.05rem .45rem;border-radius:.6rem;font-size:.8rem;color:#fff}
.completed{background:#2e7d32}.diverged{background:#e65100}.failed{background:#c62828}.interrupted{background:#6d4c41}.running{background:#1565c0}
img{max-width:100%;border:1px solid #eee} .pair{display:flex;flex-wrap:wrap;gap:1rem} .pair img{max-width:48%}
section.variant{border-top:2px solid #eee;margin-top:2rem;padding-top:.5rem}
.note{color:#a33;font-size:.85rem}
"#;

const SORT_SCRIPT: &str = r#"
document.querySelectorAll("table.sortable").forEach(function(t){
  t.querySelectorAll("th.sortable").forEach(function(th,i){
    th.addEventListener("click",function(){
      var rows=Array.from(t.tBodies[0].rows), asc=th.dataset.asc!=="1"; th.dataset.asc=asc?"1":"0";
      var idx=Array.from(th.parentNode.children).indexOf(th);
      rows.sort(function(a,b){
        var x=a.cells[idx].dataset.v||a.cells[idx].textContent, y=b.cells[idx].dataset.v||b.cells[idx].textContent;
        var nx=parseFloat(x), ny=parseFloat(y);
        var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);
        return asc?c:-c;});
      rows.forEach(function(r){t.tBodies[0].appendChild(r);});
    });
  });
});
"#;

fn badge(status: &str) -> String {
    format!(r#"<span class="badge {status}">{status}</span>"#)
}

fn variant_table(rows: &[VariantRow], axes: &[String]) -> String {
    let mut s =
        String::from("<table class=\"sortable\"><thead><tr><th class=\"sortable\">variant</th>");
    for a in axes {
        let _ = write!(s, "<th class=\"sortable\">{}</th>", esc(a));
    }
    s.push_str(
        "<th class=\"sortable\">status</th><th class=\"sortable\">seeds</th>\
         <th class=\"sortable\">best val Dice</th><th class=\"sortable\">final val Dice</th>\
         <th class=\"sortable\">best epoch</th><th class=\"sortable\">epochs</th>\
         <th class=\"sortable\">parameters</th><th class=\"sortable\">train img/s</th>\
         <th class=\"sortable\">time (s)</th></tr></thead><tbody>",
    );
    for r in rows {
        let _ = write!(
            s,
            "<tr><td><a href=\"#v-{}\">{}</a></td>",
            esc(&r.slug),
            esc(&r.name)
        );
        for a in axes {
            let level = r.level(a);
            let _ = write!(s, "<td>{}</td>", esc(level));
        }
        let _ = write!(
            s,
            "<td data-v=\"{status}\">{badge}</td><td class=\"num\">{seeds}</td>\
             <td class=\"num\" data-v=\"{bm}\">{best}</td><td class=\"num\">{last}</td>\
             <td class=\"num\">{be}</td><td class=\"num\">{epochs}</td><td class=\"num\">{params}</td>\
             <td class=\"num\">{speed}</td><td class=\"num\">{secs:.1}</td></tr>",
            status = r.status.as_str(),
            badge = badge(r.status.as_str()),
            seeds = r.seeds,
            bm = r.best_mean(),
            best = r.best(),
            last = r.last(),
            be = r
                .best_epoch
                .map(|e| format!("{e:.1}"))
                .unwrap_or("—".into()),
            epochs = r.epochs,
            params = r.parameters,
            speed = r
                .images_per_sec
                .map(|v| format!("{v:.1}"))
                .unwrap_or("—".into()),
            secs = r.train_seconds,
        );
    }
    s.push_str("</tbody></table>");
    s
}

pub fn render_page(exp: &ExperimentData) -> String {
    let rows = summary::rows(exp);
    let effects = summary::effects(exp);
    let m = &exp.manifest;
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{name} — unet-lab report</title><style>{STYLE}</style></head><body>\
         <h1>{name}</h1><p class=\"desc\">{desc}</p>",
        name = esc(&m.name),
        desc = esc(&m.description),
    );
    let _ = write!(
        s,
        "<p>{} variant(s), seeds {:?}, from <code>{}</code>. Metrics: <code>metrics.parquet</code>, \
         <code>steps.parquet</code>.</p>",
        m.variants.len(),
        m.seeds,
        esc(&m.source_file)
    );
    if let Some(info) = exp
        .variants
        .iter()
        .flat_map(|v| v.runs.iter())
        .find_map(|r| r.record.dataset.as_ref())
    {
        let _ = write!(
            s,
            "<p>Data: {} — {} images of {}×{} from {} subjects, {:.0}% with empty masks; \
             {} training / {} validation images (validation subjects {:?}).</p>",
            esc(&info.source),
            info.images,
            info.height,
            info.width,
            info.subjects,
            100.0 * info.empty_mask_share,
            info.train_images,
            info.val_images,
            info.val_subjects
        );
    }
    s.push_str("<h2>Variants</h2><p>Dice: mean over validation images, an empty prediction of an empty mask scoring 1 (the Kaggle rule); mean ± sd over seeds. Click a column to sort.</p>");
    s.push_str(&variant_table(&rows, &m.axes));
    for r in rows.iter().filter(|r| !r.notes.is_empty()) {
        for n in &r.notes {
            let _ = write!(s, "<p class=\"note\">{}: {}</p>", esc(&r.name), esc(n));
        }
    }
    s.push_str("<h2>All variants</h2><div class=\"pair\"><img src=\"loss.png\" alt=\"loss of every variant\"><img src=\"dice.png\" alt=\"validation Dice of every variant\"></div>");
    if !effects.is_empty() {
        s.push_str("<h2>Main effects</h2><p>Difference in best validation Dice against the first level of each grid axis, averaged over the other axes; in brackets the 95% interval across seeds (t distribution).</p>");
        for e in &effects {
            let _ = write!(
                s,
                "<h3>{}</h3><p>{}</p><table><thead><tr><th>level</th><th>mean best Dice</th><th>difference vs \"{}\" [95% CI]</th><th>seeds</th></tr></thead><tbody>",
                esc(&e.axis),
                esc(&verdict(e)),
                esc(&e.reference)
            );
            for l in &e.levels {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td class=\"num\">{:.4}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                    esc(&l.level),
                    l.mean_dice,
                    if l.level == e.reference {
                        "reference".to_string()
                    } else {
                        fmt_effect(l.difference, l.ci95)
                    },
                    l.seeds
                );
            }
            s.push_str("</tbody></table>");
        }
    }
    for (v, r) in exp.variants.iter().zip(&rows) {
        let dir = esc(&v.slug);
        let _ = write!(
            s,
            "<section class=\"variant\" id=\"v-{dir}\"><h2>{} {}</h2>",
            esc(&v.name),
            badge(r.status.as_str())
        );
        if !v.levels.is_empty() {
            let levels: Vec<String> = v
                .levels
                .iter()
                .map(|(a, l)| format!("{} = {}", esc(a), esc(l)))
                .collect();
            let _ = write!(s, "<p>{}</p>", levels.join(", "));
        }
        let _ = write!(
            s,
            "<p>Best validation Dice {}; final {}.</p>",
            r.best(),
            r.last()
        );
        let exists = |name: &str| v.dir.join(name).exists();
        let mut imgs = String::new();
        for (file, alt) in [("loss.png", "loss"), ("metrics.png", "validation metrics")] {
            if exists(file) {
                let _ = write!(imgs, "<img src=\"{dir}/{file}\" alt=\"{alt}\">");
            }
        }
        if !imgs.is_empty() {
            let _ = write!(s, "<div class=\"pair\">{imgs}</div>");
        }
        for (file, title) in [
            (
                "overlay.png",
                "Best epoch: image | truth | prediction | overlays",
            ),
            ("progress.gif", "Prediction epoch by epoch"),
            ("results.gif", "Results, sample by sample"),
        ] {
            if exists(file) {
                let _ = write!(
                    s,
                    "<h3>{title}</h3><img src=\"{dir}/{file}\" alt=\"{title}\">"
                );
            }
        }
        s.push_str("</section>");
    }
    let _ = writeln!(s, "<script>{SORT_SCRIPT}</script></body></html>");
    s
}

impl Renderer for HtmlRenderer {
    fn name(&self) -> &'static str {
        "html"
    }

    fn render(&self, exp: &ExperimentData) -> Result<Vec<PathBuf>> {
        let path = exp.dir.join("index.html");
        write_atomic(&path, render_page(exp).as_bytes())?;
        Ok(vec![path])
    }
}
