//! libtorch process state: which device a command uses and at which precision it computes (autocast, loss
//! scaling, TF32, fused clipping). Imports only `util`.

pub mod amp;
pub(crate) mod device;
