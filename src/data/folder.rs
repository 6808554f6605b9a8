//! The generic layout: `images/` and `masks/` with matching file stems (PNG or TIFF, 8- or
//! 16-bit; masks are binarised at > 0), and an optional `subjects.csv` (`stem,subject`) for
//! grouped splits. Without it every image is its own subject.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::files::{Pair, image_files, stem};

fn read_subjects(path: &Path) -> Result<HashMap<String, u32>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut map = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.to_ascii_lowercase().starts_with("stem")) {
            continue;
        }
        let Some((s, subject)) = line.split_once(',') else {
            bail!(
                "{}:{}: expected `stem,subject`, found {line:?}",
                path.display(),
                i + 1
            );
        };
        let subject: u32 = subject.trim().parse().with_context(|| {
            format!(
                "{}:{}: the subject must be a whole number",
                path.display(),
                i + 1
            )
        })?;
        map.insert(s.trim().to_string(), subject);
    }
    Ok(map)
}

pub fn list(dir: &Path) -> Result<Vec<Pair>> {
    if !dir.is_dir() {
        bail!(
            "the data directory {} does not exist (or is not a directory)",
            dir.display()
        );
    }
    let (images_dir, masks_dir) = (dir.join("images"), dir.join("masks"));
    for d in [&images_dir, &masks_dir] {
        if !d.is_dir() {
            bail!(
                "{} is missing: a folder dataset needs images/ and masks/",
                d.display()
            );
        }
    }
    let masks: HashMap<String, std::path::PathBuf> = image_files(&masks_dir)?
        .into_iter()
        .map(|p| (stem(&p), p))
        .collect();
    let subjects_file = dir.join("subjects.csv");
    let subjects = if subjects_file.exists() {
        Some(read_subjects(&subjects_file)?)
    } else {
        None
    };
    let images = image_files(&images_dir)?;
    if images.is_empty() {
        bail!("no images found in {} (PNG or TIFF)", images_dir.display());
    }
    let mut pairs = Vec::new();
    for (i, path) in images.iter().enumerate() {
        let s = stem(path);
        let Some(mask) = masks.get(&s) else {
            bail!(
                "{} has no mask: expected {}/{s}.png or .tif",
                path.display(),
                masks_dir.display()
            );
        };
        let subject = match &subjects {
            Some(map) => *map.get(&s).with_context(|| {
                format!(
                    "{} does not list {s} (image {})",
                    subjects_file.display(),
                    path.display()
                )
            })?,
            None => i as u32 + 1,
        };
        pairs.push(Pair {
            id: s,
            subject,
            image: path.clone(),
            mask: mask.clone(),
        });
    }
    for (s, path) in &masks {
        if !pairs.iter().any(|p| &p.id == s) {
            bail!(
                "{} has no image in {}",
                path.display(),
                images_dir.display()
            );
        }
    }
    Ok(pairs)
}
