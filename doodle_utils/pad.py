"""The doodle pad of notebook 07: draw with the mouse in JupyterLab and the model guesses as
you draw, like the game that made the data.

:class:`DoodlePad` is an anywidget widget (its front end is the small ES module below, shipped
inside the Python package; anywidget's JupyterLab extension comes prebuilt with its wheel, so
nothing is built). The canvas records each stroke as Google's raw format, ``[xs, ys, ts]`` in
canvas pixels and milliseconds since the first point, and sends the strokes to the kernel
when a stroke ends; the kernel prepares them exactly as :mod:`.prediction` prepares any raw
drawing (Google's simplification for a model of simplified drawings, then the run's own
rendering) and sends back the top guesses. Without a front end (papermill, a script) the
same happens when ``strokes`` is set from Python, which is how the notebook runs headless.

Also here: :func:`worst_drawings`, the error-analysis view (fastai's
``ClassificationInterpretation`` on a run's validation drawings).
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets

from .metrics import top_k
from .paths import preds_dir, run_dir, runs_dir
from .prediction import predict_probs
from .training.loaders import Source

_ESM = r"""
function render({ model, el }) {
  const size = model.get("canvas_size");
  const canvas = document.createElement("canvas");
  canvas.width = size; canvas.height = size;
  canvas.className = "doodle-pad-canvas";
  canvas.style.cssText = "border:1px solid #999;border-radius:4px;background:#fff;touch-action:none;cursor:crosshair";
  const ctx = canvas.getContext("2d");
  ctx.lineWidth = 3; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.strokeStyle = "#000";
  const prompt = document.createElement("div"); prompt.className = "doodle-pad-prompt";
  prompt.style.cssText = "font-size:1.2em;margin-bottom:4px";
  const guesses = document.createElement("div"); guesses.className = "doodle-pad-guesses";
  guesses.style.cssText = "min-height:1.5em;margin-top:4px;font-family:sans-serif";
  const clear = document.createElement("button"); clear.textContent = "clear"; clear.className = "doodle-pad-clear";
  const another = document.createElement("button"); another.textContent = "another word";
  let strokes = [], current = null, t0 = null;
  const at = (e) => { const r = canvas.getBoundingClientRect();
    return [Math.round((e.clientX - r.left) * size / r.width), Math.round((e.clientY - r.top) * size / r.height)]; };
  const now = () => Math.round(performance.now() - t0);
  canvas.addEventListener("pointerdown", (e) => {
    const [x, y] = at(e); if (t0 === null) t0 = performance.now();
    current = [[x], [y], [now()]]; ctx.beginPath(); ctx.moveTo(x, y);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!current) return; const [x, y] = at(e);
    current[0].push(x); current[1].push(y); current[2].push(now()); ctx.lineTo(x, y); ctx.stroke();
  });
  const end = () => {
    if (!current) return; strokes.push(current); current = null;
    model.set("strokes", strokes.map((s) => s.map((v) => v.slice()))); model.save_changes();
  };
  canvas.addEventListener("pointerup", end); canvas.addEventListener("pointerleave", end);
  const reset = () => { strokes = []; current = null; t0 = null; ctx.clearRect(0, 0, size, size);
    model.set("strokes", []); model.save_changes(); };
  clear.addEventListener("click", reset);
  another.addEventListener("click", () => { reset(); model.send({ kind: "another word" }); });
  const show = () => {
    prompt.textContent = model.get("prompt") ? `Draw: ${model.get("prompt")}` : "";
    const g = model.get("guesses");
    guesses.textContent = g.length ? "I see " + g.map(([w, p]) => `${w} (${Math.round(100 * p)}%)`).join(", ")
                                   : "Draw something; I guess when a stroke ends.";
  };
  const redraw = () => {  // strokes set from Python (the recorded example): draw them
    const given = model.get("strokes");
    if (JSON.stringify(given) === JSON.stringify(strokes)) return;
    strokes = given.map((s) => s.map((v) => v.slice())); ctx.clearRect(0, 0, size, size);
    for (const [xs, ys] of strokes) {
      ctx.beginPath(); ctx.moveTo(xs[0], ys[0]); xs.forEach((x, i) => ctx.lineTo(x, ys[i])); ctx.stroke();
    }
  };
  model.on("change:strokes", redraw); redraw();
  model.on("change:guesses", show); model.on("change:prompt", show); show();
  const buttons = document.createElement("div"); buttons.append(clear, another);
  el.append(prompt, canvas, buttons, guesses);
}
export default { render };
"""


class DoodlePad(anywidget.AnyWidget):
    """A canvas to draw on; ``guesses`` holds the model's top ``top`` (word, probability)
    pairs for ``strokes`` (Google's raw format), updated whenever the strokes change.

    Args:
        model: what predicts: a Learner from :func:`..training.load_run` (or
            :func:`..prediction.load_model`: an exported pickle or ONNX file).
        top: guesses shown.
        seed: the prompts' random order ("Draw: ..." then "another word").
    """

    _esm = _ESM
    strokes = traitlets.List([]).tag(sync=True)
    guesses = traitlets.List([]).tag(sync=True)
    prompt = traitlets.Unicode("").tag(sync=True)
    canvas_size = traitlets.Int(256).tag(sync=True)

    def __init__(self, model: Any, top: int = 3, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self._model, self._top = model, top
        self._words = list(model.dls.vocab)
        self._rng = random.Random(seed)
        self.prompt = self._rng.choice(self._words)
        self.observe(self._on_strokes, names="strokes")
        self.on_msg(self._on_message)

    def guess(self, strokes: list) -> list[list]:
        """The top (word, probability) pairs for a drawing in Google's form."""
        if not strokes:
            return []
        probs = predict_probs(self._model, [strokes])
        return [[self._words[i], round(float(probs[0, i]), 4)] for i in top_k(probs, self._top)[0]]

    def _on_strokes(self, change: dict) -> None:
        self.guesses = self.guess(change["new"])

    def _on_message(self, _widget, content: dict, _buffers) -> None:
        if content.get("kind") == "another word":
            self.prompt = self._rng.choice([w for w in self._words if w != self.prompt] or self._words)


def validation_drawings(run: str | Path):
    """A run's validation drawings as its predictions name them: (source, labels, words) — the
    store's rows of the split notebook 04 scores, read from ``preds/manifest.json``."""
    manifest = json.loads((preds_dir(run) / "manifest.json").read_text())
    source = Source(manifest["valid_store"], np.asarray(manifest["valid_idx"]), np.asarray(manifest["valid_labels"]))
    return source, source.labels, manifest["words"]


def worst_drawings(learn, run: str | Path, k: int = 9):
    """The ``k`` validation drawings the model gets most wrong, drawn as the model sees them
    and titled predicted / true / loss / probability (fastai's ``plot_top_losses``); returns
    the interpretation (``most_confused()``, ``top_losses()``) and the figure."""
    import matplotlib.pyplot as plt
    from fastai.interpret import ClassificationInterpretation

    source, _, _ = validation_drawings(run)
    interp = ClassificationInterpretation.from_learner(learn, dl=learn.dls.test_dl(source))
    interp.plot_top_losses(k, figsize=(2.2 * min(k, 3), 2.4 * -(-k // 3)))
    fig = plt.gcf()
    plt.close(fig)  # returned, not also shown by the notebook's inline backend
    return interp, fig


def example_strokes(run: str | Path, i: int = 0) -> tuple[list, str]:
    """Validation drawing ``i`` of a run in Google's form, with its word: the drawing the pad is
    given when nobody draws (a headless run)."""
    source, labels, words = validation_drawings(run)
    d, _, _ = source.take(np.array([i]))
    return json.loads(d.to_json()[0]), words[int(labels[i])]


def find_run(out_dir: str | Path, run_label: str = "", train_dirs: list | tuple = ()) -> Path:
    """The run notebook 07 plays with: ``<out_dir>/train/<run_label>``, or without a label the
    newest run with predictions under ``<out_dir>/train`` and the ``train_dirs`` (attached
    training kernels on Kaggle). FileNotFoundError says what to run first."""
    if run_label:
        run = run_dir(out_dir, run_label)
        if not (preds_dir(run) / "manifest.json").exists():
            raise FileNotFoundError(f"{run}: no finished run of that label (notebook 03 or 06 makes one)")
        return run
    folders = [runs_dir(out_dir), *(runs_dir(d) for d in train_dirs)]
    runs = [m.parent.parent for f in folders if f.is_dir() for m in f.glob("*/preds/manifest.json")]
    if not runs:
        raise FileNotFoundError(f"no finished training run under {', '.join(map(str, folders))}: "
                                f"run notebook 03 (or 06) first")
    return max(runs, key=lambda r: (preds_dir(r) / "manifest.json").stat().st_mtime)
