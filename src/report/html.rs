//! `index.html`: one static, self-contained page (inline CSS and a few lines of inline script
//! for sorting; images by relative path) that opens from disk in any browser.
//!
//! The markup is maud templates, one small function per part of the page; maud escapes every
//! value it interpolates, so nothing from an experiment file reaches the page as markup.

use crate::track::supersede::SupersededRun;
use std::path::PathBuf;

use anyhow::Result;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::Renderer;
use super::effects::AxisEffect;
use super::interactions::Interaction;
use super::live::{Live, RELOAD_SECONDS, fmt_duration, live_status};
use super::load::{ExperimentData, VariantData};
use super::stats::fmt_mean_sd;
use super::summary::{self, VariantRow, fmt_effect, verdict};
use super::verdicts::{self, Verdicts};
use crate::track::write_atomic;

pub(crate) struct HtmlRenderer;

/// The one stylesheet of the report pages (this one and the comparison), inlined into each so
/// that a page stays a single self-contained file.
const STYLE: &str = include_str!("style.css");

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

/// The columns of the variant table after the variant name and the grid axes.
const COLUMNS: [&str; 9] = [
    "status",
    "seeds",
    "best val Dice",
    "final val Dice",
    "best epoch",
    "epochs",
    "parameters",
    "train img/s",
    "time (s)",
];

/// A variant's still pictures, shown side by side: (file, alt text).
const PICTURES: [(&str, &str); 2] = [("loss.png", "loss"), ("metrics.png", "validation metrics")];

/// A variant's larger pictures, one under a heading each: (file, title).
const FIGURES: [(&str, &str); 3] = [
    (
        "overlay.png",
        "Best epoch: image | truth | prediction | overlays",
    ),
    ("progress.gif", "Prediction epoch by epoch"),
    ("results.gif", "Results, sample by sample"),
];

/// A whole page: the doctype, a head with `title` and the stylesheet, and `body`.
pub(crate) fn page_shell(title: &str, body: Markup) -> String {
    page_reloading(title, None, body)
}

/// [`page_shell`], reloading itself every `reload` seconds when given (the live page).
fn page_reloading(title: &str, reload: Option<u32>, body: Markup) -> String {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(seconds) = reload { meta http-equiv="refresh" content=(seconds); }
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    };
    page.into_string() + "\n"
}

fn badge(status: &str) -> Markup {
    html! { span class={ "badge " (status) } { (status) } }
}

/// "1.5", or "—" for no value.
fn one_decimal(value: Option<f64>) -> String {
    value.map_or_else(|| "—".into(), |v| format!("{v:.1}"))
}

/// Name, description, where the metrics are, and the data the runs trained on.
fn overview(exp: &ExperimentData) -> Markup {
    let m = &exp.manifest;
    let dataset = exp
        .variants
        .iter()
        .flat_map(|v| v.runs.iter())
        .find_map(|r| r.record.dataset.as_ref());
    html! {
        h1 { (m.name) }
        p.desc { (m.description) }
        p {
            (m.variants.len()) " variant(s), seeds " (format!("{:?}", m.seeds)) ", from "
            code { (m.source_file) } ". Metrics: " code { "metrics.parquet" } ", "
            code { "steps.parquet" } "."
        }
        @if let Some(place) = super::summary::trained_on(exp) { p { (place) } }
        @if let Some(info) = dataset {
            p {
                "Data: " (info.source) " — " (info.images) " images of " (info.height) "×"
                (info.width) " from " (info.subjects) " subjects, "
                (format!("{:.0}", 100.0 * info.empty_mask_share)) "% with empty masks; "
                (info.train_images) " training / " (info.val_images)
                " validation images (validation subjects " (format!("{:?}", info.val_subjects))
                ")"
                @if info.test_images > 0 {
                    "; " (info.test_images) " test images (test subjects "
                    (format!("{:?}", info.test_subjects)) "), scored once with the checkpoint                     chosen on validation"
                }
                "."
            }
        }
    }
}

fn variant_row(r: &VariantRow, axes: &[String], test: bool) -> Markup {
    html! {
        tr {
            td {
                a href={ "#v-" (r.slug) } { (r.name) }
                @if r.learned_nothing { " " span.badge.failed { "learned nothing" } }
            }
            @for a in axes { td { (r.level(a)) } }
            td data-v=(r.status.as_str()) {
                span class={ "badge " (r.status.as_str()) } { (r.status_counts) }
            }
            td.num { (r.seeds) }
            td.num data-v=(r.best_mean()) { (r.best()) }
            td.num { (r.last()) }
            @if test { td.num data-v=(r.test_mean()) { (r.test()) } }
            td.num { (r.best_epoch()) }
            td.num { (r.epochs) }
            td.num { (r.parameters) }
            td.num { (one_decimal(r.images_per_sec)) }
            td.num { (format!("{:.1}", r.train_seconds)) }
        }
    }
}

/// One row per variant, every column sortable.
fn variant_table(rows: &[VariantRow], axes: &[String], test: bool) -> Markup {
    html! {
        table.sortable {
            thead {
                tr {
                    th.sortable { "variant" }
                    @for a in axes { th.sortable { (a) } }
                    @for c in COLUMNS {
                        th.sortable { (c) }
                        @if test && c == "final val Dice" { th.sortable { "test Dice" } }
                    }
                }
            }
            tbody {
                @for r in rows { (variant_row(r, axes, test)) }
            }
        }
    }
}

/// The table, then why any run diverged or failed.
fn variants(rows: &[VariantRow], axes: &[String], test: bool, all_empty: Option<f64>) -> Markup {
    html! {
        h2 { "Variants" }
        p {
            "Dice: mean over validation images, an empty prediction of an empty mask scoring 1 \
             (the Kaggle rule); mean ± sd over seeds. Click a column to sort."
            @if test {
                " Test Dice: the held-out test subjects, scored once with the checkpoint of the \
                 best validation epoch; best validation Dice picks its epoch on the images it \
                 scores, so it is optimistic."
            }
        }
        @if let Some(note) = super::summary::cross_validation_note(rows) { p { (note) } }
        @if let Some(floor) = all_empty {
            p {
                "All-empty baseline (every mask predicted empty) on the "
                (if test { "test split" } else { "validation images" }) ": "
                (format!("{floor:.4}")) " — the share of empty masks there."
            }
        }
        (variant_table(rows, axes, test))
        (score_breakdown(rows, test))
        (tuning(rows))
        @for r in rows {
            @for n in &r.notes { p.note { (r.name) ": " (n) } }
        }
    }
}

/// "0.500", or "—" for no value.
fn share(value: Option<f64>) -> String {
    value.map_or_else(|| "—".into(), |v| format!("{v:.3}"))
}

/// What each variant's score is made of: presence errors against shape errors.
fn score_breakdown(rows: &[VariantRow], test: bool) -> Markup {
    html! {
        @if rows.iter().any(|r| r.found.is_some() || r.empty_correct.is_some()) {
            h3 { "What the score is made of" }
            p {
                "On the " (if test { "test split" } else { "best validation epoch" })
                @if rows.iter().any(|r| r.tuning.is_some()) {
                    " (with the tuned post-processing for tuned variants)"
                }
                ", mean over seeds. With E empty and P non-empty images, score = (E · empty \
                 predicted empty + P · nerves found · Dice on those found) / (E + P): the first \
                 two columns are presence errors, the third is shape."
            }
            table.sortable {
                thead {
                    tr {
                        th.sortable { "variant" }
                        th.sortable { "empty predicted empty" }
                        th.sortable { "nerves found" }
                        th.sortable { "Dice on those found" }
                    }
                }
                tbody {
                    @for r in rows {
                        tr {
                            td { (r.name) }
                            td.num { (share(r.empty_correct)) }
                            td.num { (share(r.found)) }
                            td.num { (share(r.dice_found)) }
                        }
                    }
                }
            }
        }
    }
}

/// The post-processing tuning chose, and what it changed.
fn tuning(rows: &[VariantRow]) -> Markup {
    html! {
        @if rows.iter().any(|r| r.tuning.is_some()) {
            h3 { "Tuned post-processing" }
            p { (super::summary::TUNING_NOTE) }
            table.sortable {
                thead { tr { @for h in super::summary::TUNING_HEADS { th.sortable { (h) } } } }
                tbody {
                    @for r in rows {
                        @if let Some(t) = &r.tuning {
                            tr {
                                td { (r.name) }
                                @for c in t.cells() { td.num { (c) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The experiment-wide charts.
fn all_variants() -> Markup {
    html! {
        h2 { "All variants" }
        div.pair {
            img src="loss.png" alt="loss of every variant";
            img src="dice.png" alt="validation Dice of every variant";
        }
    }
}

fn effect_table(e: &AxisEffect) -> Markup {
    html! {
        h3 { (e.axis) }
        p { (verdict(e)) }
        table {
            thead {
                tr {
                    th { "level" }
                    th { "mean " (e.score) }
                    th { "difference vs \"" (e.reference) "\" [95% CI]" }
                    th { "seeds" }
                }
            }
            tbody {
                @for l in &e.levels {
                    tr {
                        td { (l.level) }
                        td.num { (format!("{:.4}", l.mean_dice)) }
                        td.num {
                            @if l.level == e.reference { "reference" }
                            @else { (fmt_effect(l.difference, l.ci95)) }
                        }
                        td.num { (l.seeds) }
                    }
                }
            }
        }
    }
}

/// The answer first: every contrast's verdict, then each variant's failures and scores over
/// all seeds against completed seeds only.
fn verdict_section(v: &Verdicts, rows: &[VariantRow]) -> Markup {
    html! {
        h2 { "Verdicts" }
        p { (v.explanation()) }
        table.verdicts {
            thead { tr { @for h in verdicts::HEADS { th { (h) } } } }
            tbody {
                @for (c, cells) in v.contrasts.iter().zip(v.rows()) {
                    tr class=(format!("verdict-{}", c.verdict.key())) {
                        @for (k, cell) in cells.iter().enumerate() {
                            @if k == 0 { td { (cell) } } @else { td.num { (cell) } }
                        }
                    }
                }
            }
        }
        h3 { "Failures and the completed-seeds view" }
        p { "Every score above counts failed and diverged seeds (intention to treat). Beside it, the "
            "mean over completed seeds only: what the page would say if failures were dropped." }
        table {
            thead { tr { th { "variant" } th { "failed seeds [Wilson 95%]" } th { "all seeds" } th { "completed seeds only" } th { "learned?" } } }
            tbody {
                @for (r, f) in rows.iter().zip(&v.failures) {
                    tr {
                        td { (r.name) }
                        td.num { (f.text()) }
                        td.num { (r.ranking_score()) }
                        td.num { (fmt_mean_sd(&r.completed_scores)) }
                        td { (v.learned_words(&r.name)) }
                    }
                }
            }
        }
    }
}

/// One table per grid axis; nothing without a grid.
fn main_effects(effects: &[AxisEffect]) -> Markup {
    html! {
        @if !effects.is_empty() {
            h2 { "Main effects" }
            p { (summary::effects_intro(effects)) }
            @for e in effects { (effect_table(e)) }
        }
    }
}

/// One two-way table with its sentence, contrasts and heat map.
fn interaction_table(k: usize, t: &Interaction, verdicts: Option<&Verdicts>) -> Markup {
    html! {
        h3 { (t.first) " × " (t.second) }
        p { (t.verdict()) }
        table {
            thead {
                tr {
                    th { (t.first) " \\ " (t.second) }
                    @for l in &t.second_levels { th { (l) } }
                }
            }
            tbody {
                @for (i, level) in t.first_levels.iter().enumerate() {
                    tr {
                        td { (level) }
                        @for c in &t.cells[i] {
                            td.num { (c.as_ref().map_or("—".to_string(), |c| c.text())) }
                        }
                    }
                }
            }
        }
        @if !t.contrasts.is_empty() {
            p { "Interaction contrasts against (\"" (t.first_levels[0]) "\", \"" (t.second_levels[0]) "\"): "
                @for (j, c) in t.contrasts.iter().enumerate() {
                    @if j > 0 { "; " }
                    (c.text())
                }
            }
        }
        @if let Some(line) = verdicts.and_then(|v| v.interaction_line(&t.first, &t.second)) {
            p { (line) }
        }
        img.heatmap src=(super::heatmap::file_name(k)) alt={ (t.first) " × " (t.second) " heat map" };
    }
}

/// One two-way table per pair of grid axes; nothing with fewer than two axes.
fn interactions(all: &[Interaction], verdicts: Option<&Verdicts>) -> Markup {
    html! {
        @if !all.is_empty() {
            h2 { "Interactions" }
            p { (super::interactions::NOTE) }
            @for (k, t) in all.iter().enumerate() { (interaction_table(k, t, verdicts)) }
        }
    }
}

/// A variant's levels, numbers and pictures (those that exist), under its anchor.
fn variant_section(v: &VariantData, r: &VariantRow) -> Markup {
    let exists = |file: &str| v.dir.join(file).exists();
    let pictures: Vec<_> = PICTURES.iter().filter(|(file, _)| exists(file)).collect();
    html! {
        section.variant id={ "v-" (v.slug) } {
            h2 { (v.name) " " (badge(r.status.as_str())) }
            @if !v.levels.is_empty() {
                p {
                    @for (i, (axis, level)) in v.levels.iter().enumerate() {
                        @if i > 0 { ", " }
                        (axis) " = " (level)
                    }
                }
            }
            p { "Best validation Dice " (r.best()) "; final " (r.last()) "." }
            @if !pictures.is_empty() {
                div.pair {
                    @for (file, alt) in pictures { img src={ (v.slug) "/" (file) } alt=(alt); }
                }
            }
            @for (file, title) in FIGURES {
                @if exists(file) {
                    h3 { (title) }
                    img src={ (v.slug) "/" (file) } alt=(title);
                }
            }
        }
    }
}

/// The runs in progress, while the study trains.
fn live_section(live: &Live) -> Markup {
    html! {
        section.live {
            h2 { "Running now" }
            p {
                (live.done) " of " (live.total) " runs done; this page reloads every "
                (RELOAD_SECONDS) " s until no run is in progress."
            }
            table {
                thead { tr { th { "variant" } th { "run" } th { "epoch" } th { "ETA" } th { "worker" } } }
                tbody {
                    @for r in &live.running {
                        tr {
                            td { (r.variant) }
                            td { (r.run.to_string()) }
                            td.num { (r.epoch) " of " (r.epochs) }
                            td.num { (r.eta_seconds.map_or("—".to_string(), fmt_duration)) }
                            td { (r.holder) }
                        }
                    }
                }
            }
        }
    }
}

/// Runs set aside because their config changed or `--fresh` retrained them: kept, listed,
/// deleted only by `unet-lab prune`.
fn superseded_section(runs: &[SupersededRun]) -> Markup {
    html! {
        @if !runs.is_empty() {
            section.superseded {
                h2 { "Superseded runs" }
                p {
                    (runs.len()) " earlier run(s) were set aside (their config changed, or "
                    code { "--fresh" } " trained them again). They are not part of any score "
                    "above; they stay in " code { "superseded/" } " until " code { "unet-lab prune" }
                    " deletes them, and moving one back restores it."
                }
                table {
                    thead { tr { th { "set aside" } th { "variant" } th { "run" } th { "status" } th { "best val Dice" } } }
                    tbody {
                        @for r in runs {
                            tr {
                                td { (r.when) }
                                td { (r.variant) }
                                td { (r.run) }
                                td { (r.status.as_deref().unwrap_or("—")) }
                                td.num { (r.best_dice.map_or("—".to_string(), |d| format!("{d:.4}"))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn render_page(exp: &ExperimentData) -> String {
    let effects = summary::effects(exp);
    let test = summary::has_test_split(exp);
    let live = live_status(exp);
    let verdicts = Verdicts::of(exp);
    let rows = summary::rows_with(exp, verdicts.as_ref());
    let body = html! {
        @if let Some(live) = &live { (live_section(live)) }
        (overview(exp))
        @if let Some(v) = &verdicts { (verdict_section(v, &rows)) }
        (variants(&rows, &exp.manifest.axes, test, summary::all_empty_score(exp)))
        (all_variants())
        (main_effects(&effects))
        (interactions(&summary::interactions(exp), verdicts.as_ref()))
        @for (v, r) in exp.variants.iter().zip(&rows) { (variant_section(v, r)) }
        (superseded_section(&crate::track::supersede::list(&exp.dir)))
        script { (PreEscaped(SORT_SCRIPT)) }
    };
    page_reloading(
        &format!("{} — unet-lab report", exp.manifest.name),
        live.is_some().then_some(RELOAD_SECONDS),
        body,
    )
}

impl Renderer for HtmlRenderer {
    fn render(&self, exp: &ExperimentData) -> Result<Vec<PathBuf>> {
        let path = exp.dir.join("index.html");
        write_atomic(&path, render_page(exp).as_bytes())?;
        Ok(vec![path])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::load::RunData;
    use crate::track::RunStatus;
    use crate::track::manifest::{ExperimentManifest, RunRecord};

    /// An experiment of one failed variant, its text chosen to break naive markup.
    fn hostile(name: &str, slug: &str, description: &str, message: &str) -> ExperimentData {
        let record = RunRecord {
            status: RunStatus::Failed,
            message: Some(message.into()),
            ..RunRecord::new(0, "", String::new(), String::new())
        };
        let dir = PathBuf::from("/nonexistent/unet-lab-html-test");
        ExperimentData {
            manifest: ExperimentManifest {
                name: name.into(),
                description: description.into(),
                seeds: vec![0],
                axes: Vec::new(),
                variants: vec![(name.into(), slug.into())],
                source_file: "<file>.toml".into(),
                layout: None,
                decide: None,
                track: None,
            },
            variants: vec![VariantData {
                name: name.into(),
                slug: slug.into(),
                dir: dir.join(slug),
                levels: vec![("train.loss".into(), "<i>mse</i>".into())],
                manifest: None,
                runs: vec![RunData {
                    seed: 0,
                    fold: None,
                    record,
                    train: Vec::new(),
                    val: Vec::new(),
                    steps: Vec::new(),
                    snapshots: None,
                }],
            }],
            dir,
        }
    }

    #[test]
    fn hostile_names_and_notes_are_escaped() {
        let name = "<script>alert(1)</script>";
        let page = render_page(&hostile(name, "a\"b", "say \"&<>\"", "\"&<>"));
        assert!(!page.contains(name), "raw variant name on the page");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("<title>&lt;script&gt;alert(1)&lt;/script&gt; — unet-lab report"));
        // The note (from the run's message), the description, a level and the source file.
        assert!(page.contains("seed 0: failed — &quot;&amp;&lt;&gt;</p>"));
        assert!(page.contains("say &quot;&amp;&lt;&gt;&quot;"));
        assert!(page.contains("train.loss = &lt;i&gt;mse&lt;/i&gt;"));
        assert!(page.contains("<code>&lt;file&gt;.toml</code>"));
        assert!(!page.contains("\"&<>") && !page.contains("<i>"));
        // Attribute values too: the slug in the link and the anchor.
        assert!(page.contains(r##"href="#v-a&quot;b""##));
        assert!(page.contains(r#"id="v-a&quot;b""#));
        // The only script is the page's own; the stylesheet is the shared file, verbatim.
        assert_eq!(page.matches("<script>").count(), 1);
        assert!(page.contains(&format!("<style>{STYLE}</style>")));
        assert!(page.contains(r#"<span class="badge failed">failed</span>"#));
    }

    /// A 3 × 2 grid (loss × optimizer, 3 seeds) whose metrics rows are made by hand: the
    /// optimizer matters only with cross-entropy.
    pub(crate) fn grid() -> ExperimentData {
        let dir = PathBuf::from("/nonexistent/unet-lab-html-grid");
        let mut variants = Vec::new();
        for (loss, adam, sgd) in [("mse", 0.60, 0.62), ("bce", 0.65, 0.66), ("ce", 0.70, 0.48)] {
            for (opt, dice) in [("adam", adam), ("sgd", sgd)] {
                let name = format!("{loss}-{opt}");
                let runs = (0..3u64)
                    .map(|seed| {
                        let noise = [0.0, 0.01, -0.01][seed as usize];
                        let row = crate::track::EpochRow::val_for_test(&name, seed, dice + noise);
                        RunData {
                            seed,
                            fold: None,
                            record: RunRecord {
                                status: RunStatus::Completed,
                                ..RunRecord::new(seed, "", String::new(), String::new())
                            },
                            train: Vec::new(),
                            val: vec![row],
                            steps: Vec::new(),
                            snapshots: None,
                        }
                    })
                    .collect();
                variants.push(VariantData {
                    slug: name.clone(),
                    dir: dir.join(&name),
                    levels: vec![
                        ("train.loss".into(), loss.into()),
                        ("train.optimizer".into(), opt.into()),
                    ],
                    manifest: None,
                    runs,
                    name,
                });
            }
        }
        ExperimentData {
            manifest: ExperimentManifest {
                name: "grid".into(),
                description: String::new(),
                seeds: vec![0, 1, 2],
                axes: vec!["train.loss".into(), "train.optimizer".into()],
                variants: variants
                    .iter()
                    .map(|v| (v.name.clone(), v.slug.clone()))
                    .collect(),
                source_file: "grid.toml".into(),
                layout: None,
                decide: None,
                track: None,
            },
            variants,
            dir,
        }
    }

    #[test]
    fn the_page_states_an_interaction_the_main_effects_hide() {
        let page = render_page(&grid());
        // The optimizer's main effect averages +0.02, +0.01 and −0.22 ...
        assert!(page.contains("<h3>train.optimizer</h3>"));
        // ... the two-way table and its sentence show where it matters.
        assert!(page.contains("<h2>Interactions</h2>"));
        assert!(page.contains(
            "train.loss × train.optimizer: the effect of train.loss depends on train.optimizer — \
             &quot;ce&quot; instead of &quot;mse&quot; changes best Dice by -0.1400 with \
             train.optimizer = &quot;sgd&quot; but by +0.1000 with train.optimizer = &quot;adam&quot;"
        ));
        // ce × sgd: seeds 0.48, 0.49, 0.47 → 0.48 ± t(2) · 0.01 / √3.
        let half = crate::report::stats::t_975(2) * 0.01 / 3f64.sqrt();
        let cell = format!("{:.4} [{:.4}, {:.4}]", 0.48, 0.48 - half, 0.48 + half);
        assert!(
            page.contains(&format!("<td class=\"num\">{cell}</td>")),
            "{cell}"
        );
        assert!(page.contains(r#"src="interaction-0.png""#));
    }
}
