"""Use a trained model: load it, read drawings from a file or Python, and get each drawing's
top-k words with their probabilities (``doodle predict``; notebook use: :func:`load_model`,
then :func:`predict`).

A model is a training run folder (``<out_dir>/train/<run_label>``: its configuration,
vocabularies and a snapshot's weights, :func:`..training.load_run`) or a file written by
``learn.export()`` / ``doodle export`` (fastai's pickled ``Learner``: load only files you
trust). Either way the drawings are prepared as the model's validation drawings were: raw
ones simplified by Google's pipeline when the model was trained on simplified drawings, then
rendered (or turned into point features) with the run's own settings, which travel with the
model.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ._files import atomic_path
from .data import Drawings, SkipReport, has_times, read_file
from .data.bitmap import IMAGE_FILES, drawing_from_image
from .metrics import top_k
from .render import RenderSpec
from .render.variants import palette_table
from .training import load_run, predict_views
from .training.loaders import BatchSpec, DoodleDataLoaders, DoodleDL, DrawingsSource

DRAWING_FILES = (".ndjson", ".jsonl", ".csv", ".json")


def load_model(path: str | Path, snapshot: str | None = None, device: str | None = None):
    """A fastai ``Learner`` that predicts: a run folder (``snapshot``: which ``snap_NN``,
    default the last) or an exported file. FileNotFoundError / ValueError name what is wrong."""
    path = Path(path)
    if path.is_dir():
        return load_run(path, snapshot, device)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model (a run folder <out_dir>/train/<run_label>, "
                                f"or a file written by `doodle export`)")
    if snapshot:
        raise ValueError(f"{path}: --snapshot picks a snapshot of a run folder; an exported model has one")
    if path.suffix == ".onnx":
        return OnnxModel(path)
    import pickle
    import warnings

    from fastai.learner import load_learner

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fastai's warning that pickles run code: the docstring says so
        try:
            learn = load_learner(path, cpu=device in (None, "cpu"))
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, RuntimeError) as e:
            raise ValueError(f"{path}: not a model written by `doodle export` / learn.export() ({e})") from None
    if not hasattr(learn.dls, "test_dl") or not hasattr(learn.dls.valid, "source"):
        raise ValueError(f"{path}: a fastai Learner, but not one of this suite's doodle models")
    return learn


def read_drawings(path: str | Path, lenient: bool = False, report: SkipReport | None = None) -> tuple[list[str], Any]:
    """(ids, drawings) from a file: Google's ndjson (raw or simplified), a Kaggle CSV (train or
    test, simplified or raw), a ``.json`` holding one drawing's stroke lists, a list of them,
    or a list of ndjson rows, or an image of a doodle (PNG, JPEG, ...: traced into strokes by
    :mod:`.data.bitmap`, which says what that can and cannot recover); or a folder of images.
    Ids are the rows' ``key_id``, else their positions; an image's is its file name.
    ``lenient`` skips malformed rows of an ndjson or CSV file, counted in ``report``."""
    path = Path(path)
    images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_FILES) if path.is_dir() else \
        [path] if path.suffix.lower() in IMAGE_FILES else []
    if path.is_dir() and not images:
        raise ValueError(f"{path}: a folder without images ({', '.join(IMAGE_FILES)})")
    if images:
        return [p.name for p in images], Drawings.concat([drawing_from_image(p) for p in images])
    if path.suffix not in DRAWING_FILES:
        raise ValueError(f"{path}: unknown drawing file (expected one of {', '.join(DRAWING_FILES + IMAGE_FILES)})")
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not JSON ({e})") from None
        if isinstance(data, dict) or (isinstance(data, list) and data and _is_strokes(data)):
            data = [data]  # one drawing
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a drawing (a list of strokes) or a list of drawings")
        ids = [str(d.get("key_id", i)) if isinstance(d, dict) else str(i) for i, d in enumerate(data)]
        return ids, data
    kw = dict(lenient=lenient, check_word_matches_file=False, report=report)
    if path.suffix == ".csv":
        kw["raw"] = bool(has_times(path))
    meta, drawings, _ = read_file(path, **kw)
    return meta["key_id"].astype(str).tolist(), (meta, drawings)


def _is_strokes(data: list) -> bool:
    """Whether ``data`` is one drawing ([[xs, ys], ...]) rather than a list of drawings."""
    first = data[0]
    return isinstance(first, list) and len(first) in (2, 3) and all(
        isinstance(v, (int, float)) for v in (first[0] if first and isinstance(first[0], list) else [None]))


def predict_probs(learn, drawings: Any, tta: Sequence[str] = ()) -> np.ndarray:
    """Class probabilities (N, C) of ``drawings`` (anything ``learn.dls.test_dl`` takes),
    averaged over the plain view and the test-time views ``tta`` (e.g. ``["flip"]``)."""
    dl = learn.dls.test_dl(drawings)
    if len(dl.source) == 0:
        return np.zeros((0, learn.dls.c), np.float32)
    return predict_views(learn, dl, tta).numpy()


def top_words(probs: np.ndarray, words: list[str], ids: list[str], top: int = 3) -> pd.DataFrame:
    """One row per drawing: ``key_id``, then ``word_1, prob_1, ... word_k, prob_k`` best first."""
    if not 1 <= top <= len(words):
        raise ValueError(f"top must be between 1 and the model's {len(words)} classes, got {top}")
    order = top_k(probs, top)
    table = {"key_id": ids}
    for k in range(top):
        table[f"word_{k + 1}"] = [words[c] for c in order[:, k]]
        table[f"prob_{k + 1}"] = np.take_along_axis(probs, order[:, k:k + 1], axis=1)[:, 0].round(4)
    return pd.DataFrame(table)


def predict(learn, drawings: Any, ids: list[str] | None = None, top: int = 3, tta: Sequence[str] = ()) -> pd.DataFrame:
    """Each drawing's ``top`` words and probabilities (:func:`top_words`), with ``tta``'s views."""
    probs = predict_probs(learn, drawings, tta)
    ids = ids if ids is not None else [str(i) for i in range(len(probs))]
    return top_words(probs, list(learn.dls.vocab), ids, top)


def write_table(table: pd.DataFrame, out: str | Path) -> Path:
    """Write ``table`` as CSV atomically."""
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    return Path(out)


def export(run: str | Path, out: str | Path, snapshot: str | None = None) -> Path:
    """Write a run's snapshot as one file, atomically: ``.onnx`` (:func:`export_onnx`), else
    what fastai's ``load_learner`` reads (``learn.export``: the model, its settings and
    vocabularies, no data)."""
    if Path(out).suffix == ".onnx":
        return export_onnx(run, out, snapshot)
    learn = load_run(run, snapshot)
    out = Path(out)
    with atomic_path(out) as tmp:
        learn.path = tmp.parent
        learn.export(tmp.name)
    return out


# --------------------------------------------------------------------------- ONNX

ONNX_METADATA = "doodle"  # the ONNX model's metadata key holding its preprocessing (JSON)


class _ImageProbabilities(torch.nn.Module):
    """An image model whose exported graph ends in softmax probabilities (float32)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, country: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(image, country).float(), dim=1)


class _PointProbabilities(_ImageProbabilities):
    """The point model, likewise."""

    def forward(self, features: torch.Tensor, mask: torch.Tensor, country: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(features, mask, country).float(), dim=1)


def preprocessing(learn) -> dict:
    """What a client must do to drawings before the exported model: the classes and countries,
    the store kind they must be brought to, and the loader's input settings (renderer, size,
    line width, ...; the palette's colours; or the point budget), with the graph's input
    names. :mod:`.reference_preprocessing` does it in plain numpy."""
    import dataclasses

    valid = learn.dls.valid
    spec = valid.batches
    names = ["features", "mask", "country"] if spec.input == "points" else ["image", "country"]
    meta = {"format": 1, "inputs": names, "output": "probabilities", "words": list(valid.source.words),
            "countries": list(valid.source.countries), "kind": valid.source.kind, "input": spec.input,
            "times_needed": valid.times_needed, "variant": spec.variant, "render": dataclasses.asdict(spec.render),
            "points": spec.points, "resample": spec.resample}
    if spec.input == "image" and spec.variant == "palette":  # its colours, for a client without matplotlib
        meta["palette"] = palette_table(spec.render.cmap).tolist()
    return meta


def export_onnx(run: str | Path, out: str | Path, snapshot: str | None = None, opset: int = 18) -> Path:
    """Export a run's snapshot to ONNX (probabilities out, any batch size), its preprocessing
    (:func:`preprocessing`) in the model's metadata under ``doodle``; atomically."""
    import onnx
    from fastai.torch_core import get_model

    learn = load_run(run, snapshot)
    meta = preprocessing(learn)
    example = [[[0, 60, 120, 200], [10, 80, 20, 90], [0, 40, 80, 120]], [[30, 30], [0, 200], [200, 260]]]
    b = learn.dls.test_dl([example, example]).one_batch()
    inputs = tuple(t.cpu() for t in b[:len(meta["inputs"])])
    wrap = _PointProbabilities if meta["input"] == "points" else _ImageProbabilities
    model = wrap(get_model(learn.model).float().eval())
    batch = torch.export.Dim("batch", min=1)
    with atomic_path(out) as tmp, torch.no_grad():
        program = torch.onnx.export(model, inputs, input_names=meta["inputs"], output_names=[meta["output"]],
                                    dynamic_shapes=tuple({0: batch} for _ in inputs), opset_version=opset,
                                    dynamo=True, verbose=False)
        program.save(str(tmp))
        proto = onnx.load(str(tmp))
        fixed = [i.name for i in proto.graph.input if i.type.tensor_type.shape.dim[0].dim_value]
        if fixed:  # the exporter can fall back to a graph traced at the example's batch size
            raise RuntimeError(f"ONNX export of {run} fixed the batch size of inputs {fixed}")
        onnx.helper.set_model_props(proto, {ONNX_METADATA: json.dumps(meta)})
        onnx.save(proto, str(tmp))
    return Path(out)


class OnnxModel:
    """An exported ONNX model run by ONNX Runtime, with the suite's own preprocessing taken
    from its metadata: the same ``dls.test_dl`` / ``dls.vocab`` / ``get_preds`` a Learner
    offers here, so :func:`predict` and ``doodle predict`` use either."""

    def __init__(self, path: str | Path):
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:  # ONNX Runtime's own exception types (InvalidProtobuf, Fail, ...)
            raise ValueError(f"{path}: not an ONNX model ONNX Runtime can load ({str(e).splitlines()[0]})") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA)
        if raw is None:
            raise ValueError(f"{path}: an ONNX model without the suite's preprocessing "
                             f"(export it with `doodle export`)")
        self.meta = json.loads(raw)
        m = self.meta
        spec = BatchSpec(input=m["input"], variant=m["variant"], render=RenderSpec(**m["render"]),
                         points=m["points"], resample=m["resample"]).for_eval()
        empty = DrawingsSource(Drawings.concat([]), self.meta["words"], self.meta["countries"], self.meta["kind"])
        self.dls = DoodleDataLoaders(*[DoodleDL(empty, spec, bs=64) for _ in range(2)])

    def get_preds(self, dl, reorder: bool = False):
        """(probabilities, None) of every drawing of ``dl``, in order."""
        names = self.meta["inputs"]
        out = []
        for b in dl:
            feed = {n: t.numpy() for n, t in zip(names, b[:len(names)])}
            out.append(self.session.run([self.meta["output"]], feed)[0])
        probs = np.concatenate(out) if out else np.zeros((0, len(self.meta["words"])), np.float32)
        return torch.from_numpy(probs), None
