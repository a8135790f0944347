//! The multi-task model: the shared sentence encoder, one head per task, parameter groups, freezing plans,
//! the final weights on disk, and metrics of a task's predictions. Imports `util`, `runtime`, `encoder`,
//! `data`, `config` and `record`.

pub(crate) mod checkpoint;
pub(crate) mod embedding_task;
pub mod export;
pub(crate) mod freeze;
pub(crate) mod group;
pub(crate) mod heads;
pub mod lora;
pub(crate) mod metrics;
pub(crate) mod multitask;
pub mod objective;
pub(crate) mod report;
pub(crate) mod task;
pub(crate) mod tensor_file;

pub use group::Group;
pub use metrics::{pearson, spearman};
pub use multitask::MultiTaskModel;
