//! Reports, rebuilt from what a run left on disk (metrics, manifests, prediction snapshots) —
//! never from a model. Each output format is one renderer in its own file behind [`Renderer`].

pub mod augment_preview;
pub mod compare;
pub mod diff;
pub mod effects;
pub mod gifs;
pub mod heatmap;
pub mod html;
pub mod interactions;
pub mod json;
pub mod live;
pub mod load;
pub mod markdown;
pub mod overlay;
pub mod plots;
pub mod serve;
pub mod simulate;
pub mod stats;
pub mod summary;
pub mod verdicts;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use rayon::prelude::*;

pub(crate) use load::ExperimentData;

/// One output format.
pub(crate) trait Renderer: Sync {
    /// Writes this renderer's files for the experiment; returns their paths.
    fn render(&self, experiment: &ExperimentData) -> Result<Vec<PathBuf>>;
}

/// The picture renderers: independent of each other, so they run in parallel.
fn picture_renderers() -> Vec<Box<dyn Renderer>> {
    vec![
        Box::new(plots::PlotRenderer),
        Box::new(overlay::OverlayRenderer),
        Box::new(gifs::GifRenderer),
        Box::new(heatmap::HeatmapRenderer),
    ]
}

/// The page renderers: they run after the pictures, whose files they link to.
fn page_renderers() -> Vec<Box<dyn Renderer>> {
    vec![
        Box::new(html::HtmlRenderer),
        Box::new(markdown::MarkdownRenderer),
        Box::new(json::JsonRenderer),
    ]
}

/// Merges the runs' files into the study-wide tables, then rebuilds every picture and page.
pub fn render_experiment(dir: &Path) -> Result<Vec<PathBuf>> {
    let (manifest, runs) = crate::track::merge::merge(dir)?;
    render_merged(dir, manifest, runs)
}

/// [`render_experiment`], unless another process is merging the study and does not finish
/// within `limit`: then `None`, nothing rendered.
pub(crate) fn render_experiment_unless_busy(
    dir: &Path,
    limit: Duration,
) -> Result<Option<Vec<PathBuf>>> {
    match crate::track::merge::merge_unless_busy(dir, limit)? {
        Some((manifest, runs)) => render_merged(dir, manifest, runs).map(Some),
        None => Ok(None),
    }
}

fn render_merged(
    dir: &Path,
    manifest: crate::track::ExperimentManifest,
    runs: Vec<crate::track::merge::StoredRun>,
) -> Result<Vec<PathBuf>> {
    let experiment = ExperimentData::from_stored(dir, manifest, runs);
    let mut written: Vec<PathBuf> = picture_renderers()
        .par_iter()
        .map(|r| r.render(&experiment))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    for r in page_renderers() {
        written.extend(r.render(&experiment)?);
    }
    Ok(written)
}

/// The cheap part of [`render_experiment`], for the live page: the tables, curves, heat maps
/// and pages, without the overlay grids and GIFs (rebuilt when a run ends). `None` when
/// another process is merging the study: the live page never waits for one.
pub fn render_tables_and_curves(dir: &Path) -> Result<Option<Vec<PathBuf>>> {
    let Some((manifest, runs)) = crate::track::merge::merge_unless_busy(dir, Duration::ZERO)?
    else {
        return Ok(None);
    };
    let experiment = ExperimentData::from_stored(dir, manifest, runs);
    let mut written = plots::PlotRenderer.render(&experiment)?;
    written.extend(heatmap::HeatmapRenderer.render(&experiment)?);
    for r in page_renderers() {
        written.extend(r.render(&experiment)?);
    }
    Ok(Some(written))
}

/// Escapes text for a Markdown table cell.
pub(crate) fn markdown_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' | '\\' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(markdown_escape("a|b<i>"), "a\\|b\\<i\\>");
    }
}
