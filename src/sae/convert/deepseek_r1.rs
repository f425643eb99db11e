//! qresearch's SAE on DeepSeek-R1-Distill-Llama-8B (`deepseek_r1_sae_huggingface_loader`): one
//! `torch.save`d file, `encoder` / `decoder` as `torch.nn.Linear` state (transposed to SAELens's
//! layout); a ReLU SAE at `blocks.L.hook_resid_post`, L the first `l(\d+)` of the file's name, as
//! the loader's regular expression finds it. The loader writes d_in 4096 and d_sae 65536; saelab
//! takes the sizes from the tensors.

use serde_json::json;

use super::{config_err, linear_pair, number_after, object, Converted, SaeSource};
use crate::formats::FormatError;

/// The number after the first `l` that a digit follows (`re.search(r"l(\d+)", folder_name)`).
fn layer(name: &str) -> Option<usize> {
    number_after(name, "l")
}

/// Whether `name` is qresearch's file (`DeepSeek-R1-Distill-Llama-8B-SAE-l19.pt`) rather than
/// another single-file format's.
pub(super) fn is_file(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    file.starts_with("DeepSeek-R1-Distill") && file.ends_with(".pt") && layer(file).is_some()
}

pub(super) fn convert(source: &SaeSource<'_>) -> Result<Converted, FormatError> {
    let path = source.folder.trim_matches('/');
    let layer = layer(path).ok_or_else(|| {
        config_err(path, "the file's name gives no layer (the loader reads it from 'l' and digits, as in ...-SAE-l19.pt)")
    })?;

    let (mut out, d_in, d_sae) = linear_pair(source, path, "encoder", "decoder")?;
    out.cfg = object(json!({
        "architecture": "standard",
        "d_in": d_in,
        "d_sae": d_sae,
        // SAE.from_pretrained loads in float32 whatever the loader says (its dtype argument).
        "dtype": "float32",
        "context_size": 1024,
        "model_name": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
        "hook_name": format!("blocks.{layer}.hook_resid_post"),
        "hook_head_index": null,
        "prepend_bos": true,
        "dataset_path": "lmsys/lmsys-chat-1m",
        "dataset_trust_remote_code": true,
        "sae_lens_training_version": null,
        "activation_fn": "relu",
        "normalize_activations": "none",
        "apply_b_dec_to_input": false,
        "finetuning_scaling_factor": false,
    }));
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_layer_as_the_loaders_expression_does() {
        assert_eq!(super::layer("DeepSeek-R1-Distill-Llama-8B-SAE-l19.pt"), Some(19));
        assert_eq!(super::layer("sae-l7-and-l9.pt"), Some(7));
        assert_eq!(super::layer("Llama-8B-SAE.pt"), None);
    }
}
