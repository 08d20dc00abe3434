"""The one training configuration: every training parameter with its default (:class:`TrainConfig`),
and how a notebook's ``parameters`` become one (:func:`config_from_params`, :func:`run_config`).

Notebooks 03 and 06 declare the same defaults in their ``parameters`` cells (a test holds them
equal); ``doodle train`` takes these names and lists them (:func:`parameters_help`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..devices import PRECISIONS, world_size
from ..models import RESAMPLING, STEMS, check_arch
from ..paths import run_dir, store_path
from ..render import RENDERERS
from .loaders import TTA_VIEWS, UNRECOGNIZED, Augment

SCHEDULES = ("one_cycle", "sgdr", "plateau", "grow_batch")
MODELS = ("image", "points")
OPTIMIZERS = ("adam", "adamw", "sgd")
# torch.compile modes (``compile``): "off", or torch.compile's own mode names; the last two capture
# the step in CUDA graphs on a GPU (a fixed batch shape; inductor skips the capture on a CPU)
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


DEFAULT_AUGMENT = {"flip": 0.5, "rotate": 8.0, "scale": 0.1, "shift": 0.05, "stroke_dropout": 0.05}


@dataclass
class TrainConfig:
    """Everything a training run depends on: the one definition of every training parameter
    and its default. The defaults train a sensible model of the demo's synthetic competition
    on a 2-core CPU in about a minute (notebook 03 opened in JupyterLab and run as it is);
    GPU-scale values (64 px, batches of 512, millions of drawings per epoch) come from
    ``params/gpu.yaml`` and ``params/kaggle.yaml``. Notebooks 03 and 06 declare the same defaults in their ``parameters``
    cells (a test holds them equal), ``doodle train`` takes these names, and the profiles'
    values are checked against these types (:meth:`check`). An empty string, 0 or ``{}``
    means "none" where the comment says so (papermill parameters have no ``None``)."""

    store_dir: str
    out_dir: str
    test_store_dir: str | None = None
    model: str = "image"  # "image": DoodleNet on rendered drawings; "points": models.points.PointCNN
    arch: str = "resnet18"  # any timm model name
    pretrained_path: str = ""  # local ImageNet weights file; empty: none
    country_dim: int = 0  # width of a country-code embedding joined before the head; 0: none
    drop_rate: float = 0.0
    variant: str = "palette"  # renderer: mono, palette, strokes3 (time3 needs a timed or raw store)
    size: int = 32  # image size (the GPU profiles: 64)
    progressive_sizes: dict[int, int] = field(default_factory=dict)  # {first epoch: size}, e.g. {0: 64, 2: 96}
    line_width: float = 2.0  # in output pixels
    bs: int = 64  # batch size (the GPU profiles: 512)
    accumulate: int = 1  # batches per optimiser step (effective batch bs * accumulate)
    sampling: str = "uniform"  # uniform, or balanced (each class equally often)
    epoch_size: int = 1024  # drawings per epoch; 0: the whole training split (the GPU profiles: millions)
    augment: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_AUGMENT))
    render_on: str = "auto"  # "cpu", "gpu", or "auto": the GPU when there is one
    num_workers: int = 0  # loader processes (CPU rendering runs there)
    resident: bool = False  # training batches gathered, augmented and rendered in GPU memory (the store held there)
    schedule: str = "sgdr"  # one_cycle, sgdr, plateau or grow_batch
    epochs: int = 3  # for one_cycle, plateau and grow_batch (sgdr: cycles x cycle_len)
    cycles: int = 2  # SGDR cycles (one snapshot each)
    cycle_len: int = 1  # epochs in the first cycle
    cycle_mult: int = 1  # each cycle this many times longer than the last
    lr: float = 3e-3
    wd: float = 1e-2
    opt: str = "adam"  # "adam" (fastai's), "adamw" (PyTorch's, foreach kernels) or "sgd"
    plateau_patience: int = 1
    plateau_factor: float = 2.0  # LR divisor (plateau) or batch multiplier (grow_batch)
    plateau_min_delta: float = 0.0  # an improvement smaller than this counts as a plateau
    max_bs: int = 4096
    label_smoothing: float = 0.0
    precision: str = "auto"  # "auto" (devices.device_choices), "fp32", "bf16" or "fp16"
    channels_last: bool = False  # the trunk in channels-last memory format (the grid already is)
    compile: str = "off"  # torch.compile the model: off, default, reduce-overhead or max-autotune (CUDA graphs); true is default
    pseudo_preds: str = ""  # test probabilities (.npy) to pseudo-label from; empty: none
    pseudo_threshold: float = 0.95
    pseudo_frac: float = 0.25
    unrecognized: str = "keep"  # training drawings the game did not recognize: keep, drop, downweight or relabel
    unrecognized_weight: float = 0.3  # downweight: how often one is drawn against a recognized drawing (0..1]
    labels_file: str = ""  # relabel: the label column `doodle relabel` wrote beside the store
    tta: list[str] = field(default_factory=list)  # test-time views averaged into the snapshots' predictions: flip, dropout
    resume: bool = True
    seed: int = 0
    progress: bool = True
    processes: int = 0  # training processes: 0 one per visible CUDA device (1 without one); >1 runs torchrun
    # the point model (model="points"; see doodle_utils.models.points)
    points: int = 64  # point budget per drawing (the GPU profiles: 128)
    grid: int = 16  # scatter grid side (the GPU profiles: 32)
    point_dim: int = 64  # features per point (the trunk's input channels)
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8])  # one 1-D conv block each
    point_kernel: int = 5  # 1-D kernel width (odd)
    stem: str = "auto"  # the trunk's stem: drop (ResNet family), keep, or auto
    resample: str = "length"  # which points: spread along the pen path ("length") or the drawing's own ("index")
    ink: bool = False  # one of the point_dim features is the constant 1 (marks the cells the pen crossed)

    def __post_init__(self):
        if isinstance(self.compile, bool):  # the parameter was a switch before it had modes
            self.compile = "default" if self.compile else "off"

    def check(self) -> None:
        """Raise ValueError naming the parameter that cannot work."""
        def bad(name: str, why: str):
            raise ValueError(f"training parameter {name}={getattr(self, name)!r}: {why}")
        hints = typing.get_type_hints(TrainConfig)
        for f in dataclasses.fields(self):
            if not _type_ok(getattr(self, f.name), hints[f.name]):
                bad(f.name, f"must be {_type_name(hints[f.name])}")
        if self.schedule not in SCHEDULES:
            bad("schedule", f"one of {SCHEDULES}")
        if self.precision not in PRECISIONS:
            bad("precision", f"one of {PRECISIONS}")
        if self.compile not in COMPILE_MODES:
            bad("compile", f"one of {COMPILE_MODES} (or true/false)")
        if self.opt not in OPTIMIZERS:
            bad("opt", f"one of {OPTIMIZERS}")
        if self.model not in MODELS:
            bad("model", f"one of {MODELS}")
        if self.model == "points":
            if self.points < 2:
                bad("points", "a drawing needs a budget of at least 2 points")
            if self.grid < 2 or self.point_dim < 1:
                bad("grid" if self.grid < 2 else "point_dim", "too small")
            if not self.dilations or any(int(x) < 1 for x in self.dilations):
                bad("dilations", "a non-empty list of positive integers")
            if self.point_kernel < 1 or self.point_kernel % 2 == 0:
                bad("point_kernel", "a positive odd number")
            if self.stem not in STEMS:
                bad("stem", f"one of {STEMS}")
            if self.resample not in RESAMPLING:
                bad("resample", f"one of {RESAMPLING}")
            if self.progressive_sizes:
                bad("progressive_sizes", "image sizes do not apply to the point model")
        if self.variant not in RENDERERS:
            bad("variant", f"one of {sorted(RENDERERS)}")
        try:
            check_arch(self.arch)
        except ValueError as e:
            bad("arch", "not a timm model; " + str(e).split(": ", 1)[-1])
        if self.render_on not in ("auto", "cpu", "gpu"):
            bad("render_on", "'auto', 'cpu' or 'gpu'")
        if self.resident and self.model == "points":
            bad("resident", "the point model's features are made on the host (loader workers); resident "
                "batches are images")
        if self.resident and self.render_on == "cpu":
            bad("resident", "resident batches are rendered on the device: render_on 'auto' or 'gpu'")
        if self.render_on == "gpu" and not torch.cuda.is_available():
            bad("render_on", "no CUDA device here")
        for name in ("bs", "epochs", "cycles", "cycle_len", "cycle_mult", "accumulate", "size"):
            if getattr(self, name) < 1:
                bad(name, "must be at least 1")
        if not self.lr > 0:
            bad("lr", "must be positive")
        unknown = set(self.augment) - {f.name for f in dataclasses.fields(Augment)}
        if unknown:
            bad("augment", f"unknown keys {sorted(unknown)}")
        if self.progressive_sizes and min(int(k) for k in self.progressive_sizes) != 0:
            bad("progressive_sizes", "the first entry must start at epoch 0")
        if any(v not in TTA_VIEWS for v in self.tta):
            bad("tta", f"a list of {sorted(TTA_VIEWS)}")
        if self.unrecognized not in UNRECOGNIZED:
            bad("unrecognized", f"one of {UNRECOGNIZED}")
        if not 0 < self.unrecognized_weight <= 1:
            bad("unrecognized_weight", "a sampling weight in (0, 1]")
        if self.unrecognized == "relabel" and not self.labels_file:
            bad("labels_file", "unrecognized='relabel' trains on a label column: make one with "
                "`doodle relabel RUN` and name its file here")
        if self.labels_file and self.unrecognized != "relabel":
            bad("labels_file", "a label column is read only with unrecognized='relabel'")
        if self.pseudo_preds and not self.test_store_dir:
            bad("pseudo_preds", "pseudo-labelling needs test_store_dir")
        if self.processes < 0:
            bad("processes", "0 (one per visible CUDA device) or a count")
        if world_size() < 2 and torch.cuda.is_available() and self.processes > torch.cuda.device_count():
            bad("processes", f"more than the {torch.cuda.device_count()} visible CUDA device(s)")

    def cycle_lengths(self) -> list[int]:
        """Epochs of each SGDR cycle (``cycle_len`` growing by ``cycle_mult``)."""
        return [self.cycle_len * self.cycle_mult ** i for i in range(self.cycles)]

    @property
    def n_epochs(self) -> int:
        return sum(self.cycle_lengths()) if self.schedule == "sgdr" else self.epochs

    def snapshot_epochs(self) -> list[int]:
        """Epoch counts after which a snapshot is saved (cycle ends for SGDR, else the end)."""
        if self.schedule == "sgdr":
            return [int(e) for e in np.cumsum(self.cycle_lengths())]
        return [self.epochs]

    def settings_hash(self) -> str:
        """Six hex digits of the settings that shape the model (not where it reads and writes,
        nor ``resume``, ``progress``, workers or processes; a pretrained file by its name):
        the same settings give the same run folder, different ones never share it."""
        return self._digest(LABEL_IGNORES, pretrained_path=Path(self.pretrained_path).name if self.pretrained_path
                            else "")[:6]

    def default_label(self) -> str:
        """The run folder's name when none is given: model, trunk and input size, then
        :meth:`settings_hash`, e.g. ``resnet18_palette32_3f9a1c`` or ``points_resnet18_g16_p64_0b1e77``."""
        stem = (f"points_{self.arch}_g{self.grid}_p{self.points}" if self.model == "points"
                else f"{self.arch}_{self.variant}{self.size}")
        return f"{stem}_{self.settings_hash()}"

    @property
    def run_label(self) -> str:
        """The name of this run's folder (``<out_dir>/train/<run_label>``)."""
        return Path(self.out_dir).name

    def fingerprint(self, world: int = 1, store: str = "") -> str:
        """Hash of what decides the training trajectory (not ``resume``/``progress``/workers):
        the configuration, for ``world`` > 1 processes their number (each step averages
        ``world`` batches; ``processes`` itself is a request, resolved into ``world``), and the
        training store's content (``store``: :func:`..data.store.content_digest`; a store packed
        again with another split must not resume a model that saw today's held-out drawings)."""
        return self._digest(FINGERPRINT_IGNORES, **({"world_size": world} if world > 1 else {}),
                            **({"store": store} if store else {}))[:16]

    def _digest(self, skip: tuple[str, ...], **changed: Any) -> str:
        """SHA-256 (hex) of the settings but ``skip``, with ``changed`` put in."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip} | changed
        if "compile" in d:  # hashed as the switch it was: run names and resumes made before the modes stay
            d["compile"] = d["compile"] != "off"
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()



# what a notebook's parameters hold besides TrainConfig's: where to read and write, the packing
# where a run reads and writes, and how it is run: not part of a run's name (settings_hash)
# (tta changes predictions, not the weights: a run predicted with and without it is one run, its
# manifest saying which)
# (resident: where batches are made, not which: the same batches as the host loader's)
LABEL_IGNORES = ("store_dir", "out_dir", "test_store_dir", "resume", "progress", "num_workers", "processes", "tta",
                 "resident")
# how a run is run, and its own folder: not part of what a checkpoint must match (fingerprint)
FINGERPRINT_IGNORES = ("resume", "progress", "num_workers", "out_dir", "processes", "tta", "resident")

RUN_PARAMETERS = {"data_dir": "competition folder; empty: the default (doodle_utils.paths)",
                  "store_dir": "packed stores (train/, test/); empty: the default",
                  "out_dir": "run outputs; the model goes to <out_dir>/train/<run_label>",
                  "run_label": "sub-folder of this configuration; empty: named by the settings, "
                               "<arch>_<variant><size>_<hash> (points_<arch>_g<grid>_p<points>_<hash>)",
                  "pack": "packing settings (kind, valid_frac, seed, workers)"}


def default_run_label(params: dict[str, Any]) -> str:
    """:meth:`TrainConfig.default_label` of a notebook's parameters (TrainConfig's defaults
    for the ones not given), e.g. ``resnet18_palette32_3f9a1c``."""
    return config_from_params({**params, "store_dir": "", "out_dir": ""}).default_label()


def parameters_help() -> str:
    """Every training parameter with its default and the comment beside it in TrainConfig
    (``doodle train --help``)."""
    import inspect
    import re

    comments = {}
    for line in inspect.getsource(TrainConfig).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.*)$", line)
        if m:
            comments[m[1]] = m[2]
    rows = [(k, why) for k, why in RUN_PARAMETERS.items()]
    default = TrainConfig(store_dir="", out_dir="")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("store_dir", "out_dir", "test_store_dir"):
            continue
        rows.append((f"{f.name} = {getattr(default, f.name)!r}", comments.get(f.name, "")))
    width = 26
    lines = []
    for k, why in rows:
        if len(k) <= width or not why:
            lines.append(f"  {k:<{width}}  {why}".rstrip())
        else:  # a long default: its comment on the next line
            lines += [f"  {k}", f"  {'':<{width}}  {why}"]
    return "training parameters (--set NAME=VALUE, or a YAML file of them):\n" + "\n".join(lines)


def run_config(params: dict[str, Any], store_dir: str | Path, out_dir: str | Path, run_label: str) -> TrainConfig:
    """Notebook 03's configuration: its parameters plus the run's stores (``<store_dir>/train``,
    and ``<store_dir>/test`` when one was packed) and ``<out_dir>/train/<run_label>``."""
    test = store_path(store_dir, "test")
    return config_from_params({**params, "store_dir": str(store_path(store_dir, "train")),
                               "test_store_dir": str(test) if (test / "manifest.json").exists() else None,
                               "out_dir": str(run_dir(out_dir, run_label))})


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits a TrainConfig annotation (int is no bool; a float may be an int)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is dict:
        return isinstance(value, dict) and all(_type_ok(k, args[0]) and _type_ok(v, args[1]) for k, v in value.items())
    if origin is list:
        return isinstance(value, list) and all(_type_ok(v, args[0]) for v in value)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def config_from_params(params: dict[str, Any], strict: bool = False) -> TrainConfig:
    """A TrainConfig from a notebook's parameters; other keys are ignored, or with ``strict``
    an error naming them."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(params) - names)
    if strict and unknown:
        raise ValueError(f"unknown training parameters {unknown} (known: {sorted(names)})")
    kw = {k: v for k, v in params.items() if k in names}
    if isinstance(kw.get("progressive_sizes"), dict):
        kw["progressive_sizes"] = {int(k): int(v) for k, v in kw["progressive_sizes"].items()}
    return TrainConfig(**kw)
