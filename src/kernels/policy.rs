//! Which implementation runs each kernel: the crossover rules of [`ConvPath::Auto`], each
//! constant with the measurement behind it (`examples/conv_kernels.rs`, docs/benchmarks.md), and the
//! tables from an implementation to its forward, input-gradient and weight-gradient kernels.

use super::ConvPath;
use super::{direct, gemm, winograd};

/// Row-wise kernels need long rows: on output planes under 32×32 pixels GEMM wins (limiting
/// the direct path to planes of at least this size took reduced-width inference from 381 to
/// 434 img/s; docs/benchmarks.md, "crossover rule").
pub(crate) const DIRECT_MIN_OUTPUT_PIXELS: usize = 32 * 32;
/// Beyond this many channel pairs (`cin · cout`; 32→32 is the widest direct layer) the GEMM's
/// arithmetic efficiency wins: at 4 096 the paper widths' 64→64 layers ran direct and lost to
/// GEMM (docs/benchmarks.md, "direct path limited to cin·cout ≤ 1024").
pub(crate) const DIRECT_MAX_CHANNEL_PAIRS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Conv3x3,
    Up2x2,
    Conv1x1,
}

/// The project's implementations (Burn's generic one is `None` where an `Option<Impl>` is used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Impl {
    Direct,
    Gemm,
    Winograd,
    /// F(4×4, 3×3) for the forward pass and the input gradient (F(2×2, 3×3) for the weight
    /// gradient).
    Winograd4,
}

/// Which implementation runs each of an op's three kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan {
    pub(super) forward: Impl,
    pub(super) input_grad: Impl,
    pub(super) weight_grad: Impl,
}

impl Plan {
    pub(super) fn all(imp: Impl) -> Self {
        Self {
            forward: imp,
            input_grad: imp,
            weight_grad: imp,
        }
    }
}

/// Winograd's forward products have one row per 2×2 tile: below this many rows they are too
/// short to beat im2col's (measured at the paper widths, batch 2: 8×8 planes lose, 16×16 win).
/// Its gradients win on the 8×8 planes too.
pub(crate) const WINOGRAD_MIN_TILES: usize = 128;
/// F(4×4, 3×3) has one product row per 4×4 tile: it beats F(2×2, 3×3) from this many
/// (measured at the paper widths, batch 2: the planes from 32×32 up win, 16×16 loses).
pub(crate) const WINOGRAD4_MIN_TILES: usize = 128;
/// Winograd needs at least this many channels on both sides: its transforms cost O(channels)
/// per tile against O(channels²) for the products.
pub(crate) const WINOGRAD_MIN_CHANNELS: usize = 64;

/// The plan a path resolves to for input `[b, cin, h, w]` and `cout` outputs; `None` for
/// Burn's generic one. The direct kernels pay off on long rows (for the up-convolution, its
/// output rows) and few channel pairs; Winograd on wide layers with enough tiles.
pub(super) fn resolve(
    path: ConvPath,
    kind: Kind,
    [n, cin, h, w]: [usize; 4],
    cout: usize,
) -> Option<Plan> {
    let out_plane = match kind {
        Kind::Conv3x3 => h * w,
        Kind::Up2x2 => 4 * h * w,
        // A 1×1 convolution is a matrix product whatever the shape.
        Kind::Conv1x1 => return (path != ConvPath::Generic).then_some(Plan::all(Impl::Gemm)),
    };
    let imp = match path {
        ConvPath::Direct => Impl::Direct,
        ConvPath::Gemm => Impl::Gemm,
        ConvPath::Winograd if kind == Kind::Conv3x3 => Impl::Winograd,
        ConvPath::Winograd => Impl::Gemm,
        ConvPath::Generic => return None,
        ConvPath::Auto
            if out_plane >= DIRECT_MIN_OUTPUT_PIXELS && cin * cout <= DIRECT_MAX_CHANNEL_PAIRS =>
        {
            Impl::Direct
        }
        ConvPath::Auto if kind == Kind::Conv3x3 && cin.min(cout) >= WINOGRAD_MIN_CHANNELS => {
            let tiles = n * h.div_ceil(2) * w.div_ceil(2);
            let tiles4 = n * h.div_ceil(4) * w.div_ceil(4);
            return Some(if tiles4 >= WINOGRAD4_MIN_TILES {
                Plan {
                    weight_grad: Impl::Winograd,
                    ..Plan::all(Impl::Winograd4)
                }
            } else if tiles >= WINOGRAD_MIN_TILES {
                Plan::all(Impl::Winograd)
            } else {
                Plan {
                    forward: Impl::Gemm,
                    ..Plan::all(Impl::Winograd)
                }
            });
        }
        ConvPath::Auto => Impl::Gemm,
    };
    Some(Plan::all(imp))
}

/// Forward, input-gradient and weight-gradient kernels on NCHW slices; the shape arguments
/// are the input's `[b, cin, h, w]` and `cout`.
pub(super) struct Kernels {
    pub(super) forward: ForwardKernel,
    pub(super) input_grad: GradientKernel,
    pub(super) weight_grad: GradientKernel,
}

/// `(x, weight, bias, [b, cin, h, w], cout) → y`.
pub(super) type ForwardKernel = fn(&[f32], &[f32], &[f32], [usize; 4], usize) -> Vec<f32>;
/// `(a, b, [b, cin, h, w], cout) → gradient`.
pub(super) type GradientKernel = fn(&[f32], &[f32], [usize; 4], usize) -> Vec<f32>;

pub(super) fn kernels(kind: Kind, plan: Plan) -> Kernels {
    Kernels {
        forward: table(kind, plan.forward).forward,
        input_grad: table(kind, plan.input_grad).input_grad,
        weight_grad: table(kind, plan.weight_grad).weight_grad,
    }
}

/// The three kernels of one implementation.
fn table(kind: Kind, imp: Impl) -> Kernels {
    match (kind, imp) {
        (Kind::Conv3x3, Impl::Direct) => Kernels {
            forward: direct::forward,
            input_grad: direct::input_grad,
            weight_grad: direct::weight_grad,
        },
        (Kind::Conv3x3, Impl::Gemm) => Kernels {
            forward: gemm::forward,
            input_grad: gemm::input_grad,
            weight_grad: gemm::weight_grad,
        },
        (Kind::Conv3x3, Impl::Winograd) => Kernels {
            forward: winograd::forward,
            input_grad: winograd::input_grad,
            weight_grad: winograd::weight_grad,
        },
        (Kind::Conv3x3, Impl::Winograd4) => Kernels {
            forward: winograd::forward_f4,
            input_grad: winograd::input_grad_f4,
            weight_grad: winograd::weight_grad,
        },
        (Kind::Up2x2, Impl::Direct) => Kernels {
            forward: direct::up_forward,
            input_grad: direct::up_input_grad,
            weight_grad: direct::up_weight_grad,
        },
        (Kind::Up2x2, Impl::Gemm | Impl::Winograd | Impl::Winograd4) => Kernels {
            forward: gemm::up_forward,
            input_grad: gemm::up_input_grad,
            weight_grad: gemm::up_weight_grad,
        },
        (Kind::Conv1x1, _) => Kernels {
            forward: gemm::pointwise_forward,
            input_grad: gemm::pointwise_input_grad,
            weight_grad: gemm::pointwise_weight_grad,
        },
    }
}
