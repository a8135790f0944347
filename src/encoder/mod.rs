//! The sentence encoder: model folders (local, packaged, Hugging Face cache), the WordPiece tokenizer, the
//! rust-bert backbone loaded strictly, pooling and normalisation. Imports `util` and `runtime` only; knows
//! nothing of tasks, training or runs.

pub(crate) mod backbone;
pub(crate) mod hub_cache;
pub(crate) mod model_folder;
pub(crate) mod pooling;
pub(crate) mod sentence;
pub(crate) mod shape_check;
pub(crate) mod tokenizer;

pub use backbone::Encoder;
pub use model_folder::{Architecture, ModelFolder};
pub use pooling::{pool, Pooling};
pub use sentence::{SentenceEncoder, SentenceOptions};
pub use tokenizer::TextTokenizer;
