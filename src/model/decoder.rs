//! What a decoder-only transformer is, whatever its family: one description that a forward pass
//! reads instead of a family's name. Each family's file in `model::families` turns its Hugging
//! Face `config.json` into this, following `transformers`' modeling files (5.24): which norm and
//! where, which activation, gated or plain MLP, biases, rotary or learned positions, grouped-query
//! heads, q/k norms, soft-capping, and which layers attend within a sliding window.

use super::hook::{BlockSite, HookPoint};

/// A normalisation layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NormKind {
    /// `(x − mean) / √(var + eps) · w + b` (GPT-2, GPT-NeoX).
    LayerNorm,
    /// `x / √(mean(x²) + eps) · w` (Llama, Qwen); with `unit_offset`, `· (1 + w)` (Gemma's
    /// `Gemma2RMSNorm`, which also computes in f32 and casts after the scale).
    RmsNorm { unit_offset: bool },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Norm {
    pub kind: NormKind,
    pub eps: f32,
}

/// The MLP's non-linearity; model.wgsl's twin defines it.
pub use crate::reference::model::Activation;

/// The MLP's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mlp {
    /// `down(act(up x))` (GPT-2, GPT-NeoX).
    Plain,
    /// `down(act(gate x) · up x)`: SwiGLU (Llama, Qwen) or GeGLU (Gemma).
    Gated,
}

/// How a block adds its attention and MLP to the residual stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockLayout {
    /// `x += attn(ln1 x); x += mlp(ln2 x)` (GPT-2, Llama, Qwen, GPT-NeoX without parallel residual).
    Sequential,
    /// `x += attn(ln1 x) + mlp(ln2 x)`, both read the block's input (GPT-NeoX's
    /// `use_parallel_residual`).
    Parallel,
    /// Gemma's four norms: `x += post_attn(attn(pre_attn x)); x += post_ff(mlp(pre_ff x))`.
    Sandwich,
}

/// RoPE's frequency scaling (`transformers`' `ROPE_INIT_FUNCTIONS`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    None,
    /// `linear`: positions divided by `factor`.
    Linear {
        factor: f64,
    },
    /// `llama3`: long wavelengths divided by `factor`, short ones kept, a smooth ramp between
    /// (`_compute_llama3_parameters`).
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// Rotary position embeddings on the first `rotary_dim` dimensions of each head.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    pub theta: f64,
    /// Even, at most `d_head`; less for GPT-NeoX's partial rotary (`rotary_pct`).
    pub rotary_dim: usize,
    pub scaling: RopeScaling,
}

/// How a layer's attention sees positions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LayerAttention {
    /// Every earlier position.
    Global,
    /// The last `window` positions, the query's own included (`transformers`' sliding-window mask:
    /// key `j` is seen by query `i` when `i − window < j ≤ i`).
    Sliding { window: usize },
}

/// Where positions enter the model.
#[derive(Debug, Clone, PartialEq)]
pub enum Positions {
    /// A learned table added to the token embeddings (GPT-2's `wpe`).
    Learned,
    /// Rotary embeddings in each attention; sliding-window layers may have their own (Gemma 3's
    /// `rope_local_base_freq`).
    Rotary { global: Rope, local: Rope },
}

/// A decoder-only transformer's shape and behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// As `config.json` names the family.
    pub model_type: String,
    pub vocab_size: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_heads`; each serves
    /// `n_heads / n_kv_heads` query heads).
    pub n_kv_heads: usize,
    pub d_head: usize,
    pub d_mlp: usize,
    /// The longest context the positions support.
    pub max_positions: usize,
    pub norm: Norm,
    pub layout: BlockLayout,
    pub activation: Activation,
    pub mlp: Mlp,
    pub mlp_bias: bool,
    /// Biases on the q, k and v projections, and on the output projection.
    pub qkv_bias: bool,
    pub o_bias: bool,
    /// An RMSNorm over each head's queries and keys before RoPE (Qwen 3, Gemma 3).
    pub qk_norm: bool,
    /// What `q·k` is multiplied by: `1/√d_head`, or Gemma's `query_pre_attn_scalar^-½`.
    pub attn_scale: f32,
    /// `cap · tanh(score / cap)` on attention scores (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// The same on the final logits (Gemma 2).
    pub final_softcap: Option<f32>,
    /// Per layer.
    pub layers: Vec<LayerAttention>,
    pub positions: Positions,
    /// Token embeddings multiplied by this (Gemma: `√d_model`, rounded to the weights' dtype as
    /// `transformers` does).
    pub embedding_scale: Option<f32>,
    /// The unembedding is the token embedding (`tie_word_embeddings`).
    pub tied_embeddings: bool,
    /// The token ids `config.json` (or `generation_config.json`) names.
    pub special_tokens: SpecialTokens,
}

/// The special token ids a model names (`bos_token_id`, `eos_token_id` — a number or a list —,
/// `pad_token_id`). TransformerLens prepends the tokenizer's BOS, or its EOS when it has none
/// (`HookedTransformer.set_tokenizer`); SAELens's evaluations leave out every position holding one
/// of these (`get_special_token_ids`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: Option<u32>,
    pub eos: Vec<u32>,
    pub pad: Option<u32>,
}

impl SpecialTokens {
    /// The ids in a `config.json` or `generation_config.json` object; a field that is not a token
    /// id (or a list of them) is an error naming it.
    pub fn read(fields: &serde_json::Map<String, serde_json::Value>) -> Result<SpecialTokens, String> {
        let ids = |key: &str| -> Result<Vec<u32>, String> {
            let one = |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
            match fields.get(key) {
                None | Some(serde_json::Value::Null) => Ok(Vec::new()),
                Some(serde_json::Value::Array(list)) => {
                    list.iter().map(|v| one(v).ok_or_else(|| format!("'{key}' lists {v}, not a token id"))).collect()
                }
                Some(v) => one(v).map(|id| vec![id]).ok_or_else(|| format!("'{key}' must be a token id or a list of them, found {v}")),
            }
        };
        Ok(SpecialTokens {
            bos: ids("bos_token_id")?.first().copied(),
            eos: ids("eos_token_id")?,
            pad: ids("pad_token_id")?.first().copied(),
        })
    }

    /// `generation_config.json`'s ids where it names them, these elsewhere.
    pub fn overridden_by(self, other: SpecialTokens) -> SpecialTokens {
        SpecialTokens {
            bos: other.bos.or(self.bos),
            eos: if other.eos.is_empty() { self.eos } else { other.eos },
            pad: other.pad.or(self.pad),
        }
    }

    /// The token put first when an SAE asks for BOS: the BOS, else the (first) EOS.
    pub fn bos_or_eos(&self) -> Option<u32> {
        self.bos.or(self.eos.first().copied())
    }

    /// Whether `token` is one of them (a position SAELens's evaluations leave out).
    pub fn contains(&self, token: u32) -> bool {
        self.bos == Some(token) || self.pad == Some(token) || self.eos.contains(&token)
    }
}

impl DecoderConfig {
    /// How many parameters the weights it describes hold (every tensor `DecoderWeights::random`
    /// makes): what a download is checked against before it starts.
    pub fn parameter_count(&self) -> u64 {
        let (d, dh, m) = (self.d_model as u64, self.d_head as u64, self.d_mlp as u64);
        let (q, kv) = (self.n_heads as u64 * dh, self.n_kv_heads as u64 * dh);
        let norm = |width: u64| if self.norm.kind == NormKind::LayerNorm { 2 * width } else { width };
        let bias = |on: bool, width: u64| if on { width } else { 0 };
        let attention = d * (q + 2 * kv) + bias(self.qkv_bias, q + 2 * kv) + q * d + bias(self.o_bias, d);
        let projections = if self.mlp == Mlp::Gated { 2 } else { 1 };
        let mlp = projections * (d * m + bias(self.mlp_bias, m)) + m * d + bias(self.mlp_bias, d);
        let norms =
            2 * norm(d) + if self.qk_norm { 2 * norm(dh) } else { 0 } + if self.layout == BlockLayout::Sandwich { 2 * norm(d) } else { 0 };
        let vocab = self.vocab_size as u64 * d;
        let positions = if self.positions == Positions::Learned { self.max_positions as u64 * d } else { 0 };
        vocab * if self.tied_embeddings { 1 } else { 2 } + positions + norm(d) + self.n_layers as u64 * (attention + mlp + norms)
    }

    /// Query heads per key/value head.
    pub fn group_size(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }

    /// Checks what every family needs of its sizes; each message names the field.
    pub(crate) fn check(self) -> Result<DecoderConfig, String> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.d_model),
            ("num_hidden_layers", self.n_layers),
            ("num_attention_heads", self.n_heads),
            ("num_key_value_heads", self.n_kv_heads),
            ("head_dim", self.d_head),
            ("intermediate_size", self.d_mlp),
            ("max_position_embeddings", self.max_positions),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} is 0"));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(format!("num_key_value_heads ({}) does not divide num_attention_heads ({})", self.n_kv_heads, self.n_heads));
        }
        if let Positions::Rotary { global, local } = &self.positions {
            for rope in [global, local] {
                if rope.rotary_dim == 0 || rope.rotary_dim > self.d_head || !rope.rotary_dim.is_multiple_of(2) {
                    return Err(format!("the rotary dimensions ({}) must be even and at most head_dim ({})", rope.rotary_dim, self.d_head));
                }
                if !(rope.theta > 0.0 && rope.theta.is_finite()) {
                    return Err(format!("rope_theta must be a positive number, not {}", rope.theta));
                }
            }
        }
        if self.layers.iter().any(|l| matches!(l, LayerAttention::Sliding { window: 0 })) {
            return Err("sliding_window is 0".into());
        }
        if !(self.norm.eps > 0.0 && self.norm.eps.is_finite()) {
            return Err(format!("the norm's epsilon must be a positive number, not {}", self.norm.eps));
        }
        for (name, cap) in [("attn_logit_softcapping", self.attn_softcap), ("final_logit_softcapping", self.final_softcap)] {
            if cap.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
                return Err(format!("{name} must be a positive number"));
            }
        }
        Ok(self)
    }
}

/// The hook points of a described decoder: which exist, how wide each is, how far a forward pass
/// must go to reach one. TransformerLens's rules: `hook_pos_embed` only with learned positions,
/// no `hook_resid_mid` in a parallel block, `attn.hook_z` is `n_heads · d_head` wide (Gemma's is
/// not `d_model`), and the Hugging Face module names of Gemma's extra norms only on Gemma.
impl DecoderConfig {
    /// Every hook point of this model, in the order the forward pass reaches them.
    pub fn hook_points(&self) -> Vec<HookPoint> {
        let mut hooks = vec![HookPoint::Embed, HookPoint::PosEmbed];
        for layer in 0..self.n_layers {
            hooks.extend(BlockSite::ALL.iter().map(|&site| HookPoint::block(layer, site)));
        }
        hooks.push(HookPoint::FinalNormalized);
        hooks.retain(|&h| self.has_hook(h));
        hooks
    }

    /// Whether this model's forward pass reaches `hook`.
    pub fn has_hook(&self, hook: HookPoint) -> bool {
        match hook {
            HookPoint::PosEmbed => self.positions == Positions::Learned,
            HookPoint::Block { layer, site } => {
                layer < self.n_layers && !(site == BlockSite::ResidMid && self.layout == BlockLayout::Parallel)
            }
            HookPoint::Embed | HookPoint::FinalNormalized => true,
        }
    }

    /// The width of the activation at `hook` (per token).
    pub fn hook_width(&self, hook: HookPoint) -> usize {
        match hook {
            HookPoint::Block { site: BlockSite::AttnZ, .. } => self.n_heads * self.d_head,
            _ => self.d_model,
        }
    }

    /// The hook point `name` (TransformerLens's, or Gemma Scope 2's Hugging Face module name) on
    /// this model, or a message listing the forms this model has.
    pub fn hook_point(&self, name: &str) -> Result<HookPoint, String> {
        let gemma_only = HookPoint::names_gemma_module(name) && self.layout != BlockLayout::Sandwich;
        match HookPoint::parse(name) {
            Some(hook) if self.has_hook(hook) && !gemma_only => Ok(hook),
            _ => {
                let sites: Vec<&str> =
                    BlockSite::ALL.iter().filter(|&&s| self.has_hook(HookPoint::block(0, s))).map(|s| s.name()).collect();
                let pos = if self.has_hook(HookPoint::PosEmbed) { "hook_pos_embed, " } else { "" };
                Err(format!(
                    "'{name}' is not a hook point of this {} model (hook_embed, {pos}blocks.{{0..{}}}.{{{}}}, ln_final.hook_normalized)",
                    self.model_type,
                    self.n_layers.saturating_sub(1),
                    sites.join(",")
                ))
            }
        }
    }

    /// How far a forward pass must go to reach `hook`: the blocks to run, and whether the final
    /// norm runs too (only for `ln_final.hook_normalized`). Harvesting stops there.
    pub fn extent_to_reach(&self, hook: HookPoint) -> (usize, bool) {
        match hook {
            HookPoint::Block { layer, .. } => ((layer + 1).min(self.n_layers), false),
            HookPoint::FinalNormalized => (self.n_layers, true),
            HookPoint::Embed | HookPoint::PosEmbed => (0, false),
        }
    }
}
