//! Which input sizes a U-Net of a given depth and padding accepts, and what it outputs: plain
//! arithmetic, needed to validate a config before any network exists.

use super::{Padding, RunConfig};

/// The output size for an input size, or why the input size does not work.
pub(crate) fn output_size(input: usize, levels: usize, padding: Padding) -> Result<usize, String> {
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
pub(crate) fn check_input_size(
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

/// Whether a config read back from a file (a run's manifest, which a person may have edited)
/// describes a U-Net that can be built and fed its images: the checks the config decoder makes
/// of the model and the size, as a message naming the key.
pub(crate) fn check_network(config: &RunConfig) -> Result<(), String> {
    let widths = &config.model.widths;
    if widths.is_empty() || widths.len() > 8 || widths.iter().any(|&w| w == 0 || w > 4096) {
        return Err(format!(
            "model.widths {widths:?}: a U-Net has 1 to 8 levels of 1 to 4096 channels"
        ));
    }
    if config.data.size.iter().any(|&s| !(8..=8192).contains(&s)) {
        return Err(format!(
            "data.size {:?}: each side must be 8 to 8192",
            config.data.size
        ));
    }
    check_input_size(config.data.size, widths, config.model.padding)
        .map_err(|msg| format!("data.size: {msg}"))
}
