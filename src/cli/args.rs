//! The `saelab` command line as clap derives: the one definition of every command and flag, from
//! which `--help` is generated (and against which the README's command list is tested). Settings
//! that the training policy or the lab owns are `Option`s here, so their defaults live there.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "saelab",
    version,
    about = "Sparse autoencoders on your own GPU: SAELens SAEs, GPT-2/Pythia/Llama/Qwen/Gemma, training, dashboards",
    long_about = "Sparse autoencoders on your own GPU: SAELens-format SAEs run by WGSL kernels (wgpu on \
                  Vulkan, or the CPU reference), language models with TransformerLens hook points, SAE \
                  training on synthetic data or a model's activations, feature dashboards. Errors are \
                  one line on stderr with exit status 2; results go to stdout.",
    propagate_version = true,
    disable_help_subcommand = true,
    // A flag given twice takes its last value (so a lab URL's settings can be overridden).
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `--device cpu|gpu`: where the work runs (default the GPU). Every flag of every command takes
/// negative numbers as values (`--lr -1` reaches the check that names the setting).
#[derive(Debug, Args)]
pub struct DeviceArg {
    /// cpu (every core) or gpu
    #[arg(long, allow_negative_numbers = true, value_name = "cpu|gpu", default_value = "gpu")]
    pub device: String,
}

/// `--device cpu|gpu|both` for benchmarks (default both).
#[derive(Debug, Args)]
pub struct BenchDeviceArg {
    /// cpu, gpu or both
    #[arg(long, allow_negative_numbers = true, value_name = "cpu|gpu|both", default_value = "both")]
    pub device: String,
}

/// The tokens to run: a `.npy` of ids or text through the model folder's tokenizer.
#[derive(Debug, Args)]
pub struct TokensArg {
    /// 1-D .npy of token ids (int32 or int64)
    #[arg(long, allow_negative_numbers = true, value_name = "T.npy")]
    pub tokens: Option<PathBuf>,
    /// Text, tokenized by the model folder's tokenizer.json
    #[arg(long, allow_negative_numbers = true)]
    pub text: Option<String>,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Describe an SAE folder: architecture, sizes, k or threshold statistics, hook, dtype, normalisation
    Info {
        /// SAE: a folder in any format saelab reads (SAELens, Gemma Scope 1/2, Llama Scope, sparsify, dictionary_learning), a single-file SAE (Qwen Scope layerN.sae.pt, GPT-2 attention NAME.pt), or RELEASE/SAE_ID from SAELens's registry, read from the Hugging Face cache
        #[arg(value_name = "SAE")]
        dir: PathBuf,
    },
    /// sae.encode(x): dense activations [n, d_sae] as .npy
    Encode(EncodeArgs),
    /// sae(x): reconstructions [n, d_in] as .npy
    Reconstruct(EncodeArgs),
    /// Batch metrics of an SAE on activations, as JSON (n, l0, mse, fvu, cosine, dead_fraction, device); a transcoder's against --target
    Eval(EvalCmdArgs),
    /// SAE encode + decode, TopK and a TopK training step on random data (median of --repeats), the host's ceilings, and PyTorch/SAELens on the CPU as the peer
    Bench(BenchArgs),
    /// Train an SAE on synthetic data with known features (the teaching lab) and report recovery
    Toy(ToyArgs),
    /// Write a model folder with random weights (GPT-2, Llama-3- or Gemma-3-shaped; optionally a random TopK SAE at a hook)
    RandomModel(RandomModelArgs),
    /// Forward-pass throughput of a GPT-2-small-, gemma-2-2b- or gemma-3-1b-shaped model with random weights
    BenchModel(BenchModelArgs),
    /// One feature's dashboard over a text sample, and the feature list's summary, as JSON
    Dashboard(DashboardArgs),
    /// Activation harvesting and SAE training throughput, each on its own
    BenchTrain(BenchTrainArgs),
    /// Logits and hook activations of a model for some tokens
    Forward(ForwardArgs),
    /// What the SAE's reconstruction error costs the model: CE clean / spliced / zero-ablated, KL
    Splice(SpliceArgs),
    /// Per token, the SAE's strongest features (and one feature in detail with --feature)
    Features(FeaturesArgs),
    /// A continuation, and with --steer or --clamp the steered one beside it
    Generate(GenerateArgs),
    /// Train an SAE on a model's activations at a hook over a text corpus, saved in SAELens format
    Train(TrainArgs),
    /// The toy model of superposition (Elhage et al. 2022): how many features the hidden dimensions hold
    Superposition(SuperpositionArgs),
    /// SAELens's registry of published SAEs: which ones saelab opens, by release
    Registry(RegistryArgs),
    /// Save an SAE of any format saelab reads as a SAELens folder (cfg.json + sae_weights.safetensors)
    Convert(ConvertArgs),
}

#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Only releases whose model name contains this (case-insensitive)
    #[arg(long, allow_negative_numbers = true, value_name = "M")]
    pub model: Option<String>,
    /// Every SAE as a JSON line (release, id, model, hook path, l0, neuronpedia, opens, why not)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// SAE: a folder in any format saelab reads (SAELens, Gemma Scope 1/2, Llama Scope, sparsify, dictionary_learning), a single-file SAE (Qwen Scope layerN.sae.pt, GPT-2 attention NAME.pt), or RELEASE/SAE_ID from SAELens's registry, read from the Hugging Face cache
    #[arg(long, allow_negative_numbers = true, value_name = "SAE")]
    pub sae: PathBuf,
    /// The SAELens folder to write
    #[arg(long, allow_negative_numbers = true, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// SAE: a folder in any format saelab reads (SAELens, Gemma Scope 1/2, Llama Scope, sparsify, dictionary_learning), a single-file SAE (Qwen Scope layerN.sae.pt, GPT-2 attention NAME.pt), or RELEASE/SAE_ID from SAELens's registry, read from the Hugging Face cache
    #[arg(long, allow_negative_numbers = true, value_name = "SAE")]
    pub sae: PathBuf,
    /// Activations [n, d_in] (.npy: f32, f16 or f64)
    #[arg(long, allow_negative_numbers = true, value_name = "X.npy")]
    pub input: PathBuf,
    #[command(flatten)]
    pub device: DeviceArg,
}

#[derive(Debug, Args)]
pub struct EvalCmdArgs {
    #[command(flatten)]
    pub eval: EvalArgs,
    /// A transcoder's target: the activations [n, d_out] at its output hook (hook_name_out), which
    /// its output is measured against (an SAE's is its input)
    #[arg(long, allow_negative_numbers = true, value_name = "Y.npy")]
    pub target: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EncodeArgs {
    #[command(flatten)]
    pub eval: EvalArgs,
    /// Where to write the result (.npy, f32)
    #[arg(long, allow_negative_numbers = true, value_name = "OUT.npy")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Rows
    #[arg(long, allow_negative_numbers = true, default_value_t = 4096)]
    pub n: usize,
    #[arg(long, allow_negative_numbers = true, default_value_t = 768)]
    pub d_in: usize,
    #[arg(long, allow_negative_numbers = true, default_value_t = 24_576)]
    pub d_sae: usize,
    /// TopK's k
    #[arg(long, allow_negative_numbers = true, default_value_t = 32)]
    pub k: usize,
    /// Rows (and the training batch) on the CPU, at most --n and --train-batch
    #[arg(long, allow_negative_numbers = true, default_value_t = 1024)]
    pub cpu_rows: usize,
    /// The training step's batch
    #[arg(long, allow_negative_numbers = true, default_value_t = 4096)]
    pub train_batch: usize,
    /// Timed runs of each workload after one warm-up run (the median is reported)
    #[arg(long, allow_negative_numbers = true, default_value_t = 3)]
    pub repeats: usize,
    /// auto: run tools/bench_torch_cpu.py (SAELens on PyTorch's CPU) beside the CPU backend when
    /// Python with sae_lens is there, and print the ratios; none: no peer
    #[arg(long, allow_negative_numbers = true, value_name = "auto|none", default_value = "auto")]
    pub peer: String,
    /// The Python for the peer (default: $SAELAB_PYTHON, else the checkout's .venv, else python3)
    #[arg(long, allow_negative_numbers = true, value_name = "PATH")]
    pub python: Option<PathBuf>,
    #[command(flatten)]
    pub device: BenchDeviceArg,
}

/// The lab's settings by their URL names (`train::lab::LabSettings::set` parses and checks them).
#[derive(Debug, Args)]
pub struct ToyArgs {
    /// A lesson's settings (superposition-2d, sparse-features, …); other flags override them
    #[arg(long, allow_negative_numbers = true, value_name = "ID")]
    pub preset: Option<String>,
    /// True features
    #[arg(long, allow_negative_numbers = true)]
    pub features: Option<String>,
    /// Input dimensions
    #[arg(long, allow_negative_numbers = true)]
    pub dims: Option<String>,
    /// Each feature's firing probability
    #[arg(long, allow_negative_numbers = true)]
    pub p: Option<String>,
    /// standard, topk, batchtopk, jumprelu or gated
    #[arg(long, allow_negative_numbers = true)]
    pub arch: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    pub k: Option<String>,
    /// L1 coefficient (standard, gated)
    #[arg(long, allow_negative_numbers = true)]
    pub l1: Option<String>,
    /// L0 coefficient (jumprelu)
    #[arg(long, allow_negative_numbers = true)]
    pub l0: Option<String>,
    /// JumpReLU's threshold bandwidth
    #[arg(long, allow_negative_numbers = true)]
    pub bandwidth: Option<String>,
    /// Latents
    #[arg(long, allow_negative_numbers = true)]
    pub dict: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    pub batch: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    pub steps: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    pub seed: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<String>,
    /// random or polygon
    #[arg(long, allow_negative_numbers = true)]
    pub geometry: Option<String>,
    /// Parents and children per parent, P,C
    #[arg(long, allow_negative_numbers = true)]
    pub hierarchy: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    pub noise: Option<String>,
    #[arg(long, allow_negative_numbers = true, value_name = "STEPS")]
    pub dead_after: Option<String>,
    /// zeros, mean or geometric_median
    #[arg(long, allow_negative_numbers = true)]
    pub b_dec_init: Option<String>,
    #[arg(long, allow_negative_numbers = true, value_name = "STEPS")]
    pub resample_every: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    pub p_decay: Option<String>,
    /// constant:V, uniform:LO,HI or exponential:MEAN
    #[arg(long, allow_negative_numbers = true)]
    pub magnitude: Option<String>,
    #[arg(long, allow_negative_numbers = true, value_name = "PAIRS")]
    pub correlated: Option<String>,
    #[arg(long, allow_negative_numbers = true, value_name = "PAIRS")]
    pub anti_correlated: Option<String>,
    /// Save the trained SAE here (SAELens format)
    #[arg(long, allow_negative_numbers = true, value_name = "DIR")]
    pub save: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArg,
}

impl ToyArgs {
    /// The lab settings given, by their flag names, in the lab's order.
    pub fn settings(&self) -> Vec<(&'static str, Option<&String>)> {
        vec![
            ("features", self.features.as_ref()),
            ("dims", self.dims.as_ref()),
            ("p", self.p.as_ref()),
            ("arch", self.arch.as_ref()),
            ("k", self.k.as_ref()),
            ("l1", self.l1.as_ref()),
            ("l0", self.l0.as_ref()),
            ("bandwidth", self.bandwidth.as_ref()),
            ("dict", self.dict.as_ref()),
            ("batch", self.batch.as_ref()),
            ("steps", self.steps.as_ref()),
            ("seed", self.seed.as_ref()),
            ("lr", self.lr.as_ref()),
            ("geometry", self.geometry.as_ref()),
            ("hierarchy", self.hierarchy.as_ref()),
            ("noise", self.noise.as_ref()),
            ("dead-after", self.dead_after.as_ref()),
            ("b-dec-init", self.b_dec_init.as_ref()),
            ("resample-every", self.resample_every.as_ref()),
            ("p-decay", self.p_decay.as_ref()),
            ("magnitude", self.magnitude.as_ref()),
            ("correlated", self.correlated.as_ref()),
            ("anti-correlated", self.anti_correlated.as_ref()),
        ]
    }
}

#[derive(Debug, Args)]
pub struct RandomModelArgs {
    /// The model folder to write
    #[arg(long, allow_negative_numbers = true, value_name = "DIR")]
    pub out: PathBuf,
    /// A tokenizer.json to copy; its vocabulary sets the model's (default: 256 tokens, no tokenizer)
    #[arg(long, allow_negative_numbers = true, value_name = "tokenizer.json")]
    pub vocab_from: Option<PathBuf>,
    #[arg(long, allow_negative_numbers = true, default_value_t = 2)]
    pub layers: usize,
    #[arg(long, allow_negative_numbers = true, default_value_t = 32)]
    pub width: usize,
    #[arg(long, allow_negative_numbers = true, default_value_t = 4)]
    pub heads: usize,
    /// n_positions
    #[arg(long, allow_negative_numbers = true, default_value_t = 64)]
    pub context: usize,
    /// Also write a random TopK SAE here, at --hook
    #[arg(long, allow_negative_numbers = true, value_name = "DIR", requires = "hook")]
    pub sae_out: Option<PathBuf>,
    #[arg(long, allow_negative_numbers = true, value_name = "NAME")]
    pub hook: Option<String>,
    #[arg(long, allow_negative_numbers = true, default_value_t = 96)]
    pub d_sae: usize,
    #[arg(long, allow_negative_numbers = true, default_value_t = 4)]
    pub k: usize,
    #[arg(long, allow_negative_numbers = true, default_value_t = 1)]
    pub seed: u64,
    /// gpt2, llama3 (Llama 3.1's layout: GQA, SwiGLU, llama3 RoPE), gemma3 (Gemma 3's: four norms, q/k norms, sliding windows of 8) or gemma3-vlm (that text model in a multimodal Gemma 3 checkpoint, as from 4B up, with a tiny vision tower)
    #[arg(long, default_value = "gpt2")]
    pub family: String,
    /// f32, f16 or bf16: how model.safetensors stores the weights
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Write a sharded checkpoint (model.safetensors.index.json + shards of at most BYTES)
    #[arg(long, allow_negative_numbers = true, value_name = "BYTES")]
    pub shard_bytes: Option<usize>,
}

#[derive(Debug, Args)]
pub struct BenchModelArgs {
    /// Input lengths, comma-separated
    #[arg(long, allow_negative_numbers = true, value_name = "N,N,…", default_value = "1,64,1024")]
    pub tokens: String,
    /// Layers to run (default: all of the shape's)
    #[arg(long, allow_negative_numbers = true)]
    pub layers: Option<usize>,
    /// gpt2-small, gemma-2-2b or gemma-3-1b (their config.json's shapes, random weights)
    #[arg(long, default_value = "gpt2-small")]
    pub shape: String,
    /// f32, f16 or bf16: what the weights are stored in (the GPU keeps halves half)
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    #[command(flatten)]
    pub device: BenchDeviceArg,
}

/// A model folder and a text corpus through its tokenizer.
#[derive(Debug, Args)]
pub struct ModelCorpusArgs {
    /// Hugging Face model folder (config.json, model.safetensors or a sharded checkpoint, tokenizer.json)
    #[arg(long, allow_negative_numbers = true, value_name = "DIR")]
    pub model: PathBuf,
    /// UTF-8 text
    #[arg(long, allow_negative_numbers = true, value_name = "FILE")]
    pub corpus: PathBuf,
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    #[command(flatten)]
    pub source: ModelCorpusArgs,
    /// SAE: a folder in any format saelab reads (SAELens, Gemma Scope 1/2, Llama Scope, sparsify, dictionary_learning), a single-file SAE (Qwen Scope layerN.sae.pt, GPT-2 attention NAME.pt), or RELEASE/SAE_ID from SAELens's registry, read from the Hugging Face cache
    #[arg(long, allow_negative_numbers = true, value_name = "SAE")]
    pub sae: PathBuf,
    /// Sample tokens (the corpus's first)
    #[arg(long, allow_negative_numbers = true, default_value_t = 4096)]
    pub tokens: usize,
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    pub feature: usize,
    /// Tokens per context, BOS included (default: the model's context, at most 128)
    #[arg(long, allow_negative_numbers = true)]
    pub context: Option<usize>,
    #[command(flatten)]
    pub device: DeviceArg,
}

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    #[command(flatten)]
    pub source: ModelCorpusArgs,
    #[arg(long, allow_negative_numbers = true, value_name = "NAME")]
    pub hook: String,
    #[arg(long, allow_negative_numbers = true, default_value_t = 128)]
    pub context: usize,
    #[arg(long, allow_negative_numbers = true, default_value_t = 16)]
    pub contexts: usize,
    #[arg(long, allow_negative_numbers = true, default_value_t = 4096)]
    pub dict: usize,
    #[arg(long, allow_negative_numbers = true, default_value_t = 16)]
    pub k: usize,
    #[arg(long, allow_negative_numbers = true, default_value_t = 1024)]
    pub batch: usize,
    #[arg(long, allow_negative_numbers = true, default_value_t = 5)]
    pub steps: usize,
    #[command(flatten)]
    pub device: BenchDeviceArg,
}

#[derive(Debug, Args)]
pub struct ForwardArgs {
    #[arg(long, allow_negative_numbers = true, value_name = "DIR")]
    pub model: PathBuf,
    #[command(flatten)]
    pub tokens: TokensArg,
    /// Write the logits [n, vocab] here
    #[arg(long, allow_negative_numbers = true, value_name = "OUT.npy")]
    pub logits: Option<PathBuf>,
    /// Write a hook point's activations: NAME=OUT.npy (repeatable)
    #[arg(long, allow_negative_numbers = true, value_name = "NAME=OUT.npy")]
    pub hook: Vec<String>,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// A model with an SAE at its hook, and the tokens to run.
#[derive(Debug, Args)]
pub struct ModelSaeArgs {
    #[arg(long, allow_negative_numbers = true, value_name = "DIR")]
    pub model: PathBuf,
    /// SAE: a folder in any format saelab reads (SAELens, Gemma Scope 1/2, Llama Scope, sparsify, dictionary_learning), a single-file SAE (Qwen Scope layerN.sae.pt, GPT-2 attention NAME.pt), or RELEASE/SAE_ID from SAELens's registry, read from the Hugging Face cache
    #[arg(long, allow_negative_numbers = true, value_name = "SAE")]
    pub sae: PathBuf,
    #[command(flatten)]
    pub tokens: TokensArg,
    /// Do not put the model's BOS token first (by default --text gets it when the SAE's prepend_bos says so; --tokens run as given)
    #[arg(long)]
    pub no_bos: bool,
    #[command(flatten)]
    pub device: DeviceArg,
}

#[derive(Debug, Args)]
pub struct SpliceArgs {
    #[command(flatten)]
    pub run: ModelSaeArgs,
    /// Seeds the random-error baseline
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct FeaturesArgs {
    #[command(flatten)]
    pub run: ModelSaeArgs,
    /// Features listed per token
    #[arg(long, allow_negative_numbers = true, default_value_t = 5)]
    pub top: usize,
    /// One feature in detail: its activation on every token and its logit lens
    #[arg(long, allow_negative_numbers = true)]
    pub feature: Option<usize>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[arg(long, allow_negative_numbers = true, value_name = "DIR")]
    pub model: PathBuf,
    /// The prompt as text
    #[arg(long, allow_negative_numbers = true)]
    pub text: Option<String>,
    /// The prompt as a 1-D .npy of token ids
    #[arg(long, allow_negative_numbers = true, value_name = "T.npy")]
    pub prompt_tokens: Option<PathBuf>,
    /// New tokens
    #[arg(long, allow_negative_numbers = true, default_value_t = 20)]
    pub tokens: usize,
    /// 0: greedy
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    pub seed: u64,
    /// The SAE whose features steer (a folder or RELEASE/SAE_ID, as --sae elsewhere)
    #[arg(long, allow_negative_numbers = true, value_name = "SAE")]
    pub sae: Option<PathBuf>,
    /// Add ALPHA·W_dec[FEATURE] at every position
    #[arg(long, allow_negative_numbers = true, value_name = "FEATURE=ALPHA")]
    pub steer: Option<String>,
    /// Set FEATURE's activation to VALUE at every position
    #[arg(long, allow_negative_numbers = true, value_name = "FEATURE=VALUE")]
    pub clamp: Option<String>,
    /// Do not put the model's BOS token first (by default --text gets it when --sae's prepend_bos says so)
    #[arg(long)]
    pub no_bos: bool,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// `saelab train`. The run's settings default to the training policy's (`train::policy`); with
/// `--resume` they come from the checkpoint and giving one is refused.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub source: ModelCorpusArgs,
    /// Where to save the SAE (SAELens format)
    #[arg(long, allow_negative_numbers = true, value_name = "DIR")]
    pub save: PathBuf,
    /// The hook point to train at (a TransformerLens name)
    #[arg(long, allow_negative_numbers = true, value_name = "NAME")]
    pub hook: Option<String>,
    /// standard, topk, batchtopk, jumprelu or gated
    #[arg(long, allow_negative_numbers = true)]
    pub arch: Option<String>,
    /// Active latents per token (topk, batchtopk; default 32)
    #[arg(long, allow_negative_numbers = true)]
    pub k: Option<usize>,
    /// L1 coefficient (standard, gated; default 5)
    #[arg(long, allow_negative_numbers = true)]
    pub l1: Option<f32>,
    /// L0 coefficient (jumprelu; default 0.001)
    #[arg(long, allow_negative_numbers = true)]
    pub l0: Option<f32>,
    /// JumpReLU's threshold bandwidth (default 0.05)
    #[arg(long, allow_negative_numbers = true)]
    pub bandwidth: Option<f32>,
    /// Latents (default 4096)
    #[arg(long, allow_negative_numbers = true)]
    pub dict: Option<usize>,
    /// Training tokens (rows)
    #[arg(long, allow_negative_numbers = true)]
    pub tokens: Option<usize>,
    /// Rows per step (default 1024)
    #[arg(long, allow_negative_numbers = true)]
    pub batch: Option<usize>,
    /// Learning rate (default 0.001)
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// Seeds the SAE's initialisation and the activation store (default 1)
    #[arg(long, allow_negative_numbers = true)]
    pub seed: Option<u64>,
    /// Tokens per context, BOS included (default: the model's context, at most 128)
    #[arg(long, allow_negative_numbers = true)]
    pub context: Option<usize>,
    /// Rows in the mixing buffer
    #[arg(long, allow_negative_numbers = true, value_name = "ROWS")]
    pub buffer: Option<usize>,
    /// Steps between held-out evaluations (default: about four per run)
    #[arg(long, allow_negative_numbers = true, value_name = "STEPS")]
    pub eval_every: Option<usize>,
    /// Steps without firing after which a latent counts as dead
    #[arg(long, allow_negative_numbers = true, value_name = "STEPS")]
    pub dead_after: Option<usize>,
    /// Save the run here as it trains, to go on from with --resume
    #[arg(long, allow_negative_numbers = true, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Steps between checkpoints (default: every evaluation)
    #[arg(long, allow_negative_numbers = true, value_name = "STEPS")]
    pub checkpoint_every: Option<usize>,
    /// Train this many steps, checkpoint and stop
    #[arg(long, allow_negative_numbers = true, value_name = "STEPS")]
    pub stop_after: Option<usize>,
    /// Go on from a checkpoint (its settings; the same model and corpus)
    #[arg(long, allow_negative_numbers = true, value_name = "FILE")]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArg,
}

impl TrainArgs {
    /// The run settings given on the command line, by flag name (a resumed run refuses them).
    pub fn run_settings_given(&self) -> Option<&'static str> {
        let given = [
            ("hook", self.hook.is_some()),
            ("arch", self.arch.is_some()),
            ("k", self.k.is_some()),
            ("l1", self.l1.is_some()),
            ("l0", self.l0.is_some()),
            ("bandwidth", self.bandwidth.is_some()),
            ("dict", self.dict.is_some()),
            ("tokens", self.tokens.is_some()),
            ("batch", self.batch.is_some()),
            ("lr", self.lr.is_some()),
            ("seed", self.seed.is_some()),
            ("context", self.context.is_some()),
            ("buffer", self.buffer.is_some()),
            ("dead-after", self.dead_after.is_some()),
        ];
        given.into_iter().find(|(_, is)| *is).map(|(name, _)| name)
    }
}

#[derive(Debug, Args)]
pub struct SuperpositionArgs {
    #[arg(long, allow_negative_numbers = true, default_value_t = 5)]
    pub features: usize,
    #[arg(long, allow_negative_numbers = true, default_value_t = 2)]
    pub dims: usize,
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.9)]
    pub sparsity: f32,
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.9)]
    pub importance_decay: f32,
    #[arg(long, allow_negative_numbers = true, default_value_t = 256)]
    pub batch: usize,
    #[arg(long, allow_negative_numbers = true, default_value_t = 3000)]
    pub steps: usize,
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.01)]
    pub lr: f32,
    #[arg(long, allow_negative_numbers = true, default_value_t = 1)]
    pub seed: u64,
}
