//! Parsing and writing files. Nothing here touches the GPU: bytes in, plain host types out.

pub mod corpus;
pub mod gpt2_files;
pub mod npy;
pub mod sae_files;
pub mod safetensors;
pub mod tokenizer;

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
}
