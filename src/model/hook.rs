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
    /// `hook_resid_mid`: the residual stream after attention, before the MLP.
    ResidMid,
    /// `hook_mlp_out`: the MLP's output.
    MlpOut,
    /// `hook_resid_post`: the residual stream leaving the block.
    ResidPost,
}

impl BlockSite {
    /// Every site, in the order the forward pass reaches them.
    pub const ALL: [BlockSite; 6] =
        [BlockSite::ResidPre, BlockSite::AttnZ, BlockSite::AttnOut, BlockSite::ResidMid, BlockSite::MlpOut, BlockSite::ResidPost];

    /// The TransformerLens name within a block.
    pub fn name(self) -> &'static str {
        match self {
            BlockSite::ResidPre => "hook_resid_pre",
            BlockSite::AttnZ => "attn.hook_z",
            BlockSite::AttnOut => "hook_attn_out",
            BlockSite::ResidMid => "hook_resid_mid",
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

    /// Reads a TransformerLens hook name. Only the form is checked here; whether the layer exists
    /// is the model's question (`Gpt2Config::hook_point`).
    pub fn parse(name: &str) -> Option<HookPoint> {
        match name {
            "hook_embed" => return Some(HookPoint::Embed),
            "hook_pos_embed" => return Some(HookPoint::PosEmbed),
            "ln_final.hook_normalized" => return Some(HookPoint::FinalNormalized),
            _ => {}
        }
        let (layer, site) = name.strip_prefix("blocks.")?.split_once('.')?;
        // `blocks.01.…` is not a TransformerLens name: digits only, no sign, no leading zero.
        if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) || (layer.len() > 1 && layer.starts_with('0')) {
            return None;
        }
        let site = BlockSite::ALL.into_iter().find(|s| s.name() == site)?;
        Some(HookPoint::Block { layer: layer.parse().ok()?, site })
    }
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
