//! Which input sizes a U-Net of a given depth and padding accepts, and what it outputs: plain
//! arithmetic, needed to validate a config before any network exists.

use super::Padding;

/// The output size for an input size, or why the input size does not work.
pub fn output_size(input: usize, levels: usize, padding: Padding) -> Result<usize, String> {
    match padding {
        Padding::Same => {
            let factor = 1usize << (levels - 1);
            if !input.is_multiple_of(factor) {
                return Err(format!("must be divisible by {factor}"));
            }
            Ok(input)
        }
        Padding::Valid => {
            // Contracting: each level loses 4 pixels to two 3×3 convs, then halves.
            let mut s = input as i64;
            for level in 0..levels {
                s -= 4;
                if s <= 0 {
                    return Err("is too small".into());
                }
                if level + 1 < levels {
                    if s % 2 != 0 {
                        return Err("gives an odd size before a 2×2 max-pool".into());
                    }
                    s /= 2;
                }
            }
            // Expanding: each level doubles, then loses 4 pixels.
            for _ in 1..levels {
                s = s * 2 - 4;
                if s <= 0 {
                    return Err("is too small".into());
                }
            }
            Ok(s as usize)
        }
    }
}

/// Checks `[height, width]` against the network; the error suggests the nearest valid sizes.
pub fn check_input_size(
    size: [usize; 2],
    widths: &[usize],
    padding: Padding,
) -> Result<(), String> {
    let levels = widths.len();
    for (axis, &s) in ["height", "width"].iter().zip(size.iter()) {
        if let Err(reason) = output_size(s, levels, padding) {
            let nearest = nearest_valid(s, levels, padding);
            return Err(format!(
                "{axis} {s} does not fit a {levels}-level U-Net with {} padding: it {reason}; nearest valid {axis}: {}",
                match padding {
                    Padding::Same => "same",
                    Padding::Valid => "valid",
                },
                nearest
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
        }
    }
    Ok(())
}

fn nearest_valid(s: usize, levels: usize, padding: Padding) -> Vec<usize> {
    let below = (1..=s)
        .rev()
        .find(|&c| output_size(c, levels, padding).is_ok());
    let above = (s + 1..s + 4096).find(|&c| output_size(c, levels, padding).is_ok());
    below.into_iter().chain(above).collect()
}
