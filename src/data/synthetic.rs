//! The embedded default dataset: seeded, ultrasound-like images with exact masks.
//!
//! Each subject has its own anatomy (brightness, depth attenuation, tissue bands, the usual
//! place of the nerve). In about half the images a nerve is present: a dark oval with a bright
//! rim (the hyperechoic epineurium) and a few bright fascicles inside. As a distractor, many
//! images also hold a blood vessel: a dark, rimless oval with brighter tissue below it
//! (posterior acoustic enhancement). Multiplicative speckle covers everything. The network has
//! to tell the nerve from the vessel, which makes the task learnable but not trivial.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::util::noise::standard_normal;

use super::Sample;

struct Anatomy {
    brightness: f32,
    attenuation: f32,
    bands: Vec<(f32, f32, f32, f32)>, // (centre y, half thickness, gain, tilt), fractions of size
    nerve_at: (f32, f32),
    nerve_size: (f32, f32),
}

fn anatomy(rng: &mut StdRng) -> Anatomy {
    let n_bands = rng.random_range(2..5);
    Anatomy {
        brightness: rng.random_range(0.35..0.55),
        attenuation: rng.random_range(0.4..1.0),
        bands: (0..n_bands)
            .map(|_| {
                (
                    rng.random_range(0.1..0.9),
                    rng.random_range(0.01..0.04),
                    rng.random_range(0.15..0.35),
                    rng.random_range(-0.15..0.15),
                )
            })
            .collect(),
        nerve_at: (rng.random_range(0.3..0.7), rng.random_range(0.35..0.65)),
        nerve_size: (rng.random_range(0.09..0.14), rng.random_range(0.10..0.16)),
    }
}

/// Draws `count` images of `height × width` for `subjects` subjects, deterministically from
/// `seed`. Images take values in [0, 1]; masks are 0/1.
pub fn generate(
    count: usize,
    subjects: usize,
    height: usize,
    width: usize,
    seed: u64,
) -> Vec<Sample> {
    let mut subject_rng = StdRng::seed_from_u64(seed ^ 0x5e_ed0f_a4a7_0e1e);
    let anatomies: Vec<Anatomy> = (0..subjects).map(|_| anatomy(&mut subject_rng)).collect();
    let per_subject = count.div_ceil(subjects);
    (0..count)
        .map(|i| {
            let subject = i / per_subject;
            let n = i % per_subject + 1;
            let mut rng =
                StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
            let (image, mask) = draw(&anatomies[subject], height, width, &mut rng);
            Sample {
                id: format!("{}_{}", subject + 1, n),
                subject: subject as u32 + 1,
                height,
                width,
                image,
                mask,
            }
        })
        .collect()
}

struct Oval {
    cx: f32,
    cy: f32,
    rx: f32,
    ry: f32,
    angle: f32,
}

impl Oval {
    /// Normalised radius: < 1 inside.
    fn radius(&self, x: f32, y: f32) -> f32 {
        let (s, c) = self.angle.sin_cos();
        let dx = x - self.cx;
        let dy = y - self.cy;
        let u = (dx * c + dy * s) / self.rx;
        let v = (-dx * s + dy * c) / self.ry;
        (u * u + v * v).sqrt()
    }
}

/// One image's objects: the nerve (when present) with its fascicles, and the vessel.
struct Scene {
    nerve: Option<Oval>,
    fascicles: Vec<(f32, f32, f32)>, // (x, y, radius) in pixels
    vessel: Option<Oval>,
}

impl Scene {
    /// Draws the objects of one image of a subject (`h × w` pixels).
    fn draw(a: &Anatomy, h: usize, w: usize, rng: &mut StdRng) -> Self {
        let (hf, wf) = (h as f32, w as f32);
        let has_nerve = rng.random_bool(0.5);
        let has_vessel = rng.random_bool(0.6);
        let nerve = Oval {
            cx: (a.nerve_at.0 + 0.06 * standard_normal(rng)) * wf,
            cy: (a.nerve_at.1 + 0.05 * standard_normal(rng)) * hf,
            rx: a.nerve_size.0 * wf * rng.random_range(0.8..1.2),
            ry: a.nerve_size.1 * hf * rng.random_range(0.8..1.2),
            angle: rng.random_range(-0.6..0.6),
        };
        let vessel = Self::vessel_clear_of(&nerve, hf, wf, rng);
        let fascicles = (0..rng.random_range(2..5))
            .map(|_| {
                let t = rng.random_range(0.0..std::f32::consts::TAU);
                let r = rng.random_range(0.0..0.55);
                (
                    nerve.cx + r * nerve.rx * t.cos(),
                    nerve.cy + r * nerve.ry * t.sin(),
                    rng.random_range(0.12..0.22) * nerve.rx.min(nerve.ry),
                )
            })
            .collect();
        Self {
            nerve: has_nerve.then_some(nerve),
            fascicles,
            vessel: has_vessel.then_some(vessel),
        }
    }

    /// The vessel keeps clear of the nerve so the two never overlap (20 tries, then the last).
    fn vessel_clear_of(nerve: &Oval, hf: f32, wf: f32, rng: &mut StdRng) -> Oval {
        let mut vessel = Oval {
            cx: 0.0,
            cy: 0.0,
            rx: 0.0,
            ry: 0.0,
            angle: 0.0,
        };
        for _ in 0..20 {
            let r = rng.random_range(0.06..0.10) * wf.min(hf);
            vessel = Oval {
                cx: rng.random_range(0.15..0.85) * wf,
                cy: rng.random_range(0.2..0.8) * hf,
                rx: r * rng.random_range(0.9..1.1),
                ry: r,
                angle: 0.0,
            };
            let gap = ((vessel.cx - nerve.cx).powi(2) + (vessel.cy - nerve.cy).powi(2)).sqrt();
            if gap > 1.6 * (nerve.rx.max(nerve.ry) + vessel.rx) {
                break;
            }
        }
        vessel
    }

    /// A dark, rimless vessel with posterior enhancement: a brighter column below it.
    fn shade_vessel(&self, v: f32, xf: f32, yf: f32) -> f32 {
        let Some(vessel) = &self.vessel else {
            return v;
        };
        if vessel.radius(xf, yf) < 1.0 {
            return v * 0.15;
        }
        let below = (yf - vessel.cy - vessel.ry) / (3.0 * vessel.ry);
        if yf > vessel.cy && (xf - vessel.cx).abs() < vessel.rx && below > 0.0 {
            v * (1.0 + 0.5 * (-below).exp())
        } else {
            v
        }
    }

    /// A dark nerve with bright fascicles inside and a bright rim; `true` inside its mask.
    fn shade_nerve(&self, v: f32, xf: f32, yf: f32) -> (f32, bool) {
        let Some(nerve) = &self.nerve else {
            return (v, false);
        };
        let r = nerve.radius(xf, yf);
        let shaded = if r < 0.85 {
            self.fascicles
                .iter()
                .map(|&(fx, fy, fr)| {
                    let d = ((xf - fx).powi(2) + (yf - fy).powi(2)).sqrt() / fr;
                    if d < 1.0 { 0.18 * (1.0 - d) } else { 0.0 }
                })
                .fold(v * 0.45, |acc, add| acc + add)
        } else if r < 1.25 {
            v + (0.35 * (1.0 - ((r - 1.05) / 0.2).powi(2)).max(0.0) + 0.1)
        } else {
            v
        };
        (shaded, r < 1.0)
    }
}

/// Tissue brightness at a point: depth attenuation and the subject's bands.
fn tissue(a: &Anatomy, xf: f32, yf: f32, hf: f32, wf: f32) -> f32 {
    let depth = yf / hf;
    let attenuation = (-a.attenuation * depth).exp();
    let mut v = a.brightness * attenuation;
    for &(cy, half, gain, tilt) in &a.bands {
        let centre = (cy + tilt * (xf / wf - 0.5)) * hf;
        let d = (yf - centre) / (half * hf);
        v += gain * (-d * d).exp() * attenuation;
    }
    v
}

/// Speckle: multiplicative, spatially correlated along the beam (horizontal smear).
fn add_speckle(image: &mut [f32], h: usize, w: usize, rng: &mut StdRng) {
    let noise: Vec<f32> = (0..h * w).map(|_| standard_normal(rng)).collect();
    for y in 0..h {
        for x in 0..w {
            let l = noise[y * w + x.saturating_sub(1)];
            let c = noise[y * w + x];
            let r = noise[y * w + (x + 1).min(w - 1)];
            let speckle = 1.0 + 0.3 * (l + 2.0 * c + r) / 2.45;
            let i = y * w + x;
            image[i] = (image[i] * speckle).clamp(0.0, 1.0);
        }
    }
}

/// One image and its mask: draw the objects, shade tissue, vessel and nerve, add speckle.
fn draw(a: &Anatomy, h: usize, w: usize, rng: &mut StdRng) -> (Vec<f32>, Vec<u8>) {
    let scene = Scene::draw(a, h, w, rng);
    let (hf, wf) = (h as f32, w as f32);
    let mut image = vec![0f32; h * w];
    let mut mask = vec![0u8; h * w];
    for y in 0..h {
        let yf = y as f32 + 0.5;
        for x in 0..w {
            let xf = x as f32 + 0.5;
            let v = scene.shade_vessel(tissue(a, xf, yf, hf, wf), xf, yf);
            let (v, inside) = scene.shade_nerve(v, xf, yf);
            image[y * w + x] = v;
            mask[y * w + x] = u8::from(inside);
        }
    }
    add_speckle(&mut image, h, w, rng);
    (image, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_about_half_empty() {
        let a = generate(200, 10, 32, 48, 7);
        let b = generate(200, 10, 32, 48, 7);
        assert_eq!(a.len(), 200);
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| x.image == y.image && x.mask == y.mask)
        );
        let empty = a.iter().filter(|s| s.mask.iter().all(|&m| m == 0)).count();
        assert!((60..140).contains(&empty), "{empty} empty masks of 200");
        let subjects: std::collections::BTreeSet<u32> = a.iter().map(|s| s.subject).collect();
        assert_eq!(subjects.len(), 10);
        let c = generate(200, 10, 32, 48, 8);
        assert!(a.iter().zip(&c).any(|(x, y)| x.image != y.image));
    }

    /// FNV-1a over the ids, subjects, image bits and masks of some samples.
    fn checksum(samples: &[Sample]) -> u64 {
        let mut hash = 0xcbf2_9ce4_8422_2325_u64;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        };
        for s in samples {
            eat(s.id.as_bytes());
            eat(&s.subject.to_le_bytes());
            for v in &s.image {
                eat(&v.to_bits().to_le_bytes());
            }
            eat(&s.mask);
        }
        hash
    }

    #[test]
    fn easy_samples_are_pinned() {
        // Computed before the kaggle preset was added: the default generator must not change
        // (figures, tests and recorded studies depend on its exact samples).
        let samples = generate(24, 4, 40, 56, 42);
        assert_eq!(
            checksum(&samples),
            0x7d83_e1c6_cc3a_a043,
            "{:#x}",
            checksum(&samples)
        );
    }

    #[test]
    fn nerve_is_darker_inside_than_its_rim() {
        // One 4-neighbour dilation (grow) or erosion (!grow) of a 0/1 mask.
        fn step(m: &[u8], h: usize, w: usize, grow: bool) -> Vec<u8> {
            let at = |y: isize, x: isize| {
                if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
                    u8::from(!grow)
                } else {
                    m[y as usize * w + x as usize]
                }
            };
            (0..h * w)
                .map(|i| {
                    let (y, x) = ((i / w) as isize, (i % w) as isize);
                    let around = [
                        at(y, x),
                        at(y - 1, x),
                        at(y + 1, x),
                        at(y, x - 1),
                        at(y, x + 1),
                    ];
                    u8::from(if grow {
                        around.contains(&1)
                    } else {
                        around.iter().all(|&v| v == 1)
                    })
                })
                .collect()
        }
        let mean = |v: &[f32], sel: &[bool]| {
            let picked: Vec<f32> = v
                .iter()
                .zip(sel)
                .filter(|(_, s)| **s)
                .map(|(x, _)| *x)
                .collect();
            picked.iter().sum::<f32>() / picked.len().max(1) as f32
        };
        let (h, w) = (64, 64);
        let samples = generate(40, 4, h, w, 1);
        let mut compared = 0;
        for s in samples.iter().filter(|s| s.mask.contains(&1)) {
            assert!(s.image.iter().all(|v| (0.0..=1.0).contains(v)));
            // The core: 3 pixels in from the mask's edge; the rim: the 3 pixels just outside.
            let (mut core, mut grown) = (s.mask.clone(), s.mask.clone());
            for _ in 0..3 {
                core = step(&core, h, w, false);
                grown = step(&grown, h, w, true);
            }
            let core_sel: Vec<bool> = core.iter().map(|&c| c == 1).collect();
            let rim_sel: Vec<bool> = grown
                .iter()
                .zip(&s.mask)
                .map(|(&g, &m)| g == 1 && m == 0)
                .collect();
            if core_sel.iter().filter(|&&c| c).count() < 10 {
                continue; // too small a nerve for a core
            }
            let (inside, rim) = (mean(&s.image, &core_sel), mean(&s.image, &rim_sel));
            assert!(
                inside < rim,
                "{}: inside {inside:.3} is not darker than the rim {rim:.3}",
                s.id
            );
            compared += 1;
        }
        assert!(
            compared >= 5,
            "only {compared} nerves were large enough to compare"
        );
    }
}
