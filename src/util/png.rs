//! The one PNG writer: 8-bit grey or RGB pixels, row-major, to PNG bytes.

use std::io::Cursor;

use anyhow::{Result, bail};
use image::{ExtendedColorType, ImageEncoder, codecs::png::PngEncoder};

/// Encodes `pixels` (`width × height` grey values, or RGB triples with `rgb`) as a PNG.
pub fn encode(pixels: &[u8], width: usize, height: usize, rgb: bool) -> Result<Vec<u8>> {
    let channels = if rgb { 3 } else { 1 };
    if pixels.len() != width * height * channels {
        bail!(
            "cannot encode a {width}×{height} PNG from {} values (expected {})",
            pixels.len(),
            width * height * channels
        );
    }
    let color = if rgb {
        ExtendedColorType::Rgb8
    } else {
        ExtendedColorType::L8
    };
    let mut bytes = Vec::new();
    PngEncoder::new(Cursor::new(&mut bytes)).write_image(
        pixels,
        width as u32,
        height as u32,
        color,
    )?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_and_rgb_round_trip() {
        let grey: Vec<u8> = (0..12).map(|v| v * 20).collect();
        let back = image::load_from_memory(&encode(&grey, 4, 3, false).unwrap()).unwrap();
        assert_eq!(back.to_luma8().into_raw(), grey);
        let rgb: Vec<u8> = (0..18).collect();
        let back = image::load_from_memory(&encode(&rgb, 3, 2, true).unwrap()).unwrap();
        assert_eq!(back.to_rgb8().into_raw(), rgb);
        assert!(encode(&grey, 5, 3, false).is_err());
    }
}
