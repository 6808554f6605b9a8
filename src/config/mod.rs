//! Experiment files: TOML → validated, expanded variants.
//!
//! A file has a base configuration (`[data]`, `[model]`, `[train]`, `[report]`, `[augment]`),
//! an optional `[grid]` whose axes are crossed (cartesian product), and optional explicit
//! `[[variant]]` entries, each a name plus overrides of the base. Every variant is decoded from
//! the base tree with its overrides applied, so an error in an override points at the override.

mod decide;
mod decode;
pub mod geometry;
mod overrides;
pub mod schema;
mod track;
pub mod tree;
pub mod types;

use std::path::Path;

use serde::Serialize;

use crate::util::hash::fnv1a64;

pub use decide::DecideRules;
pub use overrides::{Edit, EditFlag, split_assignment};
pub use track::{TrackSettings, check_tracking_uri};
pub(crate) use tree::ConfigError;
pub use types::*;

use schema::SectionReader;
use tree::{Key, Node, Source, Table, Value};

/// A validated experiment: what `run` trains.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// Display name (`name` in the file, or the file stem).
    pub name: String,
    /// Directory-safe form of `name`.
    pub slug: String,
    pub description: String,
    /// Every seed a variant may use; a sequential study's first look uses the first
    /// `decide.first_seeds`.
    pub seeds: Vec<u64>,
    /// Grid axes in file order (`train.loss`), for main-effect tables.
    pub axes: Vec<String>,
    pub variants: Vec<Variant>,
    /// How verdicts are reached (`[decide]`, `reference`, a seed plan).
    pub decide: DecideRules,
    /// The file's base settings, before any grid level or variant override.
    pub base: RunConfig,
    /// `[track]`: where results are logged besides the study's directory.
    pub track: TrackSettings,
}

/// One training of a study: a variant with one seed (and, cross-validated, one fold). Tasks
/// are numbered in file order — variants as listed, each with its seeds in order, each seed
/// with its folds in order — so an index means the same run on every host and every day the
/// file is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Task {
    pub index: usize,
    /// Index into [`Experiment::variants`].
    pub variant: usize,
    pub seed: u64,
    /// The cross-validation fold (`data.folds`), none for a plain study.
    pub fold: Option<usize>,
}

/// One variant: a name and a fully resolved configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Variant {
    /// Display name; may hold any characters, so it is escaped wherever it is shown.
    pub name: String,
    /// Directory-safe, unique form of `name`.
    pub slug: String,
    /// Grid axis → label of this variant's level on it (empty for explicit variants).
    pub levels: Vec<(String, String)>,
    pub config: RunConfig,
}

impl Variant {
    /// The folds this variant trains: all of `data.folds`, the one `data.fold` names, or none
    /// (`[None]`) without cross-validation.
    pub fn folds(&self) -> Vec<Option<usize>> {
        match (self.config.data.folds, self.config.data.fold) {
            (Some(_), Some(k)) => vec![Some(k)],
            (Some(n), None) => (0..n).map(Some).collect(),
            (None, _) => vec![None],
        }
    }

    /// This variant as one of its fold tasks trains it (`data.fold` set); a plain variant is
    /// returned unchanged, so its config hash is the one it always had.
    fn for_fold(&self, fold: Option<usize>) -> Variant {
        let mut v = self.clone();
        if fold.is_some() {
            v.config.data.fold = fold;
        }
        v
    }

    /// A stable hash of everything that determines this variant's training for `seed`:
    /// a finished run with the same hash is not trained again.
    pub fn config_hash(&self, seed: u64) -> String {
        let json = serde_json::to_string(&(&self.config, seed)).expect("config serializes");
        format!("{:016x}", fnv1a64(json.as_bytes()))
    }
}

/// A grid axis: its key, where it was written, and its (label, value) levels.
type AxisLevels = (String, Key, Vec<(String, Node)>);

/// Longest accepted name (experiment or variant), in characters.
const MAX_NAME_CHARS: usize = 100;

/// Turns a name into a directory name that cannot leave its parent: only ASCII letters, digits,
/// `-`, `_` and `.`; no leading dot; never empty.
pub fn slugify(name: &str) -> String {
    let mut slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    while slug.starts_with('.') {
        slug.replace_range(0..1, "_");
    }
    if slug.chars().all(|c| c == '_') {
        slug = format!("v{slug}");
    }
    slug.chars().take(MAX_NAME_CHARS).collect()
}

/// Reads, validates and expands an experiment file.
pub fn load(path: &Path) -> Result<Experiment, ConfigError> {
    load_with_source(path, &[]).map(|(experiment, _)| experiment)
}

/// [`load`] with the command line's overrides made (`--set`, `--grid`, `--epochs`).
pub fn load_edited(path: &Path, edits: &[Edit]) -> Result<Experiment, ConfigError> {
    load_with_source(path, edits).map(|(experiment, _)| experiment)
}

/// [`load_edited`], returning the text too: a study plans with the very bytes it parsed —
/// the file's, or the edited text when there are overrides.
pub(crate) fn load_with_source(
    path: &Path,
    edits: &[Edit],
) -> Result<(Experiment, Vec<u8>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        position: None,
        key: None,
        message: format!("cannot read the file: {e}"),
        source_line: None,
    })?;
    // The file is checked as written first, so that an error left is the overrides'.
    let experiment = parse_str(path, text.clone())?;
    if edits.is_empty() {
        return Ok((experiment, text.into_bytes()));
    }
    let edited = overrides::apply(path, &text, &experiment.name, edits)?;
    let experiment = parse_str(path, edited.clone()).map_err(|e| overrides::blame(e, edits))?;
    Ok((experiment, edited.into_bytes()))
}

/// Validates and expands experiment text; `path` names the file in errors.
pub fn parse_str(path: &Path, text: String) -> Result<Experiment, ConfigError> {
    let source = Source::new(path, text);
    let root = read_document(&source)?;
    let header = read_header(&source, path, &root)?;
    let base = base_sections(&root);
    let (axes, mut variants) = match header.grid {
        Some(grid) => expand_grid(&source, &base, grid)?,
        None => (Vec::new(), Vec::new()),
    };
    if let Some(node) = header.explicit {
        add_explicit_variants(&source, &base, node, &mut variants)?;
    }
    if variants.is_empty() {
        variants.push(Variant {
            name: "base".into(),
            slug: "base".into(),
            levels: Vec::new(),
            config: RunConfig::decode(&source, &base)?,
        });
    }
    make_slugs_unique(&mut variants);
    check_task_count(&source, &header, &variants)?;
    check_reference(&source, &header, &axes, &variants)?;
    Ok(Experiment {
        base: RunConfig::decode(&source, &base)?,
        decide: header.decide,
        track: header.track,
        slug: slugify(&header.name),
        name: header.name,
        description: header.description,
        seeds: header.seeds,
        axes,
        variants,
    })
}

/// The top level of a file, read and checked; `grid` and `explicit` are expanded later.
struct Header<'a> {
    name: String,
    description: String,
    seeds: Vec<u64>,
    decide: DecideRules,
    track: TrackSettings,
    /// Where `reference` was written.
    reference_node: Option<&'a Node>,
    /// Where `seeds` and `[grid]` were written (for the task-count error).
    seeds_node: Option<&'a Node>,
    grid_key: Option<&'a Key>,
    grid: Option<&'a Table>,
    explicit: Option<&'a Node>,
}

/// The TOML tree of the text; a file without settings is an error.
fn read_document(source: &Source) -> Result<Table, ConfigError> {
    let root = tree::parse(source)?;
    if root.entries.is_empty() {
        return Err(source.error(
            None,
            None,
            "the file has no settings (it is empty or only comments); an experiment needs at least \
             a [train] or [model] section (see experiments/mse_adam.toml)",
        ));
    }
    Ok(root)
}

/// The experiment header: `name` (default: the file stem), `description`, `seeds`, and where
/// `[grid]` and `[[variant]]` are; any other top-level key but the sections is an error.
fn read_header<'a>(
    source: &'a Source,
    path: &Path,
    root: &'a Table,
) -> Result<Header<'a>, ConfigError> {
    let mut top = SectionReader::new(source, "", root, None);
    top.allow(&SECTIONS);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "experiment".into());
    let name_node = top.node("name");
    let name = top.string("name")?.unwrap_or(stem);
    check_name(source, name_node.map(|n| &n.span), "name", &name)?;
    let description = top.string("description")?.unwrap_or_default();
    let seeds_node = top.peek("seeds");
    let plan = decide::read_seeds(source, &mut top)?.unwrap_or(decide::SeedPlan {
        seeds: vec![0],
        sequential: None,
    });
    let reference_node = top.node("reference");
    let reference = top.string("reference")?;
    let decide_table = top.table("decide")?;
    let (seeds, decide) = decide::read_decide(source, decide_table, plan, reference)?;
    let track = track::read_track(source, top.table("track")?)?;
    let grid_entry = top.table("grid")?;
    let explicit = top.node("variant");
    top.finish()?;
    Ok(Header {
        name,
        description,
        seeds,
        decide,
        track,
        reference_node,
        seeds_node,
        grid_key: grid_entry.map(|(k, _)| k),
        grid: grid_entry.map(|(_, t)| t),
        explicit,
    })
}

/// The base: the run sections of the file.
fn base_sections(root: &Table) -> Table {
    let mut base = Table::default();
    for (key, node) in &root.entries {
        if SECTIONS.contains(&key.name.as_str()) {
            base.entries.push((key.clone(), node.clone()));
        }
    }
    base
}

/// The grid's axes (in file order) and its variants: every combination of levels, first axis
/// varying slowest, each decoded from the base with its levels set.
fn expand_grid(
    source: &Source,
    base: &Table,
    grid: &Table,
) -> Result<(Vec<String>, Vec<Variant>), ConfigError> {
    let levels_per_axis = grid
        .entries
        .iter()
        .map(|(key, node)| grid_axis(source, key, node))
        .collect::<Result<Vec<AxisLevels>, _>>()?;
    let axes = levels_per_axis.iter().map(|(a, _, _)| a.clone()).collect();
    let variants = grid_combinations(source, &levels_per_axis)?
        .iter()
        .map(|combo| grid_variant(source, base, &levels_per_axis, combo))
        .collect::<Result<Vec<Variant>, _>>()?;
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = variants.iter().find(|v| !seen.insert(v.name.as_str())) {
        let span = levels_per_axis.first().map(|(_, key, _)| &key.span);
        return Err(source.error(
            span,
            Some("grid"),
            format!(
                "two combinations of levels are both named \"{}\" (labels are joined with \"-\"); \
                 label the levels so that every combination is named differently",
                dup.name
            ),
        ));
    }
    Ok((axes, variants))
}

/// One grid axis: a `section.key` and its levels, an array of values (labelled by their
/// values) or a table of label = value.
fn grid_axis(source: &Source, key: &Key, node: &Node) -> Result<AxisLevels, ConfigError> {
    let axis = key.name.clone();
    let parts: Vec<&str> = axis.split('.').collect();
    if parts.len() != 2 || !SECTIONS.contains(&parts[0]) {
        let hint = schema::did_you_mean(parts[0], &SECTIONS)
            .map(|s| format!(" (did you mean `{s}.{}`?)", parts.last().unwrap()))
            .unwrap_or_default();
        return Err(source.error(
            Some(&key.span),
            Some(&format!("grid.{axis}")),
            format!(
                "a grid axis must name a key as \"section.key\" with section one of {}{hint}",
                schema::quote_list(&SECTIONS)
            ),
        ));
    }
    // Each level with the place its label was written: the value itself, or the table key.
    let labelled: Vec<(String, Node, &std::ops::Range<usize>)> = match &node.value {
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|n| (n.value.label(), n.clone(), &n.span))
            .collect(),
        Value::Table(t) if !t.entries.is_empty() => t
            .entries
            .iter()
            .map(|(k, n)| (k.name.clone(), n.clone(), &k.span))
            .collect(),
        Value::Array(_) | Value::Table(_) => {
            return Err(source.error(
                Some(&node.span),
                Some(&format!("grid.{axis}")),
                "a grid axis needs at least one value",
            ));
        }
        other => {
            return Err(source.error(
                Some(&node.span),
                Some(&format!("grid.{axis}")),
                format!(
                    "a grid axis must be an array of values or a table of label = value, found {}",
                    other.type_name()
                ),
            ));
        }
    };
    let key_name = format!("grid.{axis}");
    let mut levels: Vec<(String, Node)> = Vec::new();
    for (label, node, span) in labelled {
        check_name(source, Some(span), &key_name, &label)?;
        if levels.iter().any(|(l, _)| *l == label) {
            return Err(source.error(
                Some(span),
                Some(&key_name),
                format!(
                    "the level \"{label}\" is given twice; each level names a variant, so levels \
                     must differ"
                ),
            ));
        }
        levels.push((label, node));
    }
    Ok((axis, key.clone(), levels))
}

/// The most variants a grid may expand to.
const MAX_GRID_VARIANTS: usize = 10_000;

/// The most tasks (variants × seeds × folds) a study may have: each is a training run, a
/// directory and a row in every table, and `tasks`, `status` and the planner list them all.
const MAX_TASKS: usize = 100_000;

/// The cartesian product of the axes' level indices, first axis varying slowest. Its size is
/// computed first, so that a grid past [`MAX_GRID_VARIANTS`] is refused before anything is
/// allocated (10 axes of 10 levels would be 10^10 combinations).
fn grid_combinations(
    source: &Source,
    levels_per_axis: &[AxisLevels],
) -> Result<Vec<Vec<usize>>, ConfigError> {
    let sizes: Vec<usize> = levels_per_axis.iter().map(|(_, _, l)| l.len()).collect();
    let total = sizes.iter().try_fold(1usize, |acc, &n| acc.checked_mul(n));
    if total.is_none_or(|t| t > MAX_GRID_VARIANTS) {
        let levels: Vec<String> = sizes.iter().map(|n| n.to_string()).collect();
        let count = total.map_or_else(|| "more than 2^64".to_string(), |t| t.to_string());
        return Err(source.error(
            levels_per_axis.first().map(|(_, key, _)| &key.span),
            Some("grid"),
            format!(
                "the grid expands to {count} variants ({} levels), more than the limit of \
                 {MAX_GRID_VARIANTS}: use fewer axes or levels",
                levels.join(" × ")
            ),
        ));
    }
    let mut combos: Vec<Vec<usize>> = vec![vec![]];
    for n in sizes {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                (0..n).map(move |i| {
                    let mut c = c.clone();
                    c.push(i);
                    c
                })
            })
            .collect();
    }
    Ok(combos)
}

/// Refuses a study of more than [`MAX_TASKS`] tasks, counted (with checked arithmetic) before
/// any task list is built. Reported at `seeds` when the file gives them, else at the grid.
/// `reference` names one of the explicit variants; a grid compares against each axis's first
/// level instead.
fn check_reference(
    source: &Source,
    header: &Header<'_>,
    axes: &[String],
    variants: &[Variant],
) -> Result<(), ConfigError> {
    let Some(reference) = &header.decide.reference else {
        return Ok(());
    };
    let span = header.reference_node.map(|n| &n.span);
    if !axes.is_empty() {
        return Err(source.error(
            span,
            Some("reference"),
            "a grid compares each level with its axis's first level; `reference` names the \
             variant the others are compared with in a study of [[variant]] entries",
        ));
    }
    if variants.iter().any(|v| v.name == *reference) {
        return Ok(());
    }
    let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
    let mut message = format!(
        "no variant is named \"{reference}\"; the variants: {}",
        schema::quote_list(&names)
    );
    if let Some(best) = schema::did_you_mean(reference, &names) {
        message.push_str(&format!(" (did you mean \"{best}\"?)"));
    }
    Err(source.error(span, Some("reference"), message))
}

fn check_task_count(
    source: &Source,
    header: &Header<'_>,
    variants: &[Variant],
) -> Result<(), ConfigError> {
    let seeds = header.seeds.len();
    let total = variants.iter().try_fold(0usize, |acc, v| {
        seeds
            .checked_mul(v.folds().len())
            .and_then(|n| acc.checked_add(n))
    });
    if total.is_some_and(|t| t <= MAX_TASKS) {
        return Ok(());
    }
    let count = total.map_or_else(|| "more than 2^64".to_string(), |t| t.to_string());
    let folds = variants.iter().map(|v| v.folds().len()).max().unwrap_or(1);
    let folds = if folds > 1 {
        format!(" × up to {folds} folds")
    } else {
        String::new()
    };
    let message = format!(
        "the study has {count} tasks ({} variants × {seeds} seeds{folds}), more than the limit \
         of {MAX_TASKS}: use fewer variants, seeds or folds",
        variants.len()
    );
    Err(match (header.seeds_node, header.grid_key) {
        (Some(node), _) => source.error(Some(&node.span), Some("seeds"), message),
        (None, Some(key)) => source.error(Some(&key.span), Some("grid"), message),
        (None, None) => source.error(None, Some("seeds"), message),
    })
}

/// The variant of one combination of grid levels, named by its labels.
fn grid_variant(
    source: &Source,
    base: &Table,
    levels_per_axis: &[AxisLevels],
    combo: &[usize],
) -> Result<Variant, ConfigError> {
    let mut tree = base.clone();
    let mut labels = Vec::new();
    let mut levels = Vec::new();
    for ((axis, key, axis_levels), &i) in levels_per_axis.iter().zip(combo) {
        let (label, node) = &axis_levels[i];
        let parts: Vec<&str> = axis.split('.').collect();
        tree.set_path(&parts, key.clone(), node.clone())
            .map_err(|_| source.error(Some(&key.span), Some(axis), "cannot override"))?;
        labels.push(label.clone());
        levels.push((axis.clone(), label.clone()));
    }
    let config = RunConfig::decode(source, &tree)?;
    let name = labels.join("-");
    let grid_span = levels_per_axis.first().map(|(_, key, _)| &key.span);
    check_name(source, grid_span, "grid", &name)?;
    check_not_reserved(source, grid_span, "grid", &name)?;
    Ok(Variant {
        slug: slugify(&name),
        name,
        levels,
        config,
    })
}

/// Appends the `[[variant]]` entries, each the base with its overrides, to `variants`.
fn add_explicit_variants(
    source: &Source,
    base: &Table,
    node: &Node,
    variants: &mut Vec<Variant>,
) -> Result<(), ConfigError> {
    let Value::Array(items) = &node.value else {
        return Err(source.error(
            Some(&node.span),
            Some("variant"),
            "`variant` must be an array of tables: write [[variant]] entries",
        ));
    };
    for item in items {
        let variant = explicit_variant(source, base, item, variants)?;
        variants.push(variant);
    }
    Ok(())
}

/// One `[[variant]]`: its name (unique, also as a directory name among `earlier`) and the
/// base with its overrides.
fn explicit_variant(
    source: &Source,
    base: &Table,
    item: &Node,
    earlier: &[Variant],
) -> Result<Variant, ConfigError> {
    let Value::Table(t) = &item.value else {
        return Err(source.error(
            Some(&item.span),
            Some("variant"),
            format!(
                "each variant must be a table, found {}",
                item.value.type_name()
            ),
        ));
    };
    let mut reader = SectionReader::new(source, "variant", t, Some(item.span.clone()));
    reader.allow(&SECTIONS);
    let vname_node = reader.node("name");
    let Some(vname) = reader.string("name")? else {
        return Err(source.error(
            Some(&item.span),
            Some("variant.name"),
            "every [[variant]] needs a `name`",
        ));
    };
    check_name(source, vname_node.map(|n| &n.span), "variant.name", &vname)?;
    check_not_reserved(source, vname_node.map(|n| &n.span), "variant.name", &vname)?;
    reader.finish()?;
    let config = RunConfig::decode(source, &with_overrides(source, base, t)?)?;
    if let Some(dup) = earlier.iter().find(|v| v.name == vname) {
        return Err(source.error(
            vname_node.map(|n| &n.span),
            Some("variant.name"),
            format!("duplicate variant name \"{}\"", dup.name),
        ));
    }
    let slug = slugify(&vname);
    if earlier.iter().any(|v| v.slug == slug) {
        return Err(source.error(
            vname_node.map(|n| &n.span),
            Some("variant.name"),
            format!(
                "variant name \"{vname}\" maps to the directory name \"{slug}\", which another variant already uses"
            ),
        ));
    }
    Ok(Variant {
        name: vname,
        slug,
        levels: Vec::new(),
        config,
    })
}

/// The base with a variant's overrides (every key of `variant` but `name`, each a table of
/// `key = value` for that section) set.
fn with_overrides(source: &Source, base: &Table, variant: &Table) -> Result<Table, ConfigError> {
    let mut tree = base.clone();
    for (key, node) in &variant.entries {
        if key.name == "name" {
            continue;
        }
        let Value::Table(overrides) = &node.value else {
            return Err(source.error(
                Some(&node.span),
                Some(&format!("variant.{}", key.name)),
                format!(
                    "expected a table of overrides, found {}",
                    node.value.type_name()
                ),
            ));
        };
        for (okey, onode) in &overrides.entries {
            tree.set_path(
                &[key.name.as_str(), okey.name.as_str()],
                okey.clone(),
                onode.clone(),
            )
            .map_err(|_| source.error(Some(&okey.span), Some(&okey.name), "cannot override"))?;
        }
    }
    Ok(tree)
}

/// Grid names are unique as long as labels are; make sure anyway: a repeated directory name
/// gets `-2`, `-3`, … appended.
fn make_slugs_unique(variants: &mut [Variant]) {
    let mut seen = std::collections::HashSet::new();
    for v in variants {
        let mut slug = v.slug.clone();
        let mut n = 2;
        while !seen.insert(slug.clone()) {
            slug = format!("{}-{n}", v.slug);
            n += 1;
        }
        v.slug = slug;
    }
}

/// The one rule for every name a user gives (the experiment, variants, grid labels): not
/// empty, no control characters, at most [`MAX_NAME_CHARS`] characters.
fn check_name(
    source: &Source,
    span: Option<&std::ops::Range<usize>>,
    key: &str,
    name: &str,
) -> Result<(), ConfigError> {
    if name.trim().is_empty() {
        return Err(source.error(span, Some(key), "a name must not be empty"));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(source.error(
            span,
            Some(key),
            "a name must not contain control characters (NUL, newline, …)",
        ));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(source.error(
            span,
            Some(key),
            format!(
                "a name must be at most {MAX_NAME_CHARS} characters, this one has {}",
                name.chars().count()
            ),
        ));
    }
    Ok(())
}

/// Directories of an experiment directory that are not variants.
const RESERVED_DIRS: [&str; 2] = ["superseded", "slurm"];

/// A variant's directory must not be one the experiment directory uses for itself.
fn check_not_reserved(
    source: &Source,
    span: Option<&std::ops::Range<usize>>,
    key: &str,
    name: &str,
) -> Result<(), ConfigError> {
    let slug = slugify(name);
    if RESERVED_DIRS.contains(&slug.as_str()) {
        return Err(source.error(
            span,
            Some(key),
            format!(
                "the variant name \"{name}\" is reserved: <experiment>/{slug}/ holds unet-lab's own \
                 files; choose another name"
            ),
        ));
    }
    Ok(())
}

/// `section.key` → value of every setting of a config, as JSON (its file names).
fn flat_settings(config: &RunConfig) -> Vec<(String, serde_json::Value)> {
    let json = serde_json::to_value(config).expect("config serializes");
    let mut out = Vec::new();
    if let serde_json::Value::Object(sections) = json {
        for (section, keys) in sections {
            if let serde_json::Value::Object(keys) = keys {
                out.extend(keys.into_iter().map(|(k, v)| (format!("{section}.{k}"), v)));
            }
        }
    }
    out
}

impl Experiment {
    /// The settings in which a variant differs from the file's base (`key`, value as TOML-like
    /// text), in section order.
    pub(crate) fn overrides(&self, variant: &Variant) -> Vec<(String, String)> {
        let base = flat_settings(&self.base);
        flat_settings(&variant.config)
            .into_iter()
            .filter(|(k, v)| {
                base.iter()
                    .find(|(b, _)| b == k)
                    .is_none_or(|(_, bv)| bv != v)
            })
            .map(|(k, v)| (k, v.to_string()))
            .collect()
    }

    /// The variants as JSON objects (`validate --json`).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.variants
                .iter()
                .map(|v| {
                    serde_json::json!({
                        "name": v.name,
                        "slug": v.slug,
                        "levels": v.levels.iter().map(|(a, l)| (a.clone(), serde_json::Value::String(l.clone()))).collect::<serde_json::Map<_, _>>(),
                        "overrides": self.overrides(v).into_iter().map(|(k, v)| (k, serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v)))).collect::<serde_json::Map<_, _>>(),
                        "seeds": self.seeds,
                        "data": v.config.data,
                        "model": v.config.model,
                        "train": v.config.train,
                        "report": v.config.report,
                        "augment": v.config.augment,
                    })
                })
                .collect(),
        )
    }

    /// Every (variant, seed, fold) of the study, in file order.
    pub fn tasks(&self) -> Vec<Task> {
        self.variants
            .iter()
            .enumerate()
            .flat_map(|(v, variant)| {
                let folds = variant.folds();
                self.seeds
                    .iter()
                    .flat_map(move |&seed| folds.clone().into_iter().map(move |f| (v, seed, f)))
            })
            .enumerate()
            .map(|(index, (variant, seed, fold))| Task {
                index,
                variant,
                seed,
                fold,
            })
            .collect()
    }

    /// The variant as `task` trains it (its fold set).
    pub(crate) fn task_variant(&self, task: &Task) -> Variant {
        self.variants[task.variant].for_fold(task.fold)
    }

    /// Indices of the named variants (by name or directory name); unknown names are an error
    /// that lists the known ones. No names select every variant.
    pub(crate) fn variant_indices(&self, names: &[String]) -> Result<Vec<usize>, String> {
        if names.is_empty() {
            return Ok((0..self.variants.len()).collect());
        }
        for n in names {
            if !self.variants.iter().any(|v| &v.name == n || &v.slug == n) {
                let known: Vec<&str> = self.variants.iter().map(|v| v.name.as_str()).collect();
                let hint = schema::did_you_mean(n, &known)
                    .map(|best| format!(" (did you mean \"{best}\"?)"))
                    .unwrap_or_default();
                return Err(format!(
                    "--variant {n}: no variant named \"{n}\" in this experiment{hint}; its variants: {}",
                    known.join(", ")
                ));
            }
        }
        Ok((0..self.variants.len())
            .filter(|&i| {
                let v = &self.variants[i];
                names.iter().any(|n| n == &v.name || n == &v.slug)
            })
            .collect())
    }

    /// Keeps only the named variants; unknown names are an error.
    pub fn select(&mut self, names: &[String]) -> Result<(), String> {
        let keep = self.variant_indices(names)?;
        let mut i = 0;
        self.variants.retain(|_| {
            i += 1;
            keep.contains(&(i - 1))
        });
        Ok(())
    }
}
