//! Model parameters as bytes (Burn's named MessagePack, full precision): what checkpoints hold,
//! written by training and read by `predict` and resumed runs alike.

use anyhow::{Context, Result, bail};
use burn::module::{ModuleVisitor, Param};
use burn::prelude::{Bool, Int, Tensor};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};

/// The one recorder of checkpoints (model and optimizer state); it reports corrupt bytes as
/// errors rather than panicking.
pub(crate) fn recorder() -> NamedMpkBytesRecorder<FullPrecisionSettings> {
    NamedMpkBytesRecorder::<FullPrecisionSettings>::default()
}

/// The model's parameters as bytes.
pub(crate) fn model_to_bytes<B: burn::prelude::Backend, M: burn::module::Module<B>>(
    model: &M,
) -> Result<Vec<u8>> {
    Ok(recorder().record(model.clone().into_record(), ())?)
}

/// The network a run's config describes, with the parameters of the checkpoint at `path`.
pub(crate) fn load_checkpoint<B: crate::kernels::KernelBackend>(
    path: &std::path::Path,
    config: &crate::config::RunConfig,
    device: &B::Device,
) -> Result<super::UNet<B>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the checkpoint {}", path.display()))?;
    let model = super::UNet::<B>::new(&config.model, config.train.loss, device);
    model_from_bytes(model, bytes, device)
        .with_context(|| format!("cannot load {}", path.display()))
}

/// Loads parameters saved by [`model_to_bytes`] into `model`, once every tensor of the bytes
/// has the shape of the parameter it replaces: Burn loads a record of another network without
/// looking (or panics on a list of another length), and the kernels then fail on the shapes.
pub(crate) fn model_from_bytes<B: burn::prelude::Backend, M: burn::module::Module<B>>(
    model: M,
    mut bytes: Vec<u8>,
    device: &B::Device,
) -> Result<M> {
    check_shapes::<B, M>(&model, &mut bytes)?;
    let record = Recorder::<B>::load(&recorder(), bytes, device).context(
        "the model parameters cannot be read (corrupt checkpoint, or another network shape)",
    )?;
    Ok(model.load_record(record))
}

/// A parameter's path in the module tree (`downs.0.conv.conv1.weight`) and its shape.
type Shapes = Vec<(String, Vec<usize>)>;

/// Compares the tensors of `bytes` with the parameters of `model`, by path.
fn check_shapes<B: burn::prelude::Backend, M: burn::module::Module<B>>(
    model: &M,
    bytes: &mut Vec<u8>,
) -> Result<()> {
    let mut expected = ParamShapes::default();
    model.visit(&mut expected);
    let stored: Envelope = Recorder::<B>::load_item(&recorder(), bytes).map_err(|e| {
        anyhow::anyhow!("the model parameters cannot be read (corrupt checkpoint): {e}")
    })?;
    let mut found = Vec::new();
    stored.item.tensors(&mut Vec::new(), &mut found)?;
    compare_shapes(&expected.shapes, &found)
}

/// The first difference between the network's parameters and the checkpoint's tensors.
fn compare_shapes(expected: &Shapes, found: &Shapes) -> Result<()> {
    let hint = "it was saved by another network (model.widths, model.presence_head, model.norm \
                and train.loss decide the shapes)";
    for (path, shape) in expected {
        match found.iter().find(|(p, _)| p == path) {
            None => bail!(
                "the checkpoint has no parameter `{path}` (shape {shape:?}) that the network \
                 has: {hint}"
            ),
            Some((_, stored)) if stored != shape => bail!(
                "parameter `{path}` has shape {stored:?} in the checkpoint but {shape:?} in the \
                 network: {hint}"
            ),
            Some(_) => {}
        }
    }
    if let Some((path, shape)) = found
        .iter()
        .find(|(p, _)| !expected.iter().any(|(e, _)| e == p))
    {
        bail!(
            "the checkpoint has a parameter `{path}` (shape {shape:?}) that the network does not \
             have: {hint}"
        );
    }
    Ok(())
}

/// Collects every parameter's path and shape (without initialising lazy parameters).
#[derive(Default)]
struct ParamShapes {
    path: Vec<String>,
    shapes: Shapes,
}

impl ParamShapes {
    fn push(&mut self, shape: burn::tensor::Shape) {
        self.shapes
            .push((self.path.join("."), shape.as_slice().to_vec()));
    }
}

impl<B: burn::prelude::Backend> ModuleVisitor<B> for ParamShapes {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.push(param.lazy_shape());
    }
    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<B, D, Int>>) {
        self.push(param.lazy_shape());
    }
    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<B, D, Bool>>) {
        self.push(param.lazy_shape());
    }
}

/// A record as Burn writes it (`{metadata, item}`), the item read as a [`Tree`].
#[derive(serde::Deserialize)]
struct Envelope {
    item: Tree,
}

/// The structure of a record without its tensor bytes (only their length is kept): maps of
/// field names, lists, numbers and strings. A parameter is a map `{id, param: {bytes, shape,
/// dtype}}`.
enum Tree {
    Map(Vec<(String, Tree)>),
    Seq(Vec<Tree>),
    Int(u64),
    Str(String),
    Bytes(usize),
    Other,
}

impl Tree {
    fn get(&self, key: &str) -> Option<&Tree> {
        match self {
            Tree::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Every parameter under this node with its path; a parameter whose bytes do not match its
    /// shape is an error (a truncated or corrupt checkpoint).
    fn tensors(&self, path: &mut Vec<String>, out: &mut Shapes) -> Result<()> {
        if let (Some(_), Some(param)) = (self.get("id"), self.get("param")) {
            let shape = param.shape().with_context(|| {
                format!(
                    "parameter `{}` has no shape (corrupt checkpoint)",
                    path.join(".")
                )
            })?;
            param.check_bytes(&path.join("."), &shape)?;
            out.push((path.join("."), shape));
            return Ok(());
        }
        let children: Vec<(String, &Tree)> = match self {
            Tree::Map(entries) => entries.iter().map(|(k, v)| (k.clone(), v)).collect(),
            Tree::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
            _ => Vec::new(),
        };
        for (name, child) in children {
            path.push(name);
            child.tensors(path, out)?;
            path.pop();
        }
        Ok(())
    }

    fn shape(&self) -> Option<Vec<usize>> {
        let Some(Tree::Seq(dims)) = self.get("shape") else {
            return None;
        };
        dims.iter()
            .map(|d| match d {
                Tree::Int(n) => usize::try_from(*n).ok(),
                _ => None,
            })
            .collect()
    }

    /// The tensor's bytes hold exactly its shape's elements (when its element type is known).
    fn check_bytes(&self, path: &str, shape: &[usize]) -> Result<()> {
        let (Some(Tree::Bytes(len)), Some(Tree::Str(dtype))) =
            (self.get("bytes"), self.get("dtype"))
        else {
            return Ok(());
        };
        let Some(size) = element_size(dtype) else {
            return Ok(());
        };
        let needed = shape.iter().try_fold(size, |acc, &d| acc.checked_mul(d));
        if needed != Some(*len) {
            bail!(
                "parameter `{path}` holds {len} bytes, not the {} its shape {shape:?} of {dtype} \
                 needs (a truncated or corrupt checkpoint)",
                needed.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string())
            );
        }
        Ok(())
    }
}

/// Bytes per element of a Burn `DType` as serialised (`"F32"`); `None` for the others.
fn element_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "Flex32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "Bool" => 1,
        _ => return None,
    })
}

impl<'de> serde::Deserialize<'de> for Tree {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Tree, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> serde::de::Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Burn record")
    }
    fn visit_u64<E>(self, v: u64) -> Result<Tree, E> {
        Ok(Tree::Int(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Tree, E> {
        Ok(u64::try_from(v).map_or(Tree::Other, Tree::Int))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Tree, E> {
        Ok(Tree::Other)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Tree, E> {
        Ok(Tree::Other)
    }
    fn visit_str<E>(self, v: &str) -> Result<Tree, E> {
        Ok(Tree::Str(v.to_string()))
    }
    // Tensor contents: only their length matters here, so they are never copied.
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Tree, E> {
        Ok(Tree::Bytes(v.len()))
    }
    fn visit_unit<E>(self) -> Result<Tree, E> {
        Ok(Tree::Other)
    }
    fn visit_none<E>(self) -> Result<Tree, E> {
        Ok(Tree::Other)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Tree>()? {
            items.push(item);
        }
        Ok(Tree::Seq(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<Tree, Tree>()? {
            let key = match key {
                Tree::Str(s) => s,
                Tree::Int(n) => n.to_string(),
                _ => String::new(),
            };
            entries.push((key, value));
        }
        Ok(Tree::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LossKind, ModelConfig};
    use burn::backend::Flex;

    fn net(widths: &[usize], presence_head: bool) -> crate::model::UNet<Flex> {
        let config = ModelConfig {
            widths: widths.to_vec(),
            presence_head,
            ..ModelConfig::default()
        };
        crate::model::UNet::new(&config, LossKind::Mse, &Default::default())
    }

    fn load(from: &crate::model::UNet<Flex>, into: crate::model::UNet<Flex>) -> Result<()> {
        let bytes = model_to_bytes(from)?;
        model_from_bytes(into, bytes, &Default::default()).map(|_| ())
    }

    #[test]
    fn only_a_checkpoint_of_the_same_network_is_loaded() {
        load(&net(&[2, 4], false), net(&[2, 4], false)).unwrap();
        let err = load(&net(&[3, 4], false), net(&[2, 4], false)).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "parameter `inc.conv1.weight` has shape [3, 1, 3, 3] in the checkpoint but \
                 [2, 1, 3, 3] in the network"
            ),
            "{err}"
        );
        // One level more: Burn alone would panic on the length of the list of levels.
        let err = load(&net(&[2, 4, 8], false), net(&[2, 4], false)).unwrap_err();
        assert!(
            err.to_string().starts_with("parameter `ups.0.up.weight`"),
            "{err}"
        );
        let err = load(&net(&[2, 4], true), net(&[2, 4], false)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the checkpoint has a parameter `presence.weight`"),
            "{err}"
        );
        assert!(
            err.to_string().contains("that the network does not have"),
            "{err}"
        );
        let err = load(&net(&[2, 4], false), net(&[2, 4], true)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the checkpoint has no parameter `presence.weight`"),
            "{err}"
        );
        assert!(load(&net(&[2, 4], false), net(&[2, 4], false)).is_ok());
        let err = model_from_bytes(net(&[2], false), vec![1, 2, 3], &Default::default());
        assert!(err.is_err());
    }
}
