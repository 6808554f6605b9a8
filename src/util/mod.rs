//! Helpers every layer may use; they use nothing of unet-lab's own.

pub mod crop;
pub mod fs;
pub mod hash;
pub mod host;
pub mod noise;
pub mod owned;
pub mod png;
pub mod time;
