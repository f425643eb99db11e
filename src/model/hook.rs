//! Hook points: the places in a forward pass where an activation can be read or changed, named as
//! TransformerLens names them (SAELens's `hook_name` is one of these strings). Parsed once into a
//! `HookPoint`; everything past the parser matches on the type, not on strings.

use std::fmt;

/// A hook point inside transformer block `layer` (TransformerLens's `blocks.{layer}.…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockSite {
    /// `hook_resid_pre`: the residual stream entering the block.
    ResidPre,
    /// `attn.hook_z`: each head's weighted values, heads concatenated (`[n, n_heads·d_head]`).
    AttnZ,
    /// `hook_attn_out`: the attention's output projection.
    AttnOut,
    /// `hook_resid_mid`: the residual stream after attention, before the MLP (sequential blocks
    /// only: a parallel block has none, as in TransformerLens).
    ResidMid,
    /// `hook_mlp_in`: what enters the MLP's norm — a copy of `hook_resid_mid` (of `hook_resid_pre`
    /// in a parallel block). Changing it changes the MLP's input only, not the residual stream
    /// (TransformerLens's `use_hook_mlp_in`).
    MlpIn,
    /// `ln2.hook_normalized`: the MLP's norm before its weight (and bias) — TransformerLens's
    /// LayerNorm and RMSNorm hook `x / scale` (centred first for LayerNorm).
    Ln2Normalized,
    /// `ln2.hook_out`: the MLP's norm with its weight, what the MLP reads (TransformerLens's
    /// TransformerBridge name; Hugging Face's `pre_feedforward_layernorm.output` in Gemma).
    Ln2Out,
    /// `hook_mlp_out`: the MLP's output.
    MlpOut,
    /// `hook_resid_post`: the residual stream leaving the block.
    ResidPost,
}

impl BlockSite {
    /// Every site, in the order the forward pass reaches them.
    pub const ALL: [BlockSite; 9] = [
        BlockSite::ResidPre,
        BlockSite::AttnZ,
        BlockSite::AttnOut,
        BlockSite::ResidMid,
        BlockSite::MlpIn,
        BlockSite::Ln2Normalized,
        BlockSite::Ln2Out,
        BlockSite::MlpOut,
        BlockSite::ResidPost,
    ];

    /// The TransformerLens name within a block.
    pub fn name(self) -> &'static str {
        match self {
            BlockSite::ResidPre => "hook_resid_pre",
            BlockSite::AttnZ => "attn.hook_z",
            BlockSite::AttnOut => "hook_attn_out",
            BlockSite::ResidMid => "hook_resid_mid",
            BlockSite::MlpIn => "hook_mlp_in",
            BlockSite::Ln2Normalized => "ln2.hook_normalized",
            BlockSite::Ln2Out => "ln2.hook_out",
            BlockSite::MlpOut => "hook_mlp_out",
            BlockSite::ResidPost => "hook_resid_post",
        }
    }
}

/// One hook point of a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookPoint {
    /// `hook_embed`: the token embeddings.
    Embed,
    /// `hook_pos_embed`: the learned position embeddings.
    PosEmbed,
    Block {
        layer: usize,
        site: BlockSite,
    },
    /// `ln_final.hook_normalized`: the final LayerNorm's output, before the unembedding.
    FinalNormalized,
}

impl HookPoint {
    pub fn block(layer: usize, site: BlockSite) -> HookPoint {
        HookPoint::Block { layer, site }
    }

    /// The block this hook point is in, if any.
    pub fn layer(self) -> Option<usize> {
        match self {
            HookPoint::Block { layer, .. } => Some(layer),
            _ => None,
        }
    }

    /// Reads a TransformerLens hook name, or one of the Hugging Face module names Gemma Scope 2's
    /// configs use for the same points (see [`HF_MODULE_SITES`]). Only the form is checked here;
    /// whether the model has the point is the model's question (`DecoderConfig::hook_point`).
    pub fn parse(name: &str) -> Option<HookPoint> {
        match name {
            "hook_embed" => return Some(HookPoint::Embed),
            "hook_pos_embed" => return Some(HookPoint::PosEmbed),
            "ln_final.hook_normalized" => return Some(HookPoint::FinalNormalized),
            _ => {}
        }
        // A multimodal Gemma 3's text model is `model.language_model` in transformers' module tree.
        if let Some(rest) = name.strip_prefix("model.layers.").or_else(|| name.strip_prefix("model.language_model.layers.")) {
            let (layer, module) = rest.split_once('.')?;
            let (_, site) = HF_MODULE_SITES.iter().find(|(m, _)| *m == module)?;
            return Some(HookPoint::Block { layer: layer_number(layer)?, site: *site });
        }
        let (layer, site) = name.strip_prefix("blocks.")?.split_once('.')?;
        // TransformerBridge's name for the MLP's input is the same point as ln2's output.
        let site = if site == "mlp.hook_in" { BlockSite::Ln2Out } else { BlockSite::ALL.into_iter().find(|s| s.name() == site)? };
        Some(HookPoint::Block { layer: layer_number(layer)?, site })
    }

    /// Whether `name` is one of the Hugging Face module names that only Gemma's four-norm block
    /// has (`pre_feedforward_layernorm`, `post_feedforward_layernorm`).
    pub fn names_gemma_module(name: &str) -> bool {
        (name.starts_with("model.layers.") || name.starts_with("model.language_model.layers.")) && name.contains("_feedforward_layernorm.")
    }
}

/// Hugging Face module points (`model.layers.L.{module}`) as Gemma Scope 2's configs name them
/// (`hf_hook_point_in`/`_out`), and the TransformerLens point each is. The post-feed-forward norm's
/// output is what the block adds to the residual stream, TransformerLens's `hook_mlp_out`.
pub const HF_MODULE_SITES: [(&str, BlockSite); 4] = [
    ("output", BlockSite::ResidPost),
    ("self_attn.o_proj.input", BlockSite::AttnZ),
    ("pre_feedforward_layernorm.output", BlockSite::Ln2Out),
    ("post_feedforward_layernorm.output", BlockSite::MlpOut),
];

/// A layer number as the names write it: digits only, no sign, no leading zero (`blocks.01.…`
/// is not a TransformerLens name).
fn layer_number(digits: &str) -> Option<usize> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    digits.parse().ok()
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookPoint::Embed => f.write_str("hook_embed"),
            HookPoint::PosEmbed => f.write_str("hook_pos_embed"),
            HookPoint::Block { layer, site } => write!(f, "blocks.{layer}.{}", site.name()),
            HookPoint::FinalNormalized => f.write_str("ln_final.hook_normalized"),
        }
    }
}

impl std::str::FromStr for HookPoint {
    type Err = String;
    fn from_str(name: &str) -> Result<HookPoint, String> {
        HookPoint::parse(name).ok_or_else(|| format!("'{name}' is not a TransformerLens hook name"))
    }
}

// Saved (checkpoints, JSON) by its TransformerLens name.
impl serde::Serialize for HookPoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for HookPoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<HookPoint, D::Error> {
        let name = String::deserialize(d)?;
        HookPoint::parse(&name).ok_or_else(|| serde::de::Error::custom(format!("'{name}' is not a TransformerLens hook name")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let mut all = vec![HookPoint::Embed, HookPoint::PosEmbed, HookPoint::FinalNormalized];
        all.extend(BlockSite::ALL.iter().map(|&s| HookPoint::block(11, s)));
        for hook in all {
            assert_eq!(HookPoint::parse(&hook.to_string()), Some(hook), "{hook}");
        }
        assert_eq!(HookPoint::parse("blocks.3.hook_resid_pre"), Some(HookPoint::block(3, BlockSite::ResidPre)));
        assert_eq!(HookPoint::parse("blocks.3.mlp.hook_in"), Some(HookPoint::block(3, BlockSite::Ln2Out)));
    }

    #[test]
    fn gemma_scope_2_module_names_are_the_same_points() {
        let at = |layer, site| Some(HookPoint::block(layer, site));
        assert_eq!(HookPoint::parse("model.layers.12.output"), at(12, BlockSite::ResidPost));
        assert_eq!(HookPoint::parse("model.layers.0.self_attn.o_proj.input"), at(0, BlockSite::AttnZ));
        assert_eq!(HookPoint::parse("model.layers.7.pre_feedforward_layernorm.output"), at(7, BlockSite::Ln2Out));
        assert_eq!(HookPoint::parse("model.layers.7.post_feedforward_layernorm.output"), at(7, BlockSite::MlpOut));
        assert_eq!(HookPoint::parse("model.language_model.layers.7.pre_feedforward_layernorm.output"), at(7, BlockSite::Ln2Out));
        for bad in
            ["model.layers.1", "model.layers.01.output", "model.layers.1.mlp.output", "model.layers.x.output", "model.layers..output"]
        {
            assert_eq!(HookPoint::parse(bad), None, "{bad:?}");
        }
        assert!(HookPoint::names_gemma_module("model.layers.7.post_feedforward_layernorm.output"));
        assert!(!HookPoint::names_gemma_module("model.layers.7.output"));
    }

    #[test]
    fn malformed_names_are_not_hook_points() {
        for bad in [
            "",
            "blocks.",
            "blocks.x.hook_resid_pre",
            "blocks.-1.hook_resid_pre",
            "blocks.+1.hook_resid_pre",
            "blocks.01.hook_resid_pre",
            "blocks.1.hook_resid",
            "blocks.1",
            "blocks.99999999999999999999999.hook_resid_pre",
            "hook_embed ",
            "blocks.1.attn.hook_q",
        ] {
            assert_eq!(HookPoint::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn serde_uses_the_name() {
        let hook = HookPoint::block(2, BlockSite::MlpOut);
        let json = serde_json::to_string(&hook).unwrap();
        assert_eq!(json, "\"blocks.2.hook_mlp_out\"");
        assert_eq!(serde_json::from_str::<HookPoint>(&json).unwrap(), hook);
        assert!(serde_json::from_str::<HookPoint>("\"blocks.2.nope\"").is_err());
    }
}
