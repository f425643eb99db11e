//! Generic file formats: safetensors, npy and npz, ZIP, PyTorch state dicts, text corpora,
//! tokenizers. Bytes in, plain containers out; nothing here knows an SAE or a model (their folder
//! layouts live in `sae::files` and `model::files`) or touches the GPU.

pub mod corpus;
pub mod npy;
pub mod pytorch;
pub mod safetensors;
pub mod shards;
pub mod tokenizer;
pub mod zip;

/// A file that could not be read, with the file's name and what is wrong with it.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum FormatError {
    #[error("{file}: {msg}")]
    Npy { file: String, msg: String },
    #[error("{file}: {msg}")]
    Safetensors { file: String, msg: String },
    #[error("{file}: {msg}")]
    Config { file: String, msg: String },
    #[error("{file}: {msg}")]
    Io { file: String, msg: String },
    #[error("{file}: {msg}")]
    Corpus { file: String, msg: String },
    #[error("{file}: {msg}")]
    Archive { file: String, msg: String },
}
