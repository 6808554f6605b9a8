//! The Kaggle *Ultrasound Nerve Segmentation* layout: `{subject}_{n}.tif` with
//! `{subject}_{n}_mask.tif` (580×420, 8-bit grey; masks 0/255) in one directory.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Result, bail};

use super::files::{Pair, image_files, stem};

/// `3_17` → (3, 17).
fn parse_stem(stem: &str) -> Option<(u32, u32)> {
    let (subject, n) = stem.split_once('_')?;
    Some((subject.parse().ok()?, n.parse().ok()?))
}

/// Lists the image/mask pairs; every image needs its mask and every mask its image.
pub fn list(dir: &Path) -> Result<Vec<Pair>> {
    let files = image_files(dir)?;
    let stems: BTreeSet<String> = files.iter().map(|p| stem(p)).collect();
    let mut pairs = Vec::new();
    for path in &files {
        let s = stem(path);
        if let Some(image_stem) = s.strip_suffix("_mask") {
            if parse_stem(image_stem).is_some() && !stems.contains(image_stem) {
                bail!(
                    "{} has no image: expected {}",
                    path.display(),
                    path.with_file_name(format!("{image_stem}.tif")).display()
                );
            }
            continue;
        }
        let Some((subject, _)) = parse_stem(&s) else {
            continue; // not part of the layout (e.g. a README image)
        };
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("tif");
        let mask = path.with_file_name(format!("{s}_mask.{ext}"));
        if !mask.exists() {
            bail!(
                "{} has no mask: {} is missing",
                path.display(),
                mask.display()
            );
        }
        pairs.push(Pair {
            id: s,
            subject,
            image: path.clone(),
            mask,
        });
    }
    if pairs.is_empty() {
        bail!(
            "no images found in {}: expected files named {{subject}}_{{n}}.tif with {{subject}}_{{n}}_mask.tif",
            dir.display()
        );
    }
    pairs.sort_by_key(|a| parse_stem(&a.id));
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems() {
        assert_eq!(parse_stem("12_7"), Some((12, 7)));
        assert_eq!(parse_stem("12_7_mask"), None);
        assert_eq!(parse_stem("readme"), None);
    }
}
