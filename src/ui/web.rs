//! Thin wrappers over browser APIs: fetch, file reading, the adapter's description, timing.

use js_sys::Uint8Array;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen(inline_js = r#"
export async function adapter_description() {
    if (!navigator.gpu) return "";
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return "";
    const i = adapter.info || {};
    return [i.vendor, i.architecture, i.device, i.description].filter((s) => s).join(" · ");
}
export function yield_now() { return new Promise((resolve) => setTimeout(resolve, 0)); }
// The files of a drop, each as [file, path]: folders are walked (webkitGetAsEntry) and their
// files carry their path from the dropped folder ("/gemma-2-2b/config.json"); plain files are
// taken as they are, with their name.
export async function dropped_files(event) {
    const items = Array.from(event.dataTransfer ? event.dataTransfer.items : []);
    const entries = items.map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
    const files = [];
    const walk = async (entry) => {
        if (entry.isFile) {
            files.push([await new Promise((ok, fail) => entry.file(ok, fail)), entry.fullPath]);
        } else if (entry.isDirectory) {
            const reader = entry.createReader();
            for (;;) {
                const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
                if (batch.length === 0) break;
                for (const e of batch) await walk(e);
            }
        }
    };
    for (let i = 0; i < items.length; i++) {
        if (entries[i]) await walk(entries[i]);
        else if (items[i].kind === "file") { const f = items[i].getAsFile(); files.push([f, f.name]); }
    }
    return files;
}
// GET as a Blob with a progress callback (loaded, total, from_cache), through Cache Storage: the
// body streams into the cache as it arrives (a response that breaks off is not stored) and the
// Blob returned is the cached one, which the browser keeps on disk — no copy of a large file sits
// in the page's memory. Without Cache Storage (or with its quota used up) the bytes are kept in
// a Blob the browser holds.
async function open_cache(cache_name) {
    if (typeof caches === "undefined") return null;
    try { return await caches.open(cache_name); } catch (e) { return null; }
}
async function get(url, optional) {
    let response;
    try { response = await fetch(url); } catch (e) { throw new Error(`${url}: ${e.message || e}`); }
    if (optional && response.status === 404) return null;
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response;
}
async function read_all(url, body, total, on_progress, keep) {
    const reader = body.getReader();
    const chunks = [];
    let loaded = 0;
    for (;;) {
        let part;
        try { part = await reader.read(); } catch (e) { throw new Error(`${url}: the download broke off after ${loaded} bytes (${e.message || e})`); }
        if (part.done) break;
        if (keep) chunks.push(part.value);
        loaded += part.value.length;
        on_progress(loaded, total, false);
    }
    if (total && loaded !== total) throw new Error(`${url}: the download broke off at ${loaded} of ${total} bytes`);
    return chunks;
}
// With `optional`, a file the server does not have (HTTP 404) gives null, and that answer is
// cached too (an empty entry marked x-saelab-absent), so a second load asks nothing.
export async function fetch_blob(url, cache_name, on_progress, optional) {
    const cache = await open_cache(cache_name);
    const hit = cache ? await cache.match(url) : undefined;
    if (hit) {
        if (optional && hit.headers.get("x-saelab-absent")) return null;
        const blob = await hit.blob();
        on_progress(blob.size, blob.size, true);
        return blob;
    }
    const response = await get(url, optional);
    if (!response) {
        if (cache) await cache.put(url, new Response(null, { headers: { "x-saelab-absent": "1" } })).catch(() => {});
        return null;
    }
    return await store_blob(url, cache, response, on_progress);
}
async function store_blob(url, cache, response, on_progress) {
    const total = Number(response.headers.get("content-length")) || 0;
    if (cache) {
        const [mine, theirs] = response.body.tee();
        const headers = { "content-type": "application/octet-stream" };
        if (total) headers["content-length"] = String(total);
        const put = cache.put(url, new Response(theirs, { headers })).then(() => true, () => false);
        await read_all(url, mine, total, on_progress, false);
        if (await put) {
            const stored = await cache.match(url);
            if (stored) return await stored.blob();
        }
        // Not cached (quota): fetched again into a Blob the browser holds.
        return new Blob(await read_all(url, (await get(url)).body, total, on_progress, true));
    }
    return new Blob(await read_all(url, response.body, total, on_progress, true));
}
export async function blob_bytes(blob, start, end) {
    return new Uint8Array(await blob.slice(start, end).arrayBuffer());
}
// What the cache holds: [files, bytes].
export async function cache_usage(cache_name) {
    if (typeof caches === "undefined" || !(await caches.has(cache_name))) return [0, 0];
    const cache = await caches.open(cache_name);
    const keys = await cache.keys();
    let [files, bytes] = [0, 0];
    for (const k of keys) {
        const r = await cache.match(k);
        // A remembered 404 is no file.
        if (!r || r.headers.get("x-saelab-absent")) continue;
        const declared = Number(r.headers.get("content-length"));
        bytes += declared || (await r.blob()).size;
        files += 1;
    }
    return [files, bytes];
}
export async function cache_clear(cache_name) {
    if (typeof caches !== "undefined") await caches.delete(cache_name);
}
// IndexedDB: one database, one object store of byte arrays by key. Each write is one
// transaction, so a reload or a quota error half-way leaves what was stored before.
function idb_open() {
    return new Promise((ok, fail) => {
        if (typeof indexedDB === "undefined") return fail(new Error("this browser offers the page no IndexedDB storage"));
        const request = indexedDB.open("saelab", 1);
        request.onupgradeneeded = () => request.result.createObjectStore("saved");
        request.onsuccess = () => ok(request.result);
        request.onerror = () => fail(request.error);
    });
}
function storage_error(e) {
    if (e && e.name === "QuotaExceededError") return new Error("the browser's storage quota for this page is used up (QuotaExceededError)");
    return new Error(e && e.message ? `${e.name}: ${e.message}` : `storage failed: ${e}`);
}
async function idb_transaction(mode, work) {
    let db;
    try {
        db = await idb_open();
        return await new Promise((ok, fail) => {
            const tx = db.transaction("saved", mode);
            const result = work(tx.objectStore("saved"));
            tx.oncomplete = () => ok(result.value);
            tx.onabort = () => fail(tx.error || new Error("the storage transaction was aborted"));
        });
    } catch (e) {
        throw storage_error(e);
    } finally {
        if (db) db.close();
    }
}
export function idb_put(keys, values) {
    return idb_transaction("readwrite", (store) => {
        keys.forEach((k, i) => store.put(values[i], k));
        return {};
    });
}
export function idb_get(key) {
    return idb_transaction("readonly", (store) => {
        const result = {};
        const request = store.get(key);
        request.onsuccess = () => { result.value = request.result === undefined ? null : request.result; };
        return result;
    });
}
export function idb_delete(keys) {
    return idb_transaction("readwrite", (store) => {
        keys.forEach((k) => store.delete(k));
        return {};
    });
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = adapter_description)]
    async fn adapter_description_js() -> JsValue;
    #[wasm_bindgen(js_name = yield_now)]
    async fn yield_now_js();
    #[wasm_bindgen(js_name = dropped_files, catch)]
    async fn dropped_files_js(event: &web_sys::Event) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = fetch_blob, catch)]
    async fn fetch_blob_js(
        url: &str,
        cache_name: &str,
        on_progress: &Closure<dyn FnMut(f64, f64, bool)>,
        optional: bool,
    ) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = blob_bytes, catch)]
    async fn blob_bytes_js(blob: &web_sys::Blob, start: f64, end: f64) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = cache_usage, catch)]
    async fn cache_usage_js(cache_name: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = cache_clear, catch)]
    async fn cache_clear_js(cache_name: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = idb_put, catch)]
    async fn idb_put_js(keys: js_sys::Array, values: js_sys::Array) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = idb_get, catch)]
    async fn idb_get_js(key: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = idb_delete, catch)]
    async fn idb_delete_js(keys: js_sys::Array) -> Result<JsValue, JsValue>;
}

/// Stores each `(key, bytes)` in the page's IndexedDB, all or none (one transaction).
pub async fn storage_put(entries: &[(&str, &[u8])]) -> Result<(), String> {
    let keys: js_sys::Array = entries.iter().map(|(k, _)| JsValue::from_str(k)).collect();
    let values: js_sys::Array = entries.iter().map(|(_, v)| JsValue::from(Uint8Array::from(*v))).collect();
    idb_put_js(keys, values).await.map_err(js_error)?;
    Ok(())
}

/// The bytes stored under `key`, if any.
pub async fn storage_get(key: &str) -> Result<Option<Vec<u8>>, String> {
    let value = idb_get_js(key).await.map_err(js_error)?;
    if value.is_null() || value.is_undefined() {
        return Ok(None);
    }
    Ok(Some(value.dyn_into::<Uint8Array>().map_err(|_| format!("storage: '{key}' does not hold bytes"))?.to_vec()))
}

pub async fn storage_delete(keys: &[&str]) -> Result<(), String> {
    idb_delete_js(keys.iter().map(|k| JsValue::from_str(k)).collect()).await.map_err(js_error)?;
    Ok(())
}

/// The files dropped on the page by `event`, folders walked recursively, each with its path from
/// the dropped folder (a file dropped alone: its name).
pub async fn dropped_files(event: &web_sys::Event) -> Result<Vec<(web_sys::File, String)>, String> {
    let array: js_sys::Array = dropped_files_js(event).await.map_err(js_error)?.unchecked_into();
    Ok(array
        .iter()
        .filter_map(|pair| {
            let pair: js_sys::Array = pair.dyn_into().ok()?;
            Some((pair.get(0).dyn_into::<web_sys::File>().ok()?, pair.get(1).as_string()?))
        })
        .collect())
}

/// GETs `url` through the page's Cache Storage (`cache_name`), reporting `(loaded, total,
/// from_cache)` as bytes arrive; cached only when complete. The body stays in the browser (on
/// disk when cached) until read with `blob_bytes`.
pub async fn fetch_blob(url: &str, cache_name: &str, on_progress: impl FnMut(f64, f64, bool) + 'static) -> Result<web_sys::Blob, String> {
    let callback = Closure::<dyn FnMut(f64, f64, bool)>::new(on_progress);
    let value = fetch_blob_js(url, cache_name, &callback, false).await.map_err(js_error)?;
    value.dyn_into::<web_sys::Blob>().map_err(|_| format!("{url}: not a Blob"))
}

/// As `fetch_cached` for a file the server may not have: `None` on HTTP 404 (remembered in the
/// cache, so it is not asked again).
pub async fn fetch_cached_optional(
    url: &str,
    cache_name: &str,
    on_progress: impl FnMut(f64, f64, bool) + 'static,
) -> Result<Option<Vec<u8>>, String> {
    let callback = Closure::<dyn FnMut(f64, f64, bool)>::new(on_progress);
    let value = fetch_blob_js(url, cache_name, &callback, true).await.map_err(js_error)?;
    if value.is_null() {
        return Ok(None);
    }
    let blob = value.dyn_into::<web_sys::Blob>().map_err(|_| format!("{url}: not a Blob"))?;
    Ok(Some(blob_bytes(&blob, 0, blob.size() as u64).await?.to_vec()))
}

/// As `fetch_blob`, the whole body read into wasm memory (small files: configs, tokenizers).
pub async fn fetch_cached(url: &str, cache_name: &str, on_progress: impl FnMut(f64, f64, bool) + 'static) -> Result<Vec<u8>, String> {
    let blob = fetch_blob(url, cache_name, on_progress).await?;
    Ok(blob_bytes(&blob, 0, blob.size() as u64).await?.to_vec())
}

/// Bytes `[start, end)` of `blob` as a JS array (still outside wasm memory).
pub async fn blob_bytes(blob: &web_sys::Blob, start: u64, end: u64) -> Result<Uint8Array, String> {
    let value = blob_bytes_js(blob, start as f64, end as f64).await.map_err(js_error)?;
    value.dyn_into::<Uint8Array>().map_err(|_| "a Blob slice is not bytes".to_string())
}

/// How many files and bytes Cache Storage `cache_name` holds.
pub async fn cache_usage(cache_name: &str) -> Result<(u64, u64), String> {
    let pair: js_sys::Array = cache_usage_js(cache_name).await.map_err(js_error)?.unchecked_into();
    Ok((pair.get(0).as_f64().unwrap_or(0.0) as u64, pair.get(1).as_f64().unwrap_or(0.0) as u64))
}

/// Deletes Cache Storage `cache_name` and everything in it.
pub async fn cache_clear(cache_name: &str) -> Result<(), String> {
    cache_clear_js(cache_name).await.map_err(js_error)?;
    Ok(())
}

/// The page's wasm memory, in bytes (it only grows).
pub fn wasm_memory_bytes() -> u64 {
    wasm_bindgen::memory().unchecked_into::<js_sys::WebAssembly::Memory>().buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length()
        as u64
}

/// "google · swiftshader" etc. — wgpu's AdapterInfo is empty on the web, `GPUAdapter.info` is not.
pub async fn adapter_description() -> String {
    adapter_description_js().await.as_string().unwrap_or_default()
}

/// Lets the browser paint before a long computation.
pub async fn yield_to_browser() {
    yield_now_js().await;
}

pub use crate::clock::now_ms;

fn js_error(e: JsValue) -> String {
    e.as_string().or_else(|| e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message()))).unwrap_or_else(|| format!("{e:?}"))
}

/// GETs `url` (relative to the page) and returns the body.
pub async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let window = web_sys::window().ok_or("no window")?;
    let response: web_sys::Response = JsFuture::from(window.fetch_with_str(url)).await.map_err(js_error)?.unchecked_into();
    if !response.ok() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(js_error)?).await.map_err(js_error)?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

pub async fn read_file(file: &web_sys::File) -> Result<Vec<u8>, String> {
    let buffer = JsFuture::from(file.array_buffer()).await.map_err(js_error)?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// The files chosen in the `<input type=file>` that fired `ev`.
pub fn files_of(ev: &web_sys::Event) -> Vec<web_sys::File> {
    let Some(input) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) else {
        return Vec::new();
    };
    let Some(list) = input.files() else { return Vec::new() };
    (0..list.length()).filter_map(|i| list.get(i)).collect()
}

/// The files chosen in the `<input type=file>` that fired `ev`, each with its path from the chosen
/// folder (`webkitRelativePath`) or, chosen alone, its name.
pub fn files_with_paths_of(ev: &web_sys::Event) -> Vec<(web_sys::File, String)> {
    files_of(ev)
        .into_iter()
        .map(|f| {
            let path = relative_path(&f).unwrap_or_else(|| f.name());
            (f, path)
        })
        .collect()
}

/// The path of a file chosen from a folder (`webkitRelativePath`), if any.
pub fn relative_path(file: &web_sys::File) -> Option<String> {
    js_sys::Reflect::get(file, &JsValue::from_str("webkitRelativePath")).ok().and_then(|v| v.as_string()).filter(|s| !s.is_empty())
}

/// The page's `location.hash` ("#lab?preset=…"), or "".
pub fn hash() -> String {
    web_sys::window().and_then(|w| w.location().hash().ok()).unwrap_or_default()
}

/// Replaces the URL's hash without adding a history entry.
pub fn set_hash(hash: &str) {
    if let Some(w) = web_sys::window() {
        if let Ok(history) = w.history() {
            let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(hash));
        }
    }
}

/// Offers `bytes` as a file download named `name`.
pub fn download(name: &str, bytes: &[u8], mime: &str) -> Result<(), String> {
    let array = Uint8Array::from(bytes);
    let parts = js_sys::Array::of1(&array);
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options).map_err(js_error)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(js_error)?;
    let document = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
    let a: web_sys::HtmlAnchorElement = document.create_element("a").map_err(js_error)?.unchecked_into();
    a.set_href(&url);
    a.set_download(name);
    a.click();
    web_sys::Url::revoke_object_url(&url).map_err(js_error)?;
    Ok(())
}
