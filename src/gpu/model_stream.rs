//! A model put on the GPU from its checkpoint's bytes as they are read, tensor by tensor, so the
//! weights are never in host memory at once (in the page wasm32 holds at most 4 GiB, and a 2B
//! model in bf16 is 5 GB). The files' headers say where every tensor is (`families::places`);
//! from them [`ModelUpload::new`] makes every GPU buffer and, per file, the reads in file order:
//! - [`Read::ToGpu`]: bytes copied as stored into a buffer at an offset — every projection and
//!   embedding stored row-major (Llama, Qwen, Gemma, GPT-NeoX's per-head q/k/v rows), kept on
//!   the GPU in the dtype the checkpoint stores it in, so no value is converted;
//! - [`Read::ToHost`]: a tensor the host must see — norms, biases, learned positions (kept in
//!   f32 on the GPU) and matrices read transposed (GPT-2's `Conv1D`), which are gathered, packed,
//!   written and dropped as soon as they arrive.
//!
//! The caller reads the bytes (a file natively; a `Blob` slice in the page, written with
//! `queue.writeBuffer` from the JS array, so those bytes never enter wasm memory), does the ToGpu
//! writes itself, hands the ToHost tensors to [`ModelUpload::receive`] and calls
//! [`ModelUpload::finish`]. What passed through the host is counted (`host_bytes`).
//!
//! Values copied straight to the GPU are not checked for being finite, as the host path checks
//! them: a NaN or infinity there shows in the logits and hook values it reaches.

use std::collections::BTreeMap;
use std::ops::Range;

use super::model_runner::{check_fits, storage_of, GpuLayer, GpuLinear, GpuModel, GpuNorm};
use super::{Gpu, GpuError};
use crate::formats::safetensors::{RawTensor, TensorEntry};
use crate::model::decoder::DecoderConfig;
use crate::model::decoder_weights::{DecoderWeights, LayerWeights, Linear, NormWeights, TensorPlace};

/// Whether a model `cfg` describes fits this adapter's bindings (each weight row in one; tables
/// larger than a binding are split by rows), said before anything is downloaded.
pub fn check_fits_adapter(gpu: &Gpu, cfg: &DecoderConfig) -> Result<(), GpuError> {
    check_fits(gpu, cfg, gpu.max_binding_bytes())
}

/// One read of a checkpoint file.
#[derive(Debug, Clone)]
pub enum Read {
    /// The file's `bytes` go to `buffer` at `offset` as they are (4-byte aligned, a multiple of 4
    /// long, as `writeBuffer` asks).
    ToGpu { bytes: Range<u64>, buffer: wgpu::Buffer, offset: u64 },
    /// Stored tensor `tensor`, at the file's `bytes`, goes to [`ModelUpload::receive`].
    ToHost { tensor: String, bytes: Range<u64> },
}

impl Read {
    /// Where the read starts in its file.
    pub fn start(&self) -> u64 {
        match self {
            Read::ToGpu { bytes, .. } | Read::ToHost { bytes, .. } => bytes.start,
        }
    }
}

/// A projection being uploaded: its GPU buffers and where its weight and bias are.
struct Pending {
    gpu: GpuLinear,
    place: Linear<TensorPlace>,
    /// Whether the weight arrives on the host (transposed or unaligned) rather than straight.
    via_host: bool,
}

/// A model whose GPU buffers exist and are being filled.
pub struct ModelUpload {
    cfg: DecoderConfig,
    entries: BTreeMap<String, TensorEntry>,
    embed: Pending,
    unembed: Option<Pending>,
    layers: Vec<LayerWeights<Pending, NormWeights<TensorPlace>>>,
    pos_embed: Option<TensorPlace>,
    final_norm: NormWeights<TensorPlace>,
    /// Per file, its reads in file order.
    reads: BTreeMap<String, Vec<Read>>,
    /// The stored values (f32) of the tensors received that are kept until `finish`.
    received: BTreeMap<String, Vec<f32>>,
    /// Tensors `receive` still waits for.
    awaited: std::collections::BTreeSet<String>,
    max_binding_bytes: u64,
    host_bytes: u64,
}

impl ModelUpload {
    /// Makes every GPU buffer of the model `cfg` and `places` describe (`entries`: every stored
    /// tensor's header entry, `file_of`: the file holding it), splitting projections into chunks
    /// of at most `max_binding_bytes`.
    pub fn new(
        gpu: &Gpu,
        cfg: DecoderConfig,
        places: DecoderWeights<TensorPlace>,
        entries: BTreeMap<String, TensorEntry>,
        file_of: &BTreeMap<String, String>,
        max_binding_bytes: u64,
    ) -> Result<ModelUpload, GpuError> {
        let limit = max_binding_bytes.min(gpu.max_binding_bytes());
        check_fits(gpu, &cfg, limit)?;
        let mut reads: BTreeMap<String, Vec<Read>> = BTreeMap::new();
        let mut awaited = std::collections::BTreeSet::new();
        let mut to_host = |tensor: &str, reads: &mut BTreeMap<String, Vec<Read>>| {
            if awaited.insert(tensor.to_string()) {
                let file = file_of.get(tensor).cloned().unwrap_or_default();
                reads.entry(file).or_default().push(Read::ToHost { tensor: tensor.into(), bytes: entries[tensor].bytes.clone() });
            }
        };
        let mut pending = |label: &str, place: Linear<TensorPlace>, reads: &mut BTreeMap<String, Vec<Read>>| {
            let gpu_linear = GpuLinear::allocate(gpu, label, place.d_in, place.d_out, storage_of(place.weight.dtype), limit);
            let straight = gpu_writes(&gpu_linear, &place.weight, &entries[&place.weight.tensor]);
            let via_host = straight.is_none();
            match straight {
                Some(writes) => reads.entry(file_of.get(&place.weight.tensor).cloned().unwrap_or_default()).or_default().extend(writes),
                None => to_host(&place.weight.tensor, reads),
            }
            if let Some(b) = &place.bias {
                to_host(&b.tensor, reads);
            }
            Pending { gpu: gpu_linear, place, via_host }
        };
        let matrix = |t: &TensorPlace, rows: usize| Linear { d_in: cfg.d_model, d_out: rows, weight: t.clone(), bias: None };
        let embed = pending("embed", matrix(&places.embed, cfg.vocab_size), &mut reads);
        let unembed = places.unembed.as_ref().map(|u| pending("unembed", matrix(u, cfg.vocab_size), &mut reads));
        let mut layers = Vec::new();
        for l in places.layers {
            layers.push(l.map(|label, linear| pending(label, linear, &mut reads), |_, n| n));
        }
        let mut norm_reads = |n: &NormWeights<TensorPlace>, reads: &mut BTreeMap<String, Vec<Read>>| {
            to_host(&n.weight.tensor, reads);
            if let Some(b) = &n.bias {
                to_host(&b.tensor, reads);
            }
        };
        for l in &layers {
            l.norms().for_each(|n| norm_reads(n, &mut reads));
        }
        norm_reads(&places.final_norm, &mut reads);
        if let Some(p) = &places.pos_embed {
            to_host(&p.tensor, &mut reads);
        }
        reads.values_mut().for_each(|r| r.sort_by_key(Read::start));
        Ok(ModelUpload {
            cfg,
            entries,
            embed,
            unembed,
            layers,
            pos_embed: places.pos_embed,
            final_norm: places.final_norm,
            reads,
            received: BTreeMap::new(),
            awaited,
            max_binding_bytes: limit,
            host_bytes: 0,
        })
    }

    /// The reads of file `name`, in file order (none when the file holds nothing the model uses).
    pub fn reads(&self, name: &str) -> &[Read] {
        self.reads.get(name).map_or(&[], Vec::as_slice)
    }

    /// The files with reads.
    pub fn files(&self) -> Vec<String> {
        self.reads.keys().cloned().collect()
    }

    /// Bytes that have passed through host memory so far (the ToHost tensors').
    pub fn host_bytes(&self) -> u64 {
        self.host_bytes
    }

    /// Bytes the ToGpu reads copy straight to the GPU.
    pub fn straight_bytes(&self) -> u64 {
        self.reads.values().flatten().map(|r| if let Read::ToGpu { bytes, .. } = r { bytes.end - bytes.start } else { 0 }).sum()
    }

    /// Takes a ToHost tensor's stored bytes: a matrix that arrives on the host is written to its
    /// GPU buffers now; norms, biases and positions are kept (in f32) until `finish`.
    pub fn receive(&mut self, gpu: &Gpu, tensor: &str, bytes: &[u8]) -> Result<(), String> {
        if !self.awaited.remove(tensor) {
            return Err(format!("tensor '{tensor}' was not asked for (or was given twice)"));
        }
        let entry = &self.entries[tensor];
        if bytes.len() as u64 != entry.bytes.end - entry.bytes.start {
            return Err(format!("tensor '{tensor}': {} bytes given, its header says {}", bytes.len(), entry.bytes.end - entry.bytes.start));
        }
        self.host_bytes += bytes.len() as u64;
        let values = RawTensor { dtype: entry.dtype, shape: entry.shape.clone(), bytes: bytes.to_vec() }.finite_f32(tensor)?;
        let mut used_by_matrix = false;
        for p in self.pending().filter(|p| p.via_host && p.place.weight.tensor == tensor) {
            p.gpu.write_weight(gpu, &p.place.weight.gather(values.clone()));
            used_by_matrix = true;
        }
        if !used_by_matrix {
            self.received.insert(tensor.to_string(), values);
        }
        Ok(())
    }

    fn pending(&self) -> impl Iterator<Item = &Pending> {
        std::iter::once(&self.embed).chain(&self.unembed).chain(self.layers.iter().flat_map(|l| l.linears()))
    }

    /// The model, once every ToGpu read is written and every ToHost tensor received.
    pub fn finish(self, gpu: &Gpu) -> Result<GpuModel, String> {
        if let Some(t) = self.awaited.iter().next() {
            return Err(format!("tensor '{t}' was never read ({} tensors missing)", self.awaited.len()));
        }
        let values = |p: &TensorPlace| p.gather(self.received[&p.tensor].clone());
        let linear = |p: Pending| {
            if let Some(b) = &p.place.bias {
                p.gpu.write_bias(gpu, &values(b));
            }
            p.gpu
        };
        let norm = |label: &str, n: &NormWeights<TensorPlace>| {
            GpuNorm::upload(gpu, label, &NormWeights { weight: values(&n.weight), bias: n.bias.as_ref().map(values) })
        };
        let pos_embed = self.pos_embed.as_ref().map(|p| gpu.upload_f32("pos_embed", &values(p)));
        let final_norm = norm("final_norm", &self.final_norm);
        let layers: Vec<GpuLayer> = self.layers.into_iter().map(|l| l.map(|_, p| linear(p), |label, n| norm(label, &n))).collect();
        let (embed, unembed) = (linear(self.embed), self.unembed.map(linear));
        Ok(GpuModel::assemble(self.cfg, embed, unembed, pos_embed, layers, final_norm, self.max_binding_bytes))
    }
}

/// The reads that copy `place`'s stored bytes (`entry`) straight into `linear`'s chunks, or
/// `None` when they cannot be: read transposed, or a piece not 4-byte aligned.
fn gpu_writes(linear: &GpuLinear, place: &TensorPlace, entry: &TensorEntry) -> Option<Vec<Read>> {
    let b = place.dtype.bytes() as u64;
    let d_in = linear.d_in as u64;
    let mut reads = Vec::new();
    // Each stored byte range holds the matrix's next values (as the model reads it, row-major).
    let mut logical = 0u64;
    for stored in place.stored_byte_ranges()? {
        let values = (stored.end - stored.start) / b;
        for chunk in &linear.chunks {
            let chunk_start = chunk.first as u64 * d_in;
            let (from, to) = (logical.max(chunk_start), (logical + values).min(chunk_start + chunk.rows as u64 * d_in));
            if from >= to {
                continue;
            }
            let at = entry.bytes.start + stored.start + (from - logical) * b;
            let (bytes, offset) = (at..at + (to - from) * b, (from - chunk_start) * b);
            if bytes.start % 4 != 0 || (bytes.end - bytes.start) % 4 != 0 || offset % 4 != 0 {
                return None;
            }
            reads.push(Read::ToGpu { bytes, buffer: chunk.weight.clone(), offset });
        }
        logical += values;
    }
    Some(reads)
}

/// What an upload moved: bytes copied straight to the GPU and bytes that passed through host
/// memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadStats {
    pub straight_bytes: u64,
    pub host_bytes: u64,
}

#[cfg(not(target_arch = "wasm32"))]
mod dir {
    use std::io::{Read as _, Seek, SeekFrom};
    use std::path::Path;

    use super::*;
    use crate::formats::safetensors::TensorTable;
    use crate::formats::shards::ShardIndex;
    use crate::model::files::{self, CheckpointHeaders, CONFIG_FILE, GENERATION_CONFIG_FILE, INDEX_FILE, WEIGHTS_FILE};

    fn read_range(file: &mut std::fs::File, bytes: Range<u64>) -> std::io::Result<Vec<u8>> {
        let mut out = vec![0; (bytes.end - bytes.start) as usize];
        file.seek(SeekFrom::Start(bytes.start))?;
        file.read_exact(&mut out)?;
        Ok(out)
    }

    /// Puts the model folder `dir` on the GPU as the page does, reading each tensor where its
    /// header says: ToGpu reads in pieces of at most `piece` bytes (a multiple of 4), ToHost
    /// tensors one at a time. Projections split at `max_binding_bytes`.
    pub fn upload_model_dir(gpu: &Gpu, dir: &Path, max_binding_bytes: u64, piece: u64) -> Result<(GpuModel, UploadStats), String> {
        let io = |name: &str, e: std::io::Error| format!("{}: {e}", dir.join(name).display());
        let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| io(name, e));
        let (index, names) = if dir.join(WEIGHTS_FILE).exists() || !dir.join(INDEX_FILE).exists() {
            (None, vec![WEIGHTS_FILE.to_string()])
        } else {
            let index = read(INDEX_FILE)?;
            let names = ShardIndex::parse(&index).map_err(|e| e.to_string())?.files().into_iter().map(str::to_string).collect();
            (Some(index), names)
        };
        let mut tables = Vec::new();
        for name in &names {
            let mut file = std::fs::File::open(dir.join(name)).map_err(|e| io(name, e))?;
            let len = file.metadata().map_err(|e| io(name, e))?.len();
            let first = read_range(&mut file, 0..8.min(len)).map_err(|e| io(name, e))?;
            let header_bytes = TensorTable::header_bytes(name, &first).map_err(|e| e.to_string())? as u64;
            let head = read_range(&mut file, 0..header_bytes.min(len)).map_err(|e| io(name, e))?;
            tables.push((name.clone(), TensorTable::parse(name, &head, len).map_err(|e| e.to_string())?));
        }
        let headers = CheckpointHeaders::join(index.as_deref(), tables).map_err(|e| e.to_string())?;
        let (mut cfg, places) = files::model_places(&read(CONFIG_FILE)?, &headers).map_err(|e| e.to_string())?;
        if dir.join(GENERATION_CONFIG_FILE).exists() {
            cfg = files::with_generation_config_ids(cfg, &read(GENERATION_CONFIG_FILE)?).map_err(|e| e.to_string())?;
        }
        let mut upload =
            ModelUpload::new(gpu, cfg, places, headers.entries, &headers.file_of, max_binding_bytes).map_err(|e| e.to_string())?;
        for name in upload.files() {
            let mut file = std::fs::File::open(dir.join(&name)).map_err(|e| io(&name, e))?;
            for r in upload.reads(&name).to_vec() {
                match r {
                    Read::ToGpu { bytes, buffer, offset } => {
                        for at in (bytes.start..bytes.end).step_by(piece as usize) {
                            let end = (at + piece).min(bytes.end);
                            let data = read_range(&mut file, at..end).map_err(|e| io(&name, e))?;
                            gpu.queue.write_buffer(&buffer, offset + (at - bytes.start), &data);
                        }
                    }
                    Read::ToHost { tensor, bytes } => {
                        let data = read_range(&mut file, bytes).map_err(|e| io(&name, e))?;
                        upload.receive(gpu, &tensor, &data)?;
                    }
                }
            }
        }
        let stats = UploadStats { straight_bytes: upload.straight_bytes(), host_bytes: upload.host_bytes() };
        Ok((upload.finish(gpu)?, stats))
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use dir::upload_model_dir;
