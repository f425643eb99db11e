//! Goodfire's Llama SAEs (`get_goodfire_huggingface_loader`): one `torch.save`d file per
//! repository, `encoder_linear` / `decoder_linear` as `torch.nn.Linear` state (`weight [out, in]`,
//! transposed to SAELens's layout). The loader knows exactly two of them, by repository and file
//! name, and takes the model, hook and dataset from that table; saelab keeps the table and takes
//! the sizes from the tensors. A file opened without its repository is matched by its name, which
//! is the repository's name with `.pt`/`.pth`.

use serde_json::json;

use super::{config_err, linear_pair, object, Converted, SaeSource};
use crate::formats::FormatError;

/// `(repository, file, model, hook)` of each SAE `get_goodfire_config_from_hf` knows.
const KNOWN: &[(&str, &str, &str, &str)] = &[
    (
        "Goodfire/Llama-3.3-70B-Instruct-SAE-l50",
        "Llama-3.3-70B-Instruct-SAE-l50.pt",
        "meta-llama/Llama-3.3-70B-Instruct",
        "blocks.50.hook_resid_post",
    ),
    (
        "Goodfire/Llama-3.1-8B-Instruct-SAE-l19",
        "Llama-3.1-8B-Instruct-SAE-l19.pth",
        "meta-llama/Llama-3.1-8B-Instruct",
        "blocks.19.hook_resid_post",
    ),
];

/// Whether `name` is one of the files Goodfire's loader reads.
pub(super) fn is_known_file(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    KNOWN.iter().any(|(_, known, _, _)| *known == file)
}

pub(super) fn convert(source: &SaeSource<'_>) -> Result<Converted, FormatError> {
    let path = source.folder.trim_matches('/');
    let file = path.rsplit('/').next().unwrap_or(path);
    let known = KNOWN.iter().find(|(repo, name, _, _)| source.repo.is_none_or(|r| r == *repo) && *name == file);
    let &(_, _, model, hook) = known.ok_or_else(|| {
        config_err(
            path,
            format!(
                "not a Goodfire SAE SAELens knows (its loader reads only {})",
                KNOWN.iter().map(|(repo, name, _, _)| format!("{repo}/{name}")).collect::<Vec<_>>().join(" and ")
            ),
        )
    })?;

    let (mut out, d_in, d_sae) = linear_pair(source, path, "encoder_linear", "decoder_linear")?;
    out.cfg = object(json!({
        "architecture": "standard",
        "d_in": d_in,
        "d_sae": d_sae,
        "model_name": model,
        "hook_name": hook,
        "hook_head_index": null,
        // SAE.from_pretrained loads in float32 (its dtype argument); the loader names none.
        "dtype": "float32",
        "dataset_path": "lmsys/lmsys-chat-1m",
        "apply_b_dec_to_input": false,
    }));
    Ok(out)
}
