//! The backward pass of the project's kernels on Burn's autodiff graph over Flex: each op is
//! recorded with what its backward needs (checkpointed inputs, the fused ReLU's output), and
//! its gradients come from the input- and weight-gradient kernels its [`Plan`] names.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::FloatTensor;
use rayon::prelude::*;

use super::flex::{contiguous, dims4, from_vec, norm_forward, out_channels, run_forward, values};
use super::norm::{self, NormAct};
use super::policy::{Kind, Plan, kernels, resolve};
use super::{ConvPath, KernelBackend, Normalized, direct, generic};

/// the fused ReLU when there is one.
#[derive(Debug)]
struct KernelBackward {
    kind: Kind,
    plan: Plan,
}

/// What the backward pass keeps: the checkpointed input and weight, and the output when a
/// ReLU was fused (its positive entries are where the gradient passes).
type BackwardState = (NodeId, NodeId, Option<FlexTensor>);

impl Backward<Flex, 3> for KernelBackward {
    type State = BackwardState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w, node_b] = ops.parents;
        let (x_state, w_state, relu_output) = ops.state;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let out_dims = dims4(&dy);
        // Through the fused ReLU, the gradient passes where the output is positive.
        let dy: std::borrow::Cow<[f32]> = match relu_output {
            Some(out) => {
                let out = contiguous(out);
                values(&dy)
                    .par_iter()
                    .zip(values(&out))
                    .map(|(&g, &o)| if o > 0.0 { g } else { 0.0 })
                    .collect::<Vec<f32>>()
                    .into()
            }
            None => values(&dy).into(),
        };
        let x = contiguous(checkpointer.retrieve_node_output(x_state));
        let w = contiguous(checkpointer.retrieve_node_output(w_state));
        let (dims, w_shape) = (dims4(&x), dims4(&w).to_vec());
        let cout = out_dims[1];
        let k = kernels(self.kind, self.plan);
        if let Some(node) = node_x {
            let dx = (k.input_grad)(&dy, values(&w), dims, cout);
            grads.register::<Flex>(node.id, from_vec(dx, dims.to_vec()));
        }
        if let Some(node) = node_w {
            let dw = (k.weight_grad)(&dy, values(&x), dims, cout);
            grads.register::<Flex>(node.id, from_vec(dw, w_shape));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(
                node.id,
                from_vec(direct::bias_grad(&dy, out_dims, cout), vec![cout]),
            );
        }
    }
}

/// Records one of the project's kernels on the autodiff graph.
fn tracked<C: CheckpointStrategy>(
    kind: Kind,
    plan: Plan,
    x: FloatTensor<Autodiff<Flex, C>>,
    weight: FloatTensor<Autodiff<Flex, C>>,
    bias: FloatTensor<Autodiff<Flex, C>>,
    relu: bool,
) -> FloatTensor<Autodiff<Flex, C>> {
    match (KernelBackward { kind, plan })
        .prepare::<C>([x.node.clone(), weight.node.clone(), bias.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(&x);
            let w_state = prep.checkpoint(&weight);
            let out = run_forward(
                kind,
                plan,
                x.primitive,
                weight.primitive,
                bias.primitive,
                relu,
            );
            let relu_output = relu.then(|| out.clone());
            prep.finish((x_state, w_state, relu_output), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(run_forward(
            kind,
            plan,
            x.primitive,
            weight.primitive,
            bias.primitive,
            relu,
        )),
    }
}

/// One of the convolutions on `[x, weight, bias]`: the project's kernel its plan names,
/// recorded on the graph, or Burn's op (`fallback`) for [`ConvPath::Generic`].
fn kernel_op<C: CheckpointStrategy>(
    kind: Kind,
    [x, weight, bias]: [FloatTensor<Autodiff<Flex, C>>; 3],
    relu: bool,
    path: ConvPath,
    fallback: impl FnOnce([FloatTensor<Autodiff<Flex, C>>; 3]) -> FloatTensor<Autodiff<Flex, C>>,
) -> FloatTensor<Autodiff<Flex, C>> {
    let (dims, cout) = (dims4(&x.primitive), out_channels(kind, &weight.primitive));
    match resolve(path, kind, dims, cout) {
        Some(plan) => tracked::<C>(kind, plan, x, weight, bias, relu),
        None => fallback([x, weight, bias]),
    }
}

impl<C: CheckpointStrategy> KernelBackend for Autodiff<Flex, C> {
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu: bool,
        path: ConvPath,
    ) -> FloatTensor<Self> {
        kernel_op::<C>(Kind::Conv3x3, [x, weight, bias], relu, path, |[x, w, b]| {
            generic::conv3x3::<Self>(x, w, b, relu)
        })
    }

    fn up2x2(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        path: ConvPath,
    ) -> FloatTensor<Self> {
        kernel_op::<C>(Kind::Up2x2, [x, weight, bias], false, path, |[x, w, b]| {
            generic::up2x2::<Self>(x, w, b)
        })
    }

    fn conv1x1(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        path: ConvPath,
    ) -> FloatTensor<Self> {
        kernel_op::<C>(
            Kind::Conv1x1,
            [x, weight, bias],
            false,
            path,
            |[x, w, b]| generic::conv1x1::<Self>(x, w, b),
        )
    }

    fn max_pool2x2(x: FloatTensor<Self>, path: ConvPath) -> FloatTensor<Self> {
        if path == ConvPath::Generic {
            return generic::max_pool2x2::<Self>(x);
        }
        match PoolBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                prep.finish(x_state, Flex::max_pool2x2(x.primitive, path))
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::max_pool2x2(x.primitive, path)),
        }
    }

    fn cat_channels(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        path: ConvPath,
    ) -> FloatTensor<Self> {
        if path == ConvPath::Generic {
            return generic::cat_channels::<Self>(a, b);
        }
        let channels = [dims4(&a.primitive)[1], dims4(&b.primitive)[1]];
        match CatBackward
            .prepare::<C>([a.node.clone(), b.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                prep.finish(channels, Flex::cat_channels(a.primitive, b.primitive, path))
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Flex::cat_channels(a.primitive, b.primitive, path))
            }
        }
    }

    fn fuses_norm(path: ConvPath) -> bool {
        Flex::fuses_norm(path)
    }

    /// Training statistics only: under given (running) statistics the backward pass would
    /// differ, and training never normalises with them.
    fn norm_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        op: NormAct,
        running: Option<[FloatTensor<Self>; 2]>,
        path: ConvPath,
    ) -> Result<Normalized<Self>, FloatTensor<Self>> {
        if !Self::fuses_norm(path) || running.is_some() {
            return Err(x);
        }
        Ok(tracked_norm::<C>(x, gamma, beta, op))
    }
}

/// Records the fused norm and activation on the autodiff graph; the statistics come back
/// untracked (they only feed BatchNorm's running averages).
fn tracked_norm<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    gamma: FloatTensor<Autodiff<Flex, C>>,
    beta: FloatTensor<Autodiff<Flex, C>>,
    op: NormAct,
) -> Normalized<Autodiff<Flex, C>> {
    use burn::tensor::backend::AutodiffBackend;
    let prepared = NormBackward
        .prepare::<C>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
        .compute_bound()
        .stateful();
    let (x_value, gamma_value) = (x.primitive, gamma.primitive);
    let (y, mean, var) = norm_forward(
        x_value.clone(),
        gamma_value.clone(),
        beta.primitive,
        op,
        None,
    );
    let y = match prepared {
        OpsKind::Tracked(prep) => {
            let state = NormState {
                x: x_value,
                y: y.clone(),
                mean: mean.clone(),
                var: var.clone(),
                gamma: gamma_value,
                op,
            };
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    (
        y,
        Autodiff::<Flex, C>::from_inner(mean),
        Autodiff::<Flex, C>::from_inner(var),
    )
}

/// What the fused norm's backward pass keeps: its input and output, the statistics and γ.
#[derive(Debug, Clone)]
struct NormState {
    x: FlexTensor,
    y: FlexTensor,
    mean: FlexTensor,
    var: FlexTensor,
    gamma: FlexTensor,
    op: NormAct,
}

/// The fused norm's backward pass, through the statistics (see [`norm::backward`]).
#[derive(Debug)]
struct NormBackward;

impl Backward<Flex, 3> for NormBackward {
    type State = NormState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let s = ops.state;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let dims = dims4(&dy);
        let [n, c, h, w] = dims;
        let (x, y, mean, var, gamma) = (
            contiguous(s.x),
            contiguous(s.y),
            contiguous(s.mean),
            contiguous(s.var),
            contiguous(s.gamma),
        );
        let saved = norm::Saved {
            x: values(&x),
            y: values(&y),
            mean: values(&mean),
            var: values(&var),
            gamma: values(&gamma),
        };
        let (dx, dgamma, dbeta) = norm::backward(values(&dy), &saved, [n, c, h * w], &s.op);
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, from_vec(dx, dims.to_vec()));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, from_vec(dgamma, vec![c]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, from_vec(dbeta, vec![c]));
        }
    }
}

/// The concatenation's backward pass: the gradient split back into its two channel ranges,
/// each a contiguous tensor.
#[derive(Debug)]
struct CatBackward;

impl Backward<Flex, 2> for CatBackward {
    type State = [usize; 2];

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_a, node_b] = ops.parents;
        let [ca, cb] = ops.state;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let [n, _, h, w] = dims4(&dy);
        let (da, db) = direct::deinterleave(values(&dy), [n, ca, cb, h * w]);
        if let Some(node) = node_a {
            grads.register::<Flex>(node.id, from_vec(da, vec![n, ca, h, w]));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, from_vec(db, vec![n, cb, h, w]));
        }
    }
}

/// The max-pool's backward pass: the gradient goes to each window's maximum, found again from
/// the checkpointed input (cheaper than keeping indices).
#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    type State = NodeId;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let x = contiguous(checkpointer.retrieve_node_output(ops.state));
        if let Some(node) = node_x {
            let dims = dims4(&x);
            let dx = direct::max_pool_input_grad(values(&dy), values(&x), dims);
            grads.register::<Flex>(node.id, from_vec(dx, dims.to_vec()));
        }
    }
}
