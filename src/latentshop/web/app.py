"""The studio page: Gradio widgets wired to :class:`latentshop.web.studio.Studio`.

Nothing here touches a model: every handler turns widget values into one call of the studio and
its result (or its error message) back into widget updates. Each browser tab is a session, keyed by
Gradio's per-tab session hash; closing the tab deletes the session's folder.

Concurrency: slider renders run in their own queue group (several at once, one synthesis pass
each), photo loading in another, and "refine" in a third limited to ``refine_concurrency`` runs, so
a long optimisation never holds up anybody's sliders.
"""

from __future__ import annotations

import inspect
import os
import threading
from typing import Any

from latentshop.errors import LatentshopError
from latentshop.web.studio import GROUP_TITLES, GROUPS, Studio

__all__ = ["build_app", "launch"]

CSS = """
.ls-img img { width: 100% !important; height: 100% !important; object-fit: contain; image-rendering: auto; }
#status { min-height: 2.2em; }
.ls-bar { display: flex; align-items: center; gap: 0.6em; }
.ls-bar progress { flex: 1; height: 0.9em; accent-color: #f97316; }
#status p { margin: 0.2em 0; }
footer { display: none !important; }
"""

HELP = """Upload a face photo (or pick an example, or press **Random face**). The studio aligns it, finds its
code with the model's encoder in a few milliseconds, and every slider below re-renders the picture from
that code. **Refine** runs a short optimisation for a closer likeness (it shows its progress and can be
stopped). Strengths are in standard deviations of the model's latent along the direction."""


def _gradio() -> Any:
    try:
        import gradio as gr
    except ImportError:
        from latentshop.errors import ConfigError

        raise ConfigError("the studio needs Gradio, a dependency of latentshop: pip install 'gradio>=6,<7'") from None
    return gr


def build_app(studio: Studio, *, refine_concurrency: int = 1) -> Any:
    """The Gradio Blocks of the studio (not launched). Set ``GRADIO_TEMP_DIR`` to ``studio.root``
    before calling it (``launch`` does): uploads then land where the studio accepts them, and the
    pictures it writes in session folders are served from there."""
    gr = _gradio()
    counts = studio.slot_counts()
    first = studio.model(studio.model_names[0])

    def fail(e: Exception) -> str:
        return f"⚠️ **{e}**"

    def show(s: Any, img: Any, slot: str) -> Any:
        # served from the session's own folder (the server's cache is the studio's root)
        path = studio.view_file(s, img, slot)
        return None if path is None else str(path)

    def values_of(entry: Any, sliders: list[float]) -> dict[str, float]:
        out, k = {}, 0
        for g in GROUPS:
            for i in range(counts[g]):
                spec = entry.slider(g, i)
                if spec is not None and sliders[k] is not None:
                    out[spec.name] = float(sliders[k])
                k += 1
        return out

    with gr.Blocks(title="latentshop studio", delete_cache=(600, 3600)) as demo:
        gr.Markdown("# latentshop studio")
        gr.Markdown(HELP)
        status = gr.Markdown("Load a photo to begin.", elem_id="status")
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                model = gr.Dropdown(studio.model_names, value=studio.model_names[0], label="Model", elem_id="model")
                upload = gr.File(label="Upload a photo", file_types=["image"], type="filepath", elem_id="upload")
                align = gr.Checkbox(value=first.faces, label="Align face (detect, crop and rotate as FFHQ)", elem_id="align")
                with gr.Row():
                    example = gr.Dropdown(list(studio.examples), value=next(iter(studio.examples), None),
                                          label="Example photo", visible=bool(studio.examples), elem_id="example")
                    use_example = gr.Button("Use example", visible=bool(studio.examples), elem_id="use-example")
                with gr.Row():
                    random_btn = gr.Button("Random face", elem_id="random")
                    seed = gr.Number(value=0, label="Seed", precision=0, minimum=0, elem_id="seed")
                    seed_btn = gr.Button("Face of this seed", elem_id="seed-btn")
                with gr.Row():
                    steps = gr.Slider(10, 500, value=100, step=10, label="Refine steps", elem_id="steps")
                with gr.Row():
                    refine_btn = gr.Button("Refine", variant="primary", elem_id="refine")
                    cancel_btn = gr.Button("Stop", variant="stop", elem_id="cancel")
                refine_bar = gr.HTML("", elem_id="refine-progress")
            with gr.Column(scale=2):
                with gr.Row():
                    photo_img = gr.Image(label="Photo (aligned)", interactive=False, format="png", height=256,
                                         elem_id="photo", elem_classes="ls-img", buttons=[])
                    before_img = gr.Image(label="Before", interactive=False, format="png", height=256,
                                          elem_id="before", elem_classes="ls-img", buttons=[])
                    after_img = gr.Image(label="After", interactive=False, format="png", height=256,
                                         elem_id="after", elem_classes="ls-img", buttons=[])
                reset_btn = gr.Button("Reset sliders", size="sm", elem_id="reset")
                sliders: list[Any] = []
                panels: dict[str, Any] = {}
                for g in GROUPS:
                    with gr.Accordion(GROUP_TITLES[g], open=g == "attributes", visible=bool(first.sliders[g])) as acc:
                        panels[g] = acc
                        if g == "stylespace":
                            gr.Markdown("The channels of the S space that most change each attribute (StyleSpace), "
                                        "in standard deviations of the channel.")
                        with gr.Row():
                            for i in range(counts[g]):
                                spec = first.slider(g, i)
                                limit = spec.limit if spec else 5.0
                                sliders.append(gr.Slider(-limit, limit, value=0.0, step=0.1, label=spec.label if spec else "",
                                                         visible=spec is not None, min_width=200, elem_id=f"s-{g}-{i}"))

        with gr.Accordion("Style mixing and truncation", open=False):
            with gr.Row():
                truncation = gr.Slider(0.0, 1.5, value=1.0, step=0.05, label="Truncation ψ (1: none; lower: nearer the average face)",
                                       elem_id="truncation")
                mix_layers = gr.Radio(["none", "coarse", "middle", "fine"], value="none",
                                      label="Take these layers from the second picture", elem_id="mix-layers")
            with gr.Row():
                mix_seed = gr.Number(value=1, label="Second picture: seed", precision=0, minimum=0, elem_id="mix-seed")
                mix_seed_btn = gr.Button("Use seed", elem_id="mix-seed-btn")
                mix_upload = gr.File(label="…or a second photo", file_types=["image"], type="filepath", elem_id="mix-upload")
                mix_img = gr.Image(label="Second picture", interactive=False, format="png", height=160,
                                   elem_id="mix-img", elem_classes="ls-img", buttons=[])
        with gr.Accordion("Download", open=True):
            with gr.Row():
                sweep = gr.Dropdown(first.edit_names(), value=(first.edit_names() or [None])[0],
                                    label="Sweep GIF of", elem_id="sweep")
                export_btn = gr.Button("Prepare downloads", elem_id="export")
            with gr.Row():
                dl_png = gr.DownloadButton("Edited image (PNG)", visible=False, elem_id="dl-png")
                dl_latent = gr.DownloadButton("Latent (.npz)", visible=False, elem_id="dl-latent")
                dl_gif = gr.DownloadButton("Sweep (GIF)", visible=False, elem_id="dl-gif")

        controls = [*sliders, truncation, mix_layers]

        def session(request: Any) -> Any:
            return studio.session(request.session_hash)

        def render(*args: Any) -> Any:
            *vals, trunc, layers, request = args
            s = session(request)
            try:
                entry = studio.model(s.model)
                if s.latent is None:
                    return gr.update(), gr.update()
                img = studio.render(s, values_of(entry, list(vals)), truncation=trunc, mix_layers=layers)
                return show(s, img, "after"), gr.update()
            except LatentshopError as e:
                return gr.update(), fail(e)

        def pictures(s: Any, *args: Any, note: str) -> tuple:
            after = render(*args)[0]
            photo = s.target
            return show(s, photo, "photo"), show(s, studio.before(s), "before"), after, note, *[gr.update(visible=False)] * 3

        def load(args: tuple, **where: Any) -> tuple:
            s = session(args[-1])
            try:
                studio.load_photo(s, **where)
            except LatentshopError as e:
                return gr.update(), gr.update(), gr.update(), fail(e), *[gr.update()] * 3
            return pictures(s, *args, note=f"Loaded {s.source}. Move a slider, or press Refine for a closer likeness.")

        def on_upload(path: str | None, do_align: bool, *args: Any) -> tuple:
            return load(args, upload=path, align=do_align) if path else (gr.update(),) * 7

        def on_example(name: str | None, do_align: bool, *args: Any) -> tuple:
            return load(args, example=name, align=do_align)

        def on_seed(seed_value: float | None, *args: Any) -> tuple:
            s = session(args[-1])
            try:
                studio.random_face(s, seed=None if seed_value is None else int(seed_value))
            except LatentshopError as e:
                return gr.update(), gr.update(), gr.update(), fail(e), *[gr.update()] * 3, gr.update()
            return *pictures(s, *args, note=f"A sample of the model: {s.source}."), s.latent.meta.get("seed")

        def on_random(*args: Any) -> tuple:
            return on_seed(None, *args)

        def on_refine_start(request: Any) -> None:
            session(request).cancel.clear()

        def on_refine(n_steps: float, *args: Any, progress: Any = gr.Progress()) -> Any:
            # the optimisation runs in its own thread; this generator shows its code so far twice a second
            s = session(args[-1])
            box: dict[str, Any] = {"k": 0, "t": int(n_steps), "lat": None, "done": None, "error": None}

            def work() -> None:
                try:
                    box["done"] = studio.refine(s, steps=int(n_steps), callback=lambda k, t: box.update(k=k, t=t),
                                                preview=lambda lat: box.update(lat=lat))
                except LatentshopError as e:
                    box["error"] = e

            def bar() -> str:
                k, t = int(box["k"]), max(1, int(box["t"]))
                return (f'<div class="ls-bar"><progress max="{t}" value="{k}"></progress> '
                        f'<span>refining: step {k} of {t}</span></div>')

            worker = threading.Thread(target=work, name="studio-refine", daemon=True)
            worker.start()
            shown = None
            while worker.is_alive():
                worker.join(0.4)
                progress((box["k"], box["t"]), desc="refining")
                if box["lat"] is not None and box["lat"] is not shown:
                    shown = box["lat"]
                    yield (show(s, studio.before(s, shown), "before"), gr.update(),
                           f"Refining… step {box['k']} of {box['t']} (Stop keeps the code so far)", bar())
            if box["error"] is not None:
                yield gr.update(), gr.update(), fail(box["error"]), ""
                return
            note = f"Refined: {s.source}." if box["done"] else f"Stopped early: {s.source}."
            yield show(s, studio.before(s), "before"), render(*args)[0], note, ""

        def on_cancel(request: Any) -> str:
            studio.cancel(session(request))
            return "Stopping the refinement…"

        def on_model(name: str, request: Any) -> tuple:
            s = session(request)
            try:
                entry = studio.set_model(s, name)
            except LatentshopError as e:
                return (fail(e),) + (gr.update(),) * (len(sliders) + len(panels) + 7)
            ups = []
            for g in GROUPS:
                for i in range(counts[g]):
                    spec = entry.slider(g, i)
                    ups.append(gr.update(visible=False, value=0.0) if spec is None else
                               gr.update(visible=True, value=0.0, label=spec.label, minimum=-spec.limit, maximum=spec.limit))
            acc = [gr.update(visible=bool(entry.sliders[g])) for g in GROUPS]
            names = entry.edit_names()
            return (f"Model {name}: {len(names)} edits. Load a photo or press Random face.", *ups, *acc,
                    None, None, None, None, gr.update(value=entry.faces),
                    gr.update(choices=names, value=(names or [None])[0]), "none")

        def on_mix(seed_value: float | None, path: str | None, do_align: bool, *args: Any) -> tuple:
            s = session(args[-1])
            try:
                if path:
                    img = studio.set_mix_source(s, upload=path, align=do_align)
                else:
                    img = studio.set_mix_source(s, seed=None if seed_value is None else int(seed_value))
            except LatentshopError as e:
                return gr.update(), gr.update(), fail(e)
            note = f"Second picture: {s.mix_name}. Pick the layers to take from it." if s.mix is not None else "No second picture."
            return show(s, img, "mix"), render(*args)[0], note

        def on_export(sweep_name: str | None, *args: Any) -> tuple:
            *vals, trunc, layers, request = args
            s = session(request)
            try:
                files = studio.export(s, values_of(studio.model(s.model), vals), truncation=trunc, mix_layers=layers,
                                      sweep=sweep_name)
            except LatentshopError as e:
                return fail(e), *[gr.update(visible=False)] * 3
            return ("Downloads ready.", gr.update(value=str(files["png"]), visible=True),
                    gr.update(value=str(files["latent"]), visible=True),
                    gr.update(value=str(files["gif"]), visible=True) if "gif" in files else gr.update(visible=False))

        def on_reset(*args: Any) -> tuple:
            return (*[0.0] * len(sliders), 1.0, "none")

        def on_unload(request: Any) -> None:
            studio.end_session(request.session_hash)

        # gr.Request is injected where a parameter is annotated with it
        def with_request(fn: Any, n_inputs: int, *, progress: bool = False) -> Any:
            # Gradio injects gr.Request (and gr.Progress) only into named positional parameters, so the
            # wrapper gets a signature of n_inputs values followed by them.
            def call(args: tuple) -> Any:
                return fn(*args[:-1], progress=args[-1]) if progress else fn(*args)

            if inspect.isgeneratorfunction(fn):  # Gradio streams only what a generator function yields
                def wrapper(*args: Any) -> Any:
                    yield from call(args)
            else:
                def wrapper(*args: Any) -> Any:
                    return call(args)
            params = [inspect.Parameter(f"v{i}", inspect.Parameter.POSITIONAL_ONLY) for i in range(n_inputs)]
            params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request))
            if progress:
                params.append(inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress()))
            wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
            wrapper.__annotations__ = {"request": gr.Request}
            wrapper.__name__ = fn.__name__
            return wrapper

        pics = [photo_img, before_img, after_img, status, dl_png, dl_latent, dl_gif]
        render_kw = dict(concurrency_id="render", concurrency_limit=4, show_progress="hidden", trigger_mode="always_last")
        for c in sliders + [truncation]:
            c.release(with_request(render, len(controls)), inputs=controls, outputs=[after_img, status], **render_kw)
        mix_layers.change(with_request(render, len(controls)), inputs=controls, outputs=[after_img, status], **render_kw)
        photo_kw = dict(concurrency_id="photo", concurrency_limit=2)
        upload.upload(with_request(on_upload, len(controls) + 2), inputs=[upload, align, *controls], outputs=pics, **photo_kw).then(
            lambda: None, outputs=[upload], queue=False)  # empty the drop zone for the next photo
        use_example.click(with_request(on_example, len(controls) + 2), inputs=[example, align, *controls], outputs=pics, **photo_kw)
        random_btn.click(with_request(on_random, len(controls)), inputs=controls, outputs=[*pics, seed], **photo_kw)
        seed_btn.click(with_request(on_seed, len(controls) + 1), inputs=[seed, *controls], outputs=[*pics, seed], **photo_kw)
        mix_seed_btn.click(with_request(on_mix, len(controls) + 3), inputs=[mix_seed, gr.State(None), align, *controls],
                           outputs=[mix_img, after_img, status], **photo_kw)
        mix_upload.upload(with_request(on_mix, len(controls) + 3), inputs=[mix_seed, mix_upload, align, *controls],
                          outputs=[mix_img, after_img, status], **photo_kw).then(lambda: None, outputs=[mix_upload], queue=False)
        refine_btn.click(with_request(on_refine_start, 0), concurrency_limit=None, queue=False).then(
            with_request(on_refine, len(controls) + 1, progress=True), inputs=[steps, *controls],
            outputs=[before_img, after_img, status, refine_bar], show_progress="minimal",
            concurrency_id="refine", concurrency_limit=max(1, int(refine_concurrency)))
        cancel_btn.click(with_request(on_cancel, 0), outputs=[status], concurrency_limit=None, queue=False)
        model.change(with_request(on_model, 1), inputs=[model],
                     outputs=[status, *sliders, *panels.values(), photo_img, before_img, after_img, mix_img, align, sweep, mix_layers],
                     **photo_kw)
        export_btn.click(with_request(on_export, len(controls) + 1), inputs=[sweep, *controls], outputs=[status, dl_png, dl_latent, dl_gif],
                         concurrency_id="export", concurrency_limit=2)
        reset_btn.click(on_reset, outputs=[*sliders, truncation, mix_layers], queue=False).then(
            with_request(render, len(controls)), inputs=controls, outputs=[after_img, status], **render_kw)
        demo.unload(with_request(on_unload, 0))
    return demo


def launch(studio: Studio, *, host: str = "127.0.0.1", port: int = 7860, refine_concurrency: int = 1,
           block: bool = True, quiet: bool = False) -> Any:
    """Start the studio's web server (``block=False``: return the running Blocks at once)."""
    os.environ["GRADIO_TEMP_DIR"] = str(studio.root)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    gr = _gradio()
    demo = build_app(studio, refine_concurrency=refine_concurrency)
    demo.queue(default_concurrency_limit=2, max_size=64)
    css = CSS
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=quiet, share=False,
                max_file_size=studio.max_upload_bytes, css=css, theme=gr.themes.Default(), show_error=False,
                inbrowser=False, footer_links=[], run_history=False, enable_monitoring=False, mcp_server=False)
    return demo
