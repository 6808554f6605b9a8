//! Helpers every layer may use; they use nothing of unet-lab's own.

pub mod fs;
pub mod hash;
pub mod host;
pub mod time;
