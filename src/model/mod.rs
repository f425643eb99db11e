//! Language models. GPT-2 runs today: the config, the weights as plain f32 host arrays, and the
//! TransformerLens hook points the forward pass exposes; `cpu` is the plain-Rust reference
//! forward, files are parsed in `files`. `decoder` describes any decoder-only family,
//! `families` reads each family's `config.json` and tensors into that description and
//! `decoder_weights`, and `decoder_cpu` is the reference forward of any of them (not yet on the
//! GPU, in the page or the CLI).

pub mod cpu;
pub mod decoder;
pub mod decoder_cpu;
pub mod decoder_weights;
pub mod families;
pub mod files;
pub mod hook;
pub mod processing;

pub use hook::{BlockSite, HookPoint};

use decoder::DecoderConfig;
use decoder_weights::DecoderWeights;

/// What the forward pass needs from a Hugging Face GPT-2 `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    /// The context length (`n_positions`).
    pub n_positions: usize,
    /// The residual width (`n_embd`).
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    /// The MLP's hidden width (`n_inner`, 4·d_model when null).
    pub d_mlp: usize,
    pub layer_norm_eps: f32,
    /// Attention scores are divided by √d_head unless `scale_attn_weights` is false.
    pub scale_attn_weights: bool,
}

impl Gpt2Config {
    pub fn d_head(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// Every hook point of this model, in the order the forward pass reaches them.
    pub fn hook_points(&self) -> Vec<HookPoint> {
        let mut hooks = vec![HookPoint::Embed, HookPoint::PosEmbed];
        for layer in 0..self.n_layers {
            hooks.extend(BlockSite::ALL.iter().map(|&site| HookPoint::block(layer, site)));
        }
        hooks.push(HookPoint::FinalNormalized);
        hooks
    }

    /// The hook point TransformerLens calls `name` on this model, or a message listing the forms
    /// this model has.
    pub fn hook_point(&self, name: &str) -> Result<HookPoint, String> {
        match HookPoint::parse(name) {
            Some(hook) if self.has_hook(hook) => Ok(hook),
            _ => Err(format!(
                "'{name}' is not a hook point of this model (hook_embed, hook_pos_embed, blocks.{{0..{}}}.{{{}}}, ln_final.hook_normalized)",
                self.n_layers.saturating_sub(1),
                BlockSite::ALL.map(BlockSite::name).join(",")
            )),
        }
    }

    /// Whether this model's forward pass reaches `hook` (its layer exists).
    pub fn has_hook(&self, hook: HookPoint) -> bool {
        hook.layer().is_none_or(|layer| layer < self.n_layers)
    }

    /// How far a forward pass must go to reach `hook`: the blocks to run, and whether the final
    /// LayerNorm runs too (only for `ln_final.hook_normalized`). Harvesting stops there.
    pub fn extent_to_reach(&self, hook: HookPoint) -> (usize, bool) {
        match hook {
            HookPoint::Block { layer, .. } => ((layer + 1).min(self.n_layers), false),
            HookPoint::FinalNormalized => (self.n_layers, true),
            HookPoint::Embed | HookPoint::PosEmbed => (0, false),
        }
    }
}

/// LayerNorm's scale and shift, `[d_model]` each.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNorm {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// One transformer block. Matrices are `[in, out]` row-major, as Hugging Face's `Conv1D` stores them.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub ln_1: LayerNorm,
    /// `c_attn`: `[d_model, 3·d_model]`, columns q | k | v, heads contiguous within each.
    pub qkv_weight: Vec<f32>,
    pub qkv_bias: Vec<f32>,
    /// `attn.c_proj`: `[d_model, d_model]`.
    pub attn_out_weight: Vec<f32>,
    pub attn_out_bias: Vec<f32>,
    pub ln_2: LayerNorm,
    /// `mlp.c_fc`: `[d_model, d_mlp]`.
    pub mlp_in_weight: Vec<f32>,
    pub mlp_in_bias: Vec<f32>,
    /// `mlp.c_proj`: `[d_mlp, d_model]`.
    pub mlp_out_weight: Vec<f32>,
    pub mlp_out_bias: Vec<f32>,
}

/// A GPT-2 model with f32 weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpt2 {
    pub cfg: Gpt2Config,
    /// Token embedding `[vocab, d_model]`.
    pub wte: Vec<f32>,
    /// Position embedding `[n_positions, d_model]`.
    pub wpe: Vec<f32>,
    pub blocks: Vec<Block>,
    pub ln_f: LayerNorm,
    /// A separate unembedding `[vocab, d_model]`; `None` when tied to `wte`.
    pub lm_head: Option<Vec<f32>>,
}

impl Gpt2 {
    /// The unembedding `W_U` as rows `[vocab, d_model]` (lm_head, or wte when tied).
    pub fn unembed(&self) -> &[f32] {
        self.lm_head.as_deref().unwrap_or(&self.wte)
    }
}

/// Which hook points a model has and how wide each is: what an intervention is checked against.
pub trait HookShapes {
    fn has_hook(&self, hook: HookPoint) -> bool;
    fn hook_width(&self, hook: HookPoint) -> usize;
}

impl HookShapes for Gpt2Config {
    fn has_hook(&self, hook: HookPoint) -> bool {
        Gpt2Config::has_hook(self, hook)
    }
    fn hook_width(&self, _: HookPoint) -> usize {
        self.d_model
    }
}

impl HookShapes for DecoderConfig {
    fn has_hook(&self, hook: HookPoint) -> bool {
        DecoderConfig::has_hook(self, hook)
    }
    fn hook_width(&self, hook: HookPoint) -> usize {
        DecoderConfig::hook_width(self, hook)
    }
}

/// A decoder-only language model of any described family: what it is, and its f32 weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub cfg: DecoderConfig,
    pub weights: DecoderWeights,
}

impl Model {
    /// The unembedding `W_U` as rows `[vocab, d_model]` (its own, or the embedding when tied).
    pub fn unembed(&self) -> &[f32] {
        self.weights.unembed.as_deref().unwrap_or(&self.weights.embed)
    }

    /// Checks tokens before a forward pass.
    pub fn check_tokens(&self, tokens: &[u32]) -> Result<(), ModelError> {
        check_token_range(tokens, self.cfg.vocab_size, self.cfg.max_positions)
    }
}

/// A change to the activation at one hook point during a forward pass (TransformerLens: a hook
/// that returns a new value). What follows the hook computes with the changed activation.
#[derive(Debug, Clone, Copy)]
pub enum Intervention<'a> {
    /// Use `values` (`[n_tokens, width]`) instead: an SAE's reconstruction for splicing, zeros
    /// for zero-ablation.
    Replace { hook: HookPoint, values: &'a [f32] },
    /// Add `vector` (`[width]`) at every position: steering along a feature's decoder direction.
    AddToEveryToken { hook: HookPoint, vector: &'a [f32] },
}

impl Intervention<'_> {
    pub fn hook(&self) -> HookPoint {
        match *self {
            Intervention::Replace { hook, .. } | Intervention::AddToEveryToken { hook, .. } => hook,
        }
    }

    /// Applies the change to `acts` (`[n, width]`) on the host.
    pub fn apply(&self, acts: &mut [f32], width: usize) {
        match self {
            Intervention::Replace { values, .. } => acts.copy_from_slice(values),
            Intervention::AddToEveryToken { vector, .. } => {
                for row in acts.chunks_exact_mut(width) {
                    row.iter_mut().zip(vector.iter()).for_each(|(a, v)| *a += v);
                }
            }
        }
    }

    /// Checks the hook exists and the values fit `n` tokens of this model.
    pub fn check(&self, cfg: &impl HookShapes, n: usize) -> Result<(), String> {
        if !cfg.has_hook(self.hook()) {
            return Err(format!("{} is not a hook point of this model", self.hook()));
        }
        let d = cfg.hook_width(self.hook());
        match self {
            Intervention::Replace { values, hook } if values.len() != n * d => {
                Err(format!("replacing {hook} needs {n} × {d} values, got {}", values.len()))
            }
            Intervention::AddToEveryToken { vector, hook } if vector.len() != d => {
                Err(format!("adding to {hook} needs a vector of {d}, got {}", vector.len()))
            }
            _ => Ok(()),
        }
    }
}

/// A request the forward pass cannot run, said so that a person can act on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("no tokens to run")]
    NoTokens,
    #[error("token {token} at position {position} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange { token: u32, position: usize, vocab: usize },
    #[error("{len} tokens are more than the model's context of {n_positions} (n_positions); shorten the text")]
    TooLong { len: usize, n_positions: usize },
    #[error("{0}")]
    Intervention(String),
    #[error("{0}")]
    Hook(String),
}

/// Checks tokens before a forward pass.
pub fn check_tokens(cfg: &Gpt2Config, tokens: &[u32]) -> Result<(), ModelError> {
    check_token_range(tokens, cfg.vocab_size, cfg.n_positions)
}

/// Some tokens, none outside the vocabulary, no more than the context holds.
fn check_token_range(tokens: &[u32], vocab: usize, context: usize) -> Result<(), ModelError> {
    if tokens.is_empty() {
        return Err(ModelError::NoTokens);
    }
    if tokens.len() > context {
        return Err(ModelError::TooLong { len: tokens.len(), n_positions: context });
    }
    if let Some((position, &token)) = tokens.iter().enumerate().find(|(_, &t)| t as usize >= vocab) {
        return Err(ModelError::TokenOutOfRange { token, position, vocab });
    }
    Ok(())
}

impl Gpt2 {
    /// A model with random weights (for tests and benchmarks): N(0, 0.1²) matrices and biases,
    /// LayerNorm weights near 1.
    pub fn random(cfg: Gpt2Config, tied: bool, seed: u64) -> Gpt2 {
        let mut rng = crate::random::Rng::new(seed);
        let (d, m) = (cfg.d_model, cfg.d_mlp);
        let mut normals = |n: usize| rng.normals(n, 0.1);
        let ln = |normals: &mut dyn FnMut(usize) -> Vec<f32>| LayerNorm {
            weight: normals(d).into_iter().map(|v| 1.0 + v).collect(),
            bias: normals(d),
        };
        let blocks = (0..cfg.n_layers)
            .map(|_| Block {
                ln_1: ln(&mut normals),
                qkv_weight: normals(d * 3 * d),
                qkv_bias: normals(3 * d),
                attn_out_weight: normals(d * d),
                attn_out_bias: normals(d),
                ln_2: ln(&mut normals),
                mlp_in_weight: normals(d * m),
                mlp_in_bias: normals(m),
                mlp_out_weight: normals(m * d),
                mlp_out_bias: normals(d),
            })
            .collect();
        Gpt2 {
            wte: normals(cfg.vocab_size * d),
            wpe: normals(cfg.n_positions * d),
            blocks,
            ln_f: ln(&mut normals),
            lm_head: (!tied).then(|| normals(cfg.vocab_size * d)),
            cfg,
        }
    }
}

impl Gpt2Config {
    /// GPT-2 small's shape (Radford et al. 2019): 12 layers, 12 heads, width 768, vocab 50,257,
    /// context 1024.
    pub fn gpt2_small() -> Gpt2Config {
        Gpt2Config {
            vocab_size: 50257,
            n_positions: 1024,
            d_model: 768,
            n_layers: 12,
            n_heads: 12,
            d_mlp: 3072,
            layer_norm_eps: 1e-5,
            scale_attn_weights: true,
        }
    }
}
