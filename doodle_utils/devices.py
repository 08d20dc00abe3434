"""What a device can do: the mixed precision and the GPU render engine to use on it.

:func:`device_choices` decides, per device, from its compute capability (``sm``), the
precision that ``precision="auto"`` trains in and the engine that ``engine="auto"`` renders
with; :func:`announce` prints that decision once per process (training calls it), and the
renderer asks on every batch (the device's name and capability are read once).

Precision ("auto"):

* bf16 where the GPU has native bfloat16 arithmetic (sm >= 8.0: A100, L4, H100...).
  ``torch.cuda.is_bf16_supported()`` cannot decide this: it is also True on a T4 (sm 7.5),
  where bfloat16 is emulated and slower than float32.
* fp16 with gradient scaling on sm 7.0 to 7.x (V100, T4: float16 tensor cores). fastai's
  ``Learner.to_fp16`` adds its ``MixedPrecision`` callback, which autocasts to float16 and
  scales the loss with ``torch.amp.GradScaler`` (enabled for float16 only).
* fp32 on older GPUs (P100, sm 6.0: no tensor cores) and on the CPU.

An explicit ``bf16`` on a GPU without native bfloat16 runs (emulated) with a warning.

Render engine ("auto"): the Triton kernel of :mod:`.render._triton` on CUDA devices of
sm >= 7.0 when Triton imports and ``DOODLE_NO_TRITON`` is unset, else :mod:`.render._torch`'s
engine. 7.0 is the floor PyTorch puts on Triton (``torch._dynamo.device_interface``:
``CudaInterface.is_triton_capable`` is ``major >= 7``; below it inductor raises
``GPUTooOldForTriton``). Triton's README lists sm 8.0+ as its supported hardware, but the
installed Triton still compiles this kernel for sm 7.0 and 7.5 (checked with
``triton.compile`` for those targets) and PyTorch relies on it there. Asking for
``engine="triton"`` on an older GPU raises ValueError.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from functools import lru_cache

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ENGINES = ("auto", "torch", "triton")
NATIVE_BF16 = (8, 0)  # Ampere: bfloat16 tensor cores
FP16_TENSOR_CORES = (7, 0)  # Volta, Turing
TRITON_MIN = (7, 0)  # PyTorch's floor for Triton (see the module docstring)



def world_size() -> int:
    """Processes in this training job (``WORLD_SIZE``, set by torchrun or accelerate launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass(frozen=True)
class DeviceChoices:
    """What runs on one device, and why."""

    device: str  # "cuda:0", "cpu"
    name: str  # the GPU's name, or "CPU"
    capability: tuple[int, int] | None  # (major, minor) of a CUDA device
    precision: str  # "bf16", "fp16" or "fp32"
    render_engine: str  # "triton" or "torch" (for anti-aliased pens on this device)
    reason: str  # why, in a few words

    def line(self) -> str:
        """One line for the log: device, GPU, capability, the choices and why."""
        sm = f" (sm {self.capability[0]}.{self.capability[1]})" if self.capability else ""
        return (f"{self.device}: {self.name}{sm}; precision {self.precision}, "
                f"GPU render engine {self.render_engine}; {self.reason}")


@lru_cache(maxsize=None)
def _gpu(index: int) -> tuple[str, tuple[int, int]]:
    """Name and compute capability of CUDA device ``index`` (read once per process)."""
    major, minor = torch.cuda.get_device_capability(index)
    return torch.cuda.get_device_name(index), (int(major), int(minor))


@lru_cache(maxsize=None)
def _triton_error() -> str | None:
    """None when Triton imports, else why not."""
    try:
        import triton  # noqa: F401
    except ImportError as e:
        return f"triton does not import ({e})"
    return None


def clear_cache() -> None:
    """Forget the devices and Triton read so far (for tests that fake them)."""
    _gpu.cache_clear()
    _triton_error.cache_clear()


def _index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def device_choices(device: torch.device | str, precision: str = "auto", engine: str = "auto") -> DeviceChoices:
    """The precision and render engine for ``device``.

    Args:
        device: where the model trains and the batches are rendered ("cuda" means the
            current CUDA device).
        precision: "auto" (see the module docstring) or "fp32", "bf16", "fp16" as asked;
            bf16 on a GPU without native bfloat16 warns, a mixed precision on the CPU
            raises ValueError.
        engine: "auto", "torch" or "triton" (on a CPU device "triton" means Triton's
            interpreter, as the tests use it).

    Returns:
        The choices with a short reason; ``line()`` formats them for the log.

    Raises:
        ValueError: an unknown name, a mixed precision without CUDA, or "triton" on a GPU
            Triton does not support or where Triton does not import.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    dev = torch.device(device)
    if dev.type != "cuda":
        if precision not in ("auto", "fp32"):
            raise ValueError(f"precision={precision!r} needs a CUDA device (this run is on {dev})")
        if engine == "triton" and _triton_error():
            raise ValueError(f"engine='triton': {_triton_error()}")
        return DeviceChoices(str(dev), "CPU", None, "fp32", "triton" if engine == "triton" else "torch",
                             "no GPU: fp32" + ("; Triton's interpreter as asked" if engine == "triton" else ""))
    index = _index(dev)
    name, cap = _gpu(index)
    sm = f"sm {cap[0]}.{cap[1]}"
    why = []
    if precision == "auto":
        if cap >= NATIVE_BF16:
            precision = "bf16"
            why.append(f"native bf16 ({sm} >= 8.0)")
        elif cap >= FP16_TENSOR_CORES:
            precision = "fp16"
            why.append(f"fp16 tensor cores but no native bf16 ({sm} < 8.0): fp16 with gradient scaling")
        else:
            precision = "fp32"
            why.append(f"no tensor cores ({sm} < 7.0): fp32")
    elif precision == "bf16" and cap < NATIVE_BF16:
        warnings.warn(f"precision='bf16' on {name} ({sm}): no native bfloat16 before sm 8.0, so it is emulated "
                      f"and slower than fp32; 'auto' picks fp16 with gradient scaling there", stacklevel=2)
        why.append(f"bf16 as asked (emulated on {sm})")
    else:
        why.append(f"{precision} as asked")
    triton_ok = cap >= TRITON_MIN and not _triton_error()
    if engine == "triton":
        if cap < TRITON_MIN:
            raise ValueError(f"engine='triton' on {name} ({sm}): Triton needs sm >= {TRITON_MIN[0]}.{TRITON_MIN[1]}; "
                             f"use engine='torch' or 'auto'")
        if _triton_error():
            raise ValueError(f"engine='triton': {_triton_error()}")
        why.append("Triton as asked")
    elif engine == "auto" and triton_ok and os.environ.get("DOODLE_NO_TRITON"):
        engine = "torch"
        why.append("DOODLE_NO_TRITON is set: torch renderer")
    elif engine == "auto":
        engine = "triton" if triton_ok else "torch"
        why.append(f"Triton renders ({sm} >= 7.0)" if triton_ok else
                   f"torch renderer ({_triton_error() or f'Triton needs sm >= 7.0, this is {sm}'})")
    else:
        why.append("torch renderer as asked")
    return DeviceChoices(f"cuda:{index}", name, cap, precision, engine, "; ".join(why))


_announced: set[str] = set()


def announce(choices: DeviceChoices) -> bool:
    """Print ``choices.line()`` the first time this process sees it; True if printed."""
    line = choices.line()
    if line in _announced:
        return False
    _announced.add(line)
    print(f"device: {line}", flush=True)
    return True
