//! Image/mask files on disk: decoding (8- or 16-bit grey PNG/TIFF), resizing (bilinear for
//! images, nearest for masks), and a decode cache keyed by file content and target size, so a
//! second run does not decode thousands of TIFFs again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageBuffer, Luma};
use rayon::prelude::*;

use super::Sample;
use crate::util::fs::write_atomic;
use crate::util::hash::{FNV_OFFSET, fnv1a64_from};

/// One image with (optionally) its mask, before decoding.
#[derive(Debug, Clone)]
pub struct Pair {
    pub id: String,
    pub subject: u32,
    pub image: PathBuf,
    pub mask: PathBuf,
}

/// A decoded grey image: values in [0, 1], row-major.
#[derive(Debug, Clone)]
pub struct Grey {
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<f32>,
}

/// Decodes an 8- or 16-bit image as grey values in [0, 1] (colour images are converted).
pub fn decode(path: &Path) -> Result<Grey> {
    let img = image::ImageReader::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?
        .decode()
        .with_context(|| {
            format!(
                "{} is not a readable image (corrupt or unsupported format)",
                path.display()
            )
        })?;
    Ok(to_grey(img))
}

fn to_grey(img: DynamicImage) -> Grey {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let sixteen = matches!(
        img.color(),
        image::ColorType::L16
            | image::ColorType::La16
            | image::ColorType::Rgb16
            | image::ColorType::Rgba16
    );
    let pixels = if sixteen {
        img.into_luma16()
            .into_raw()
            .into_iter()
            .map(|v| v as f32 / 65535.0)
            .collect()
    } else {
        img.into_luma8()
            .into_raw()
            .into_iter()
            .map(|v| v as f32 / 255.0)
            .collect()
    };
    Grey {
        height,
        width,
        pixels,
    }
}

/// Bilinear resize of grey values.
pub(crate) fn resize_bilinear(g: &Grey, height: usize, width: usize) -> Vec<f32> {
    if g.height == height && g.width == width {
        return g.pixels.clone();
    }
    let buf: ImageBuffer<Luma<f32>, Vec<f32>> =
        ImageBuffer::from_raw(g.width as u32, g.height as u32, g.pixels.clone())
            .expect("sizes match");
    imageops::resize(&buf, width as u32, height as u32, FilterType::Triangle).into_raw()
}

/// Nearest-neighbour resize of a 0/1 mask.
fn resize_nearest(mask: &[u8], h: usize, w: usize, height: usize, width: usize) -> Vec<u8> {
    if h == height && w == width {
        return mask.to_vec();
    }
    let buf: ImageBuffer<Luma<u8>, Vec<u8>> =
        ImageBuffer::from_raw(w as u32, h as u32, mask.to_vec()).expect("sizes match");
    imageops::resize(&buf, width as u32, height as u32, FilterType::Nearest).into_raw()
}

/// How a load went: decoded files versus cache hits.
#[derive(Debug, Default)]
pub struct LoadStats {
    pub decoded: AtomicUsize,
    pub cached: AtomicUsize,
}

/// Where decoded, resized samples are kept: `$UNET_LAB_CACHE`, else `$XDG_CACHE_HOME/unet-lab`,
/// else `~/.cache/unet-lab`.
pub(crate) fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("UNET_LAB_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("unet-lab").join("decoded")
}

/// Cache entry: `[h u32][w u32][image f32 × h·w][mask u8 × h·w]`, little endian.
fn encode_entry(image: &[f32], mask: &[u8], h: usize, w: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + h * w * 5);
    out.extend((h as u32).to_le_bytes());
    out.extend((w as u32).to_le_bytes());
    for v in image {
        out.extend(v.to_le_bytes());
    }
    out.extend_from_slice(mask);
    out
}

fn decode_entry(bytes: &[u8], h: usize, w: usize) -> Option<(Vec<f32>, Vec<u8>)> {
    if bytes.len() != 8 + h * w * 5 {
        return None;
    }
    let hh = u32::from_le_bytes(bytes[0..4].try_into().ok()?) as usize;
    let ww = u32::from_le_bytes(bytes[4..8].try_into().ok()?) as usize;
    if (hh, ww) != (h, w) {
        return None;
    }
    let image = bytes[8..8 + h * w * 4]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    Some((image, bytes[8 + h * w * 4..].to_vec()))
}

/// Decodes (or reads from the cache) every pair at `size`, in parallel. Errors name the file.
pub fn load_pairs(
    pairs: &[Pair],
    size: [usize; 2],
    cache: &Path,
    stats: &LoadStats,
) -> Result<Vec<Sample>> {
    let [h, w] = size;
    pairs
        .par_iter()
        .map(|p| -> Result<Sample> {
            let (image, mask) = load_pair(p, h, w, cache, stats)?;
            Ok(Sample {
                id: p.id.clone(),
                subject: p.subject,
                height: h,
                width: w,
                image,
                mask,
            })
        })
        .collect()
}

/// One pair at `h × w`, from the cache when its entry matches the files' content.
fn load_pair(
    p: &Pair,
    h: usize,
    w: usize,
    cache: &Path,
    stats: &LoadStats,
) -> Result<(Vec<f32>, Vec<u8>)> {
    let image_bytes =
        std::fs::read(&p.image).with_context(|| format!("cannot read {}", p.image.display()))?;
    let mask_bytes =
        std::fs::read(&p.mask).with_context(|| format!("cannot read {}", p.mask.display()))?;
    let key = fnv1a64_from(
        &mask_bytes,
        fnv1a64_from(&image_bytes, FNV_OFFSET ^ ((h as u64) << 32 | w as u64)),
    );
    let entry = cache.join(format!("{key:016x}-{h}x{w}.bin"));
    if let Some(hit) = std::fs::read(&entry)
        .ok()
        .and_then(|b| decode_entry(&b, h, w))
    {
        stats.cached.fetch_add(1, Ordering::Relaxed);
        return Ok(hit);
    }
    let unreadable = |path: &Path| {
        format!(
            "{} is not a readable image (corrupt or unsupported format)",
            path.display()
        )
    };
    let img = image::load_from_memory(&image_bytes)
        .map(to_grey)
        .with_context(|| unreadable(&p.image))?;
    let msk = image::load_from_memory(&mask_bytes)
        .map(to_grey)
        .with_context(|| unreadable(&p.mask))?;
    if (img.height, img.width) != (msk.height, msk.width) {
        bail!(
            "image and mask sizes differ: {} is {}×{} but {} is {}×{}",
            p.image.display(),
            img.width,
            img.height,
            p.mask.display(),
            msk.width,
            msk.height
        );
    }
    let image = resize_bilinear(&img, h, w);
    let binary: Vec<u8> = msk.pixels.iter().map(|&v| (v > 0.0) as u8).collect();
    let mask = resize_nearest(&binary, msk.height, msk.width, h, w);
    stats.decoded.fetch_add(1, Ordering::Relaxed);
    // A cache that cannot be written only costs time next run.
    let _ = write_atomic(&entry, &encode_entry(&image, &mask, h, w));
    Ok((image, mask))
}

/// Image files (PNG or TIFF) directly in `dir`, sorted.
pub(crate) fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!(
            "the data directory {} does not exist (or is not a directory)",
            dir.display()
        );
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_image(p))
        .collect();
    files.sort();
    Ok(files)
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "tif" | "tiff"))
}

pub fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_entry_round_trip() {
        let img = vec![0.0, 0.25, 1.0, 0.5];
        let mask = vec![0, 1, 1, 0];
        let bytes = encode_entry(&img, &mask, 2, 2);
        assert_eq!(decode_entry(&bytes, 2, 2), Some((img, mask)));
        assert_eq!(decode_entry(&bytes, 2, 3), None);
    }

    #[test]
    fn nearest_resize_keeps_masks_binary() {
        let mask = vec![0, 1, 1, 0];
        let big = resize_nearest(&mask, 2, 2, 4, 4);
        assert_eq!(big.len(), 16);
        assert!(big.iter().all(|&v| v <= 1));
        assert_eq!(big.iter().filter(|&&v| v == 1).count(), 8);
    }
}
