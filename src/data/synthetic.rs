//! The embedded default dataset: seeded, ultrasound-like images with exact masks.
//!
//! Each subject has its own anatomy (brightness, depth attenuation, tissue bands, the usual
//! place of the nerve). In about half the images a nerve is present: a dark oval with a bright
//! rim (the hyperechoic epineurium) and a few bright fascicles inside. As a distractor, many
//! images also hold a blood vessel: a dark, rimless oval with brighter tissue below it
//! (posterior acoustic enhancement). Multiplicative speckle covers everything. The network has
//! to tell the nerve from the vessel, which makes the task learnable but not trivial.
//!
//! That is the default preset, `data.difficulty = "easy"`. The `"kaggle"` preset is modelled on
//! the Kaggle Ultrasound Nerve data (see [`generate_preset`]): faint, smaller nerves of varying
//! size; unannotated nerve-like ovals that only their place tells apart (the nerve lies beside
//! the vessel); and near-duplicate images of the same scene, one with the nerve's mask, the
//! other labelled empty, as where Kaggle's annotators missed a nerve.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::config::Difficulty;
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
            synthetic_sample(subject, n, [height, width], (image, mask))
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
    /// Bright fascicles inside the oval: (x, y, radius), `count` of them, each radius a
    /// share `size` of the oval's smaller half-axis.
    fn fascicles(
        &self,
        count: std::ops::Range<i32>,
        size: std::ops::Range<f32>,
        rng: &mut StdRng,
    ) -> Vec<(f32, f32, f32)> {
        (0..rng.random_range(count))
            .map(|_| {
                let t = rng.random_range(0.0..std::f32::consts::TAU);
                let r = rng.random_range(0.0..0.55);
                (
                    self.cx + r * self.rx * t.cos(),
                    self.cy + r * self.ry * t.sin(),
                    rng.random_range(size.clone()) * self.rx.min(self.ry),
                )
            })
            .collect()
    }

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
        let fascicles = nerve.fascicles(2..5, 0.12..0.22, rng);
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

    /// The vessel, when there is one.
    fn shade_vessel(&self, v: f32, xf: f32, yf: f32) -> f32 {
        match &self.vessel {
            Some(vessel) => shade_vessel(vessel, v, xf, yf),
            None => v,
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

/// A dark, rimless vessel with posterior enhancement: a brighter column below it.
fn shade_vessel(vessel: &Oval, v: f32, xf: f32, yf: f32) -> f32 {
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
    paint(h, w, rng, |xf, yf| {
        let v = scene.shade_vessel(tissue(a, xf, yf, hf, wf), xf, yf);
        scene.shade_nerve(v, xf, yf)
    })
}

/// An image and its mask from `shade` — the grey value at a pixel centre and whether it is
/// inside the nerve — with speckle over the whole image.
fn paint(
    h: usize,
    w: usize,
    rng: &mut StdRng,
    shade: impl Fn(f32, f32) -> (f32, bool),
) -> (Vec<f32>, Vec<u8>) {
    let mut image = vec![0f32; h * w];
    let mut mask = vec![0u8; h * w];
    for y in 0..h {
        let yf = y as f32 + 0.5;
        for x in 0..w {
            let (v, inside) = shade(x as f32 + 0.5, yf);
            image[y * w + x] = v;
            mask[y * w + x] = u8::from(inside);
        }
    }
    add_speckle(&mut image, h, w, rng);
    (image, mask)
}

/// Draws `count` images of a preset (`data.difficulty`): [`generate`] for easy, the kaggle
/// preset otherwise. Deterministic from `seed`.
pub(crate) fn generate_preset(
    difficulty: Difficulty,
    count: usize,
    subjects: usize,
    height: usize,
    width: usize,
    seed: u64,
) -> Vec<Sample> {
    match difficulty {
        Difficulty::Easy => generate(count, subjects, height, width, seed),
        Difficulty::Kaggle => generate_kaggle(count, subjects, height, width, seed),
    }
}

/// The kaggle preset's knobs, chosen so that a small U-Net trained for a few CPU minutes with
/// the blog's recipe scores clearly below one with the Kaggle tricks (docs/data.md, "Synthetic":
/// how they were calibrated).
mod knobs {
    use std::ops::Range;

    /// The nerve's contrast (darkening inside, rim, fascicles) as a share of easy's, per image.
    pub(crate) const CONTRAST: Range<f32> = 0.75..1.0;
    /// The nerve's size as a share of easy's subject's nerve, and its spread from image to image.
    pub(crate) const SIZE: f32 = 0.85;
    pub(crate) const SIZE_SPREAD: Range<f32> = 0.7..1.3;
    /// Unannotated nerve-like ovals per image: `0..DECOYS`. They have no fascicles and their
    /// rim is `DECOY_RIM` of a nerve's at the same contrast: a faint nerve and a strong decoy
    /// look alike, and the vessel beside the nerve tells them apart.
    pub(crate) const DECOYS: usize = 2;
    pub(crate) const DECOY_RIM: f32 = 0.5;
    /// The chance that an image is a near-duplicate of its subject's previous image, labelled
    /// empty whether or not the nerve shows (never two in a row).
    pub(crate) const TWIN: f64 = 0.2;
    /// The standard deviation of the noise that tells a near-duplicate from its original.
    pub(crate) const TWIN_NOISE: f32 = 0.02;
    /// The chance of a nerve in an image that is not a near-duplicate: about half of all the
    /// masks end up empty.
    pub(crate) const NERVE: f64 = 0.6;
    /// The chance of the vessel in an image without a nerve (beside a nerve it is always there).
    pub(crate) const VESSEL: f64 = 0.8;
}

/// Seeds of the kaggle preset's streams, apart from easy's.
const KAGGLE_SALT: u64 = 0x6b61_6767_6c65_0001;
const TWIN_SALT: u64 = 0x6b61_6767_6c65_0002;

/// A subject of the kaggle preset: easy's anatomy, and the side of the nerve its vessel lies on.
struct KaggleAnatomy {
    base: Anatomy,
    side: f32,
}

/// The kaggle preset: see [`knobs`].
fn generate_kaggle(
    count: usize,
    subjects: usize,
    height: usize,
    width: usize,
    seed: u64,
) -> Vec<Sample> {
    let mut subject_rng = StdRng::seed_from_u64(seed ^ 0x5e_ed0f_a4a7_0e1e ^ KAGGLE_SALT);
    let anatomies: Vec<KaggleAnatomy> = (0..subjects)
        .map(|_| KaggleAnatomy {
            base: anatomy(&mut subject_rng),
            side: if subject_rng.random_bool(0.5) {
                1.0
            } else {
                -1.0
            },
        })
        .collect();
    let per_subject = count.div_ceil(subjects);
    let twins = twin_flags(count, per_subject, seed);
    let image_rng = |i: usize| {
        StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(i as u64) ^ KAGGLE_SALT)
    };
    (0..count)
        .map(|i| {
            let subject = i / per_subject;
            // A near-duplicate redraws its original's scene and speckle, then differs by a
            // little noise, and is labelled empty.
            let original = if twins[i] { i - 1 } else { i };
            let a = &anatomies[subject];
            let (mut image, mut mask) = draw_kaggle(a, height, width, &mut image_rng(original));
            if twins[i] {
                mask.fill(0);
                let mut rng = image_rng(i);
                for v in &mut image {
                    *v = (*v + knobs::TWIN_NOISE * standard_normal(&mut rng)).clamp(0.0, 1.0);
                }
            }
            synthetic_sample(subject, i % per_subject + 1, [height, width], (image, mask))
        })
        .collect()
}

/// Image `n` (from 1) of the 0-based `subject`, named as the Kaggle files are (`3_17`).
fn synthetic_sample(
    subject: usize,
    n: usize,
    [height, width]: [usize; 2],
    (image, mask): (Vec<f32>, Vec<u8>),
) -> Sample {
    Sample {
        id: format!("{}_{n}", subject + 1),
        subject: subject as u32 + 1,
        height,
        width,
        image,
        mask,
    }
}

/// Which images are near-duplicates of the previous image of their subject (never the first
/// of a subject, never two in a row).
fn twin_flags(count: usize, per_subject: usize, seed: u64) -> Vec<bool> {
    let mut rng = StdRng::seed_from_u64(seed ^ TWIN_SALT);
    let mut twins = vec![false; count];
    for i in 1..count {
        let draw = rng.random_bool(knobs::TWIN);
        twins[i] = draw && i % per_subject != 0 && !twins[i - 1];
    }
    twins
}

/// A nerve or a nerve-like oval: dark inside with bright fascicles, a bright rim, at a contrast.
struct Lookalike {
    oval: Oval,
    fascicles: Vec<(f32, f32, f32)>, // (x, y, radius) in pixels
    contrast: f32,
    /// The rim's brightness as a share of a nerve's (1 for the nerve).
    rim: f32,
}

impl Lookalike {
    /// One at `(cx, cy)` pixels, sized from the subject's nerve.
    fn draw(a: &Anatomy, (cx, cy): (f32, f32), hf: f32, wf: f32, rng: &mut StdRng) -> Self {
        let scale = knobs::SIZE * rng.random_range(knobs::SIZE_SPREAD);
        let oval = Oval {
            cx,
            cy,
            rx: a.nerve_size.0 * wf * scale * rng.random_range(0.85..1.15),
            ry: a.nerve_size.1 * hf * scale * rng.random_range(0.85..1.15),
            angle: rng.random_range(-0.6..0.6),
        };
        let fascicles = oval.fascicles(1..5, 0.15..0.25, rng);
        Self {
            oval,
            fascicles,
            contrast: rng.random_range(knobs::CONTRAST),
            rim: 1.0,
        }
    }

    /// Easy's nerve shading scaled by the contrast; `true` inside the oval.
    fn shade(&self, v: f32, xf: f32, yf: f32) -> (f32, bool) {
        let c = self.contrast;
        let r = self.oval.radius(xf, yf);
        let shaded = if r < 0.85 {
            let fascicles: f32 = self
                .fascicles
                .iter()
                .map(|&(fx, fy, fr)| {
                    let d = ((xf - fx).powi(2) + (yf - fy).powi(2)).sqrt() / fr;
                    if d < 1.0 { 0.18 * (1.0 - d) } else { 0.0 }
                })
                .sum();
            v * (1.0 - 0.55 * c) + c * fascicles
        } else if r < 1.25 {
            v + c * self.rim * (0.35 * (1.0 - ((r - 1.05) / 0.2).powi(2)).max(0.0) + 0.1)
        } else {
            v
        };
        (shaded, r < 1.0)
    }

    /// Whether another oval of `radius` at `(x, y)` keeps `margin` radii clear of this one.
    fn clear_of(oval: &Oval, x: f32, y: f32, radius: f32, margin: f32) -> bool {
        let gap = ((x - oval.cx).powi(2) + (y - oval.cy).powi(2)).sqrt();
        gap > margin * (oval.rx.max(oval.ry) + radius)
    }
}

/// One image of the kaggle preset: the nerve (annotated when present), the vessel beside it,
/// and unannotated lookalikes away from both.
struct KaggleScene {
    nerve: Option<Lookalike>,
    vessel: Option<Oval>,
    decoys: Vec<Lookalike>,
}

impl KaggleScene {
    fn draw(a: &KaggleAnatomy, h: usize, w: usize, rng: &mut StdRng) -> Self {
        let (hf, wf) = (h as f32, w as f32);
        let has_nerve = rng.random_bool(knobs::NERVE);
        let site = (
            (a.base.nerve_at.0 + 0.08 * standard_normal(rng)) * wf,
            (a.base.nerve_at.1 + 0.06 * standard_normal(rng)) * hf,
        );
        let nerve = Lookalike::draw(&a.base, site, hf, wf, rng);
        // The vessel lies beside the nerve, on the subject's side: the context that tells the
        // nerve from its lookalikes. It is there even when the nerve is not.
        let r = rng.random_range(0.06..0.10) * wf.min(hf);
        let vessel = Oval {
            cx: nerve.oval.cx + a.side * (nerve.oval.rx + r) * rng.random_range(1.15..1.4),
            cy: nerve.oval.cy + 0.4 * r * standard_normal(rng),
            rx: r * rng.random_range(0.9..1.1),
            ry: r,
            angle: 0.0,
        };
        let has_vessel = has_nerve || rng.random_bool(knobs::VESSEL);
        let decoys = (0..rng.random_range(0..knobs::DECOYS))
            .map(|_| Self::decoy(&a.base, &nerve.oval, &vessel, hf, wf, rng))
            .collect();
        Self {
            nerve: has_nerve.then_some(nerve),
            vessel: has_vessel.then_some(vessel),
            decoys,
        }
    }

    /// A lookalike clear of the nerve's site and well away from the vessel (20 tries, then the
    /// last).
    fn decoy(
        a: &Anatomy,
        nerve: &Oval,
        vessel: &Oval,
        hf: f32,
        wf: f32,
        rng: &mut StdRng,
    ) -> Lookalike {
        // Drawn at the origin, then moved.
        let mut decoy = Lookalike::draw(a, (0.0, 0.0), hf, wf, rng);
        decoy.fascicles.clear();
        decoy.rim = knobs::DECOY_RIM;
        let radius = decoy.oval.rx.max(decoy.oval.ry);
        let mut at = (0.0, 0.0);
        for _ in 0..20 {
            at = (
                rng.random_range(0.12..0.88) * wf,
                rng.random_range(0.15..0.85) * hf,
            );
            if Lookalike::clear_of(nerve, at.0, at.1, radius, 1.5)
                && Lookalike::clear_of(vessel, at.0, at.1, radius, 2.2)
            {
                break;
            }
        }
        decoy.oval.cx = at.0;
        decoy.oval.cy = at.1;
        decoy
    }
}

/// One image of the kaggle preset and its mask: tissue, vessel, lookalikes, nerve, speckle.
fn draw_kaggle(a: &KaggleAnatomy, h: usize, w: usize, rng: &mut StdRng) -> (Vec<f32>, Vec<u8>) {
    let scene = KaggleScene::draw(a, h, w, rng);
    let (hf, wf) = (h as f32, w as f32);
    paint(h, w, rng, |xf, yf| {
        let mut v = tissue(&a.base, xf, yf, hf, wf);
        if let Some(vessel) = &scene.vessel {
            v = shade_vessel(vessel, v, xf, yf);
        }
        for decoy in &scene.decoys {
            v = decoy.shade(v, xf, yf).0;
        }
        match &scene.nerve {
            Some(nerve) => nerve.shade(v, xf, yf),
            None => (v, false),
        }
    })
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
    fn the_easy_preset_is_the_default_generator() {
        let easy = generate_preset(Difficulty::Easy, 24, 4, 40, 56, 42);
        assert_eq!(checksum(&easy), checksum(&generate(24, 4, 40, 56, 42)));
    }

    fn empty(s: &Sample) -> bool {
        !s.has_object()
    }

    #[test]
    fn kaggle_preset_is_deterministic_and_about_half_empty() {
        let a = generate_preset(Difficulty::Kaggle, 600, 20, 64, 80, 42);
        let b = generate_preset(Difficulty::Kaggle, 600, 20, 64, 80, 42);
        assert_eq!(a.len(), 600);
        assert_eq!(checksum(&a), checksum(&b));
        let share = a.iter().filter(|s| empty(s)).count() as f64 / 600.0;
        assert!((0.4..0.6).contains(&share), "empty share {share}");
        assert!(
            a.iter()
                .all(|s| s.image.iter().all(|v| (0.0..=1.0).contains(v)))
        );
        let c = generate_preset(Difficulty::Kaggle, 600, 20, 64, 80, 43);
        assert_ne!(checksum(&a), checksum(&c));
        let easy = generate(600, 20, 64, 80, 42);
        assert!(a.iter().zip(&easy).any(|(k, e)| k.image != e.image));
    }

    #[test]
    fn kaggle_preset_has_near_duplicates_with_contradictory_labels() {
        let samples = generate_preset(Difficulty::Kaggle, 600, 20, 64, 80, 42);
        let mean_diff = |x: &Sample, y: &Sample| {
            let sum: f32 = x
                .image
                .iter()
                .zip(&y.image)
                .map(|(a, b)| (a - b).abs())
                .sum();
            sum / x.image.len() as f32
        };
        let (mut contradictory, mut distinct) = (0, Vec::new());
        for pair in samples.windows(2).filter(|p| p[0].subject == p[1].subject) {
            let diff = mean_diff(&pair[0], &pair[1]);
            if diff < 0.03 {
                contradictory += usize::from(empty(&pair[0]) != empty(&pair[1]));
            } else {
                distinct.push(diff);
            }
        }
        // About a sixth of the images are near-duplicates, half of them of an image with a
        // nerve: some 50 pairs of 600.
        assert!(
            (25..90).contains(&contradictory),
            "{contradictory} contradictory near-duplicate pairs"
        );
        // Other neighbours are not near-duplicates: "small" means something.
        let least = distinct.iter().copied().fold(f32::INFINITY, f32::min);
        assert!(least > 0.05, "two distinct images differ by only {least}");
    }

    #[test]
    fn kaggle_nerves_are_smaller_than_easy_ones() {
        let area = |samples: &[Sample]| {
            let areas: Vec<usize> = samples
                .iter()
                .filter(|s| s.has_object())
                .map(|s| s.mask.iter().filter(|&&m| m == 1).count())
                .collect();
            areas.iter().sum::<usize>() as f64 / areas.len() as f64
        };
        let easy = area(&generate(400, 20, 64, 80, 3));
        let kaggle = area(&generate_preset(Difficulty::Kaggle, 400, 20, 64, 80, 3));
        assert!(
            kaggle < 0.85 * easy,
            "mean nerve area: kaggle {kaggle:.0} px, easy {easy:.0} px"
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
