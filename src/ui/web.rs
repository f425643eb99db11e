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
// The files of a drop: folders are walked (webkitGetAsEntry), plain files taken as they are.
export async function dropped_files(event) {
    const items = Array.from(event.dataTransfer ? event.dataTransfer.items : []);
    const entries = items.map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
    const files = [];
    const walk = async (entry) => {
        if (entry.isFile) {
            files.push(await new Promise((ok, fail) => entry.file(ok, fail)));
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
        else if (items[i].kind === "file") files.push(items[i].getAsFile());
    }
    return files;
}
// GET with a progress callback (loaded, total, from_cache), through Cache Storage: a response is
// cached only once all its bytes have arrived, so a download that dies half-way leaves nothing.
export async function fetch_cached(url, cache_name, on_progress) {
    const cache = (typeof caches !== "undefined") ? await caches.open(cache_name) : null;
    const hit = cache ? await cache.match(url) : undefined;
    if (hit) {
        const buffer = new Uint8Array(await hit.arrayBuffer());
        on_progress(buffer.length, buffer.length, true);
        return buffer;
    }
    let response;
    try { response = await fetch(url); } catch (e) { throw new Error(`${url}: ${e.message || e}`); }
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    const total = Number(response.headers.get("content-length")) || 0;
    const reader = response.body.getReader();
    const chunks = [];
    let loaded = 0;
    for (;;) {
        let part;
        try { part = await reader.read(); } catch (e) { throw new Error(`${url}: the download broke off after ${loaded} bytes (${e.message || e})`); }
        if (part.done) break;
        chunks.push(part.value);
        loaded += part.value.length;
        on_progress(loaded, total, false);
    }
    if (total && loaded !== total) throw new Error(`${url}: the download broke off at ${loaded} of ${total} bytes`);
    const bytes = new Uint8Array(loaded);
    let at = 0;
    for (const c of chunks) { bytes.set(c, at); at += c.length; }
    if (cache) await cache.put(url, new Response(bytes, { headers: { "content-type": "application/octet-stream" } }));
    return bytes;
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
    #[wasm_bindgen(js_name = fetch_cached, catch)]
    async fn fetch_cached_js(url: &str, cache_name: &str, on_progress: &Closure<dyn FnMut(f64, f64, bool)>) -> Result<JsValue, JsValue>;
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

/// The files dropped on the page by `event`, folders walked recursively.
pub async fn dropped_files(event: &web_sys::Event) -> Result<Vec<web_sys::File>, String> {
    let array: js_sys::Array = dropped_files_js(event).await.map_err(js_error)?.unchecked_into();
    Ok(array.iter().filter_map(|f| f.dyn_into::<web_sys::File>().ok()).collect())
}

/// GETs `url` through the page's Cache Storage (`cache_name`), reporting `(loaded, total,
/// from_cache)` as bytes arrive; cached only when complete.
pub async fn fetch_cached(url: &str, cache_name: &str, on_progress: impl FnMut(f64, f64, bool) + 'static) -> Result<Vec<u8>, String> {
    let callback = Closure::<dyn FnMut(f64, f64, bool)>::new(on_progress);
    let value = fetch_cached_js(url, cache_name, &callback).await.map_err(js_error)?;
    Ok(value.dyn_into::<Uint8Array>().map_err(|_| format!("{url}: not bytes"))?.to_vec())
}

/// "google · swiftshader" etc. — wgpu's AdapterInfo is empty on the web, `GPUAdapter.info` is not.
pub async fn adapter_description() -> String {
    adapter_description_js().await.as_string().unwrap_or_default()
}

/// Lets the browser paint before a long computation.
pub async fn yield_to_browser() {
    yield_now_js().await;
}

pub fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or(0.0)
}

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
