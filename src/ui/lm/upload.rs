//! A model folder's files as the page holds them — the small ones read, the weights as `Blob`s
//! (downloaded into Cache Storage, which keeps them on disk, or chosen and dropped files) — put
//! on the page's backend. On WebGPU the weights stream to the GPU as `gpu::model_stream` lists
//! them: the headers are read first, then every projection's bytes go from a Blob slice to its
//! buffer with `GPUQueue.writeBuffer` from the JS array, so they never enter wasm memory (wasm32
//! holds at most 4 GiB; a 2B model in bf16 is 5 GB). Only norms, biases, learned positions and
//! transposed matrices pass through it, counted. Without WebGPU the CPU reference needs the
//! weights in wasm memory, as f32: the files are read whole, after checking they can fit.

use std::rc::Rc;

use js_sys::Uint8Array;

use super::super::web;
use crate::formats::safetensors::{TensorTable, HEADER_LENGTH_BYTES};
use crate::formats::shards::ShardIndex;
use crate::gpu::model_stream::{ModelUpload, Read, UploadStats};
use crate::gpu::Gpu;
use crate::lm::LoadedModel;
use crate::model::decoder::DecoderConfig;
use crate::model::files::{model_places, parse_model, parse_weights, CheckpointHeaders, WeightFiles, WEIGHTS_FILE};

/// Bytes one slice of a Blob reads before it is written to the GPU.
const PIECE: u64 = 32 << 20;

/// Host memory the CPU reference may take for a model's f32 weights: wasm32's 4 GiB less what
/// the page itself, the tokenizer and the activations need.
const CPU_WEIGHT_LIMIT: u64 = 3 << 30;

/// A model's weight files: `model.safetensors`, or a sharded checkpoint's index and shards.
pub(super) struct WeightBlobs {
    pub index: Option<Vec<u8>>,
    pub files: Vec<(String, web_sys::Blob)>,
}

/// Whether the model `cfg` describes can be loaded on this backend, said before the download:
/// without WebGPU its f32 weights must fit wasm memory; on a GPU every weight row must fit one
/// binding (larger tables are split by rows). WebGPU says nothing of the GPU's memory: running
/// out of it while uploading is caught (`to_gpu`).
pub(super) fn check_fits(cfg: &DecoderConfig, gpu: Option<&Gpu>) -> Result<(), String> {
    let params = cfg.parameter_count();
    match gpu {
        None if params * 4 > CPU_WEIGHT_LIMIT => Err(format!(
            "this model has {:.2}B parameters, {:.1} GB as f32: without WebGPU the page runs models in its own memory, which holds at most \
             {:.1} GB of weights (about {:.2}B parameters) — open the page in a browser with WebGPU to run it on the GPU",
            params as f64 / 1e9,
            params as f64 * 4.0 / 1e9,
            CPU_WEIGHT_LIMIT as f64 / 1e9,
            CPU_WEIGHT_LIMIT as f64 / 4e9
        )),
        None => Ok(()),
        Some(gpu) => crate::gpu::model_stream::check_fits_adapter(gpu, cfg).map_err(|e| e.to_string()),
    }
}

/// Reads a Blob's safetensors header (its first bytes only).
async fn header(name: &str, blob: &web_sys::Blob) -> Result<TensorTable, String> {
    let size = blob.size() as u64;
    let first = web::blob_bytes(blob, 0, (HEADER_LENGTH_BYTES as u64).min(size)).await?.to_vec();
    let header_bytes = TensorTable::header_bytes(name, &first).map_err(|e| e.to_string())? as u64;
    let head = web::blob_bytes(blob, 0, header_bytes.min(size)).await?.to_vec();
    TensorTable::parse(name, &head, size).map_err(|e| e.to_string())
}

/// `writeBuffer` from a JS array: the bytes go from the browser to the GPU, not through wasm.
fn write_from_js(gpu: &Gpu, buffer: &wgpu::Buffer, offset: u64, data: &Uint8Array) -> Result<(), String> {
    let queue = gpu.queue.as_webgpu().ok_or("the GPU queue is not the browser's WebGPU queue")?;
    let target = buffer.as_webgpu().ok_or("a GPU buffer is not a WebGPU buffer")?;
    queue.write_buffer_with_f64_and_u8_array(target, offset as f64, data).map_err(|e| format!("writeBuffer: {e:?}"))
}

/// Streams the model to the GPU; `on_progress(done, total)` in bytes read. The GPU's
/// out-of-memory errors during it are caught and said.
pub(super) async fn to_gpu(
    gpu: Rc<Gpu>,
    config: &[u8],
    weights: &WeightBlobs,
    on_progress: impl Fn(u64, u64),
) -> Result<(LoadedModel, UploadStats), String> {
    let mut tables = Vec::new();
    for (name, blob) in &weights.files {
        tables.push((name.clone(), header(name, blob).await?));
    }
    let headers = CheckpointHeaders::join(weights.index.as_deref(), tables).map_err(|e| e.to_string())?;
    let (cfg, places) = model_places(config, &headers).map_err(|e| e.to_string())?;
    let total = headers.data_bytes();
    let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let streamed = stream(&gpu, cfg, places, headers, weights, total, &on_progress).await;
    let out_of_memory = scope.pop().await;
    if let Some(e) = out_of_memory {
        return Err(format!(
            "the GPU ran out of memory putting {:.2} GB of weights on it ({e}); a smaller model, or one in bf16, may fit",
            total as f64 / 1e9
        ));
    }
    let (model, stats) = streamed?;
    let loaded = LoadedModel::on_gpu_only(gpu, model).await.map_err(|e| e.to_string())?;
    Ok((loaded, stats))
}

async fn stream(
    gpu: &Gpu,
    cfg: DecoderConfig,
    places: crate::model::decoder_weights::DecoderWeights<crate::model::decoder_weights::TensorPlace>,
    headers: CheckpointHeaders,
    weights: &WeightBlobs,
    total: u64,
    on_progress: &impl Fn(u64, u64),
) -> Result<(crate::gpu::model_runner::GpuModel, UploadStats), String> {
    let mut upload =
        ModelUpload::new(gpu, cfg, places, headers.entries, &headers.file_of, gpu.max_binding_bytes()).map_err(|e| e.to_string())?;
    let mut done = 0;
    for (name, blob) in &weights.files {
        for read in upload.reads(name).to_vec() {
            match read {
                Read::ToGpu { bytes, buffer, offset } => {
                    for at in (bytes.start..bytes.end).step_by(PIECE as usize) {
                        let end = (at + PIECE).min(bytes.end);
                        write_from_js(gpu, &buffer, offset + (at - bytes.start), &web::blob_bytes(blob, at, end).await?)?;
                        done += end - at;
                        on_progress(done, total);
                    }
                }
                Read::ToHost { tensor, bytes } => {
                    done += bytes.end - bytes.start;
                    let data = web::blob_bytes(blob, bytes.start, bytes.end).await?.to_vec();
                    upload.receive(gpu, &tensor, &data)?;
                    on_progress(done, total);
                }
            }
        }
        // Let the page paint the progress between files.
        web::yield_to_browser().await;
    }
    let stats = UploadStats { straight_bytes: upload.straight_bytes(), host_bytes: upload.host_bytes() };
    Ok((upload.finish(gpu)?, stats))
}

/// The model read whole into wasm memory, for the CPU reference.
pub(super) async fn to_host(config: &[u8], weights: &WeightBlobs) -> Result<crate::model::Model, String> {
    let mut files = Vec::new();
    for (name, blob) in &weights.files {
        files.push((name.clone(), web::blob_bytes(blob, 0, blob.size() as u64).await?.to_vec()));
    }
    let files = match &weights.index {
        None => WeightFiles::Single(files.pop().map(|(_, b)| b).ok_or(format!("{WEIGHTS_FILE} is missing"))?),
        Some(index) => WeightFiles::Sharded { index: index.clone(), shards: files },
    };
    parse_weights(&files).and_then(|file| parse_model(config, vec![file])).map_err(|e| e.to_string())
}

/// The shard names a sharded checkpoint's index lists.
pub(super) fn shard_names(index: &[u8]) -> Result<Vec<String>, String> {
    Ok(ShardIndex::parse(index).map_err(|e| e.to_string())?.files().into_iter().map(str::to_string).collect())
}
