//! The page: a leptos (CSR) app over the same engine the CLI uses, in three tabs — explore an SAE
//! (`explore`), the teaching lab (`lab`), a language model with its SAEs (`lm`, with training in
//! `lm_train`). The app chooses the backend once (WebGPU when the browser has it, else the CPU
//! reference, labelled as such) and gives it to the tabs through leptos context.

mod bundled;
mod explore;
mod lab;
mod lm;
mod lm_train;
mod plots;
mod web;

use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::backend::Backend;
use crate::gpu::Gpu;

pub fn mount() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}

/// Where the page computes, shared by every tab through leptos context. Chosen once, at start;
/// until `ready`, the CPU reference.
#[derive(Clone, Copy)]
pub(crate) struct PageBackend {
    backend: StoredValue<Backend, LocalStorage>,
    /// Whether the WebGPU check has finished (either way).
    pub(crate) ready: Signal<bool>,
}

impl PageBackend {
    pub(crate) fn backend(&self) -> Backend {
        self.backend.get_value()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tab {
    Explore,
    Lab,
    LanguageModel,
}

#[component]
fn App() -> impl IntoView {
    let backend = StoredValue::new_local(Backend::Cpu);
    // None while the check runs; then whether WebGPU is there.
    let webgpu = RwSignal::new(None::<bool>);
    let adapter = RwSignal::new(String::new());
    let page = PageBackend { backend, ready: Signal::derive(move || webgpu.get().is_some()) };
    provide_context(page);
    spawn_local(async move {
        let adapter_info = web::adapter_description().await;
        match Gpu::new().await {
            Ok(mut gpu) => {
                gpu.adapter_name = if adapter_info.is_empty() { "WebGPU".into() } else { format!("WebGPU: {adapter_info}") };
                adapter.set(gpu.adapter_name.clone());
                backend.set_value(Backend::Gpu(Rc::new(gpu)));
                webgpu.set(Some(true));
            }
            Err(e) => {
                adapter.set(format!(
                    "WebGPU is not available in this browser ({e}). Running the CPU reference instead — slower, same results."
                ));
                webgpu.set(Some(false));
            }
        }
    });

    let hash = web::hash();
    let tab = RwSignal::new(if hash.starts_with("#lab") {
        Tab::Lab
    } else if hash.starts_with("#lm") {
        Tab::LanguageModel
    } else {
        Tab::Explore
    });
    let visible = move |t: Tab| Signal::derive(move || tab.get() == t);
    view! {
        <header>
            <h1>"saelab"</h1>
            <p class="tagline">"Sparse autoencoders on your own GPU"</p>
            <nav>
                <a id="tab-explore" href="#" class=move || if tab.get() == Tab::Explore { "tab active" } else { "tab" }
                    on:click=move |_| tab.set(Tab::Explore)>"Explore an SAE"</a>
                <a id="tab-lab" href="#lab" class=move || if tab.get() == Tab::Lab { "tab active" } else { "tab" }
                    on:click=move |_| tab.set(Tab::Lab)>"Teaching lab"</a>
                <a id="tab-lm" href="#lm" class=move || if tab.get() == Tab::LanguageModel { "tab active" } else { "tab" }
                    on:click=move |_| tab.set(Tab::LanguageModel)>"Language model"</a>
            </nav>
            <p id="adapter" class=move || if webgpu.get() == Some(false) { "adapter cpu" } else { "adapter" }>
                {move || adapter.get()}
            </p>
        </header>
        <div class="lab-wrap" style:display=move || if tab.get() == Tab::Lab { "block" } else { "none" }><lab::Lab /></div>
        <div class="lm-wrap" style:display=move || if tab.get() == Tab::LanguageModel { "block" } else { "none" }>
            <lm::LanguageModel visible=visible(Tab::LanguageModel) /></div>
        <explore::ExploreTab visible=visible(Tab::Explore) />
    }
}
