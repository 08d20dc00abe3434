"""The image model: a timm backbone on rendered drawings (``DoodleNet``) and how it is made.

Its own module so that both models — this one and the point model (:mod:`.points`), which
puts the same backbone on a grid of point features — sit below training, which builds them.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import timm
import torch


def create_backbone(arch: str, num_classes: int, in_chans: int, pretrained_path: str | Path | None = None,
                    drop_rate: float = 0.0) -> torch.nn.Module:
    """A timm model (``num_classes=0``: pooled features), weights from a local file if given:
    timm loads it through its pretrained-config ``file`` route, dropping the classifier when
    the class count differs and adapting the first convolution to ``in_chans``."""
    kw: dict[str, Any] = dict(in_chans=in_chans, drop_rate=drop_rate)
    if pretrained_path:
        if not Path(pretrained_path).is_file():
            raise FileNotFoundError(f"pretrained weights {pretrained_path}: no such file")
        kw.update(pretrained=True, pretrained_cfg_overlay=dict(file=str(pretrained_path)))
    check_arch(arch)
    return timm.create_model(arch, num_classes=num_classes, **kw)


def check_arch(arch: str) -> None:
    """Raise ValueError for a name timm does not know, with the closest names it does
    (``resnet_18``: did you mean ``resnet18``?)."""
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "timm.list_models() lists them"
        raise ValueError(f"unknown timm model {arch!r}: {hint}")


class DoodleNet(torch.nn.Module):
    """A timm backbone on rendered drawings, optionally joined by a country embedding.

    Args:
        arch: any timm model name (``timm.list_models()``).
        n_classes, in_chans: output classes and image channels (timm adapts the first layer).
        n_countries, country_dim: the country vocabulary size and embedding width (0: none).
            With an embedding the backbone's pooled features and the country vector are
            concatenated before a linear head.
        pretrained_path: a local weights file (``.pth``/``.bin``/``.safetensors``, e.g. from a
            Kaggle weights dataset). timm loads it through its pretrained-config ``file``
            route: the classifier is dropped when the class count differs and the first
            convolution is adapted to ``in_chans``.
        drop_rate: dropout before the classifier.
    """

    def __init__(self, arch: str, n_classes: int, in_chans: int = 3, n_countries: int = 0,
                 country_dim: int = 0, pretrained_path: str | None = None, drop_rate: float = 0.0):
        super().__init__()
        self.body = create_backbone(arch, 0 if country_dim else n_classes, in_chans, pretrained_path, drop_rate)
        self.country = torch.nn.Embedding(n_countries + 1, country_dim) if country_dim else None
        self.head = torch.nn.Linear(self.body.num_features + country_dim, n_classes) if country_dim else None

    def forward(self, x: torch.Tensor, country: torch.Tensor | None = None) -> torch.Tensor:
        if self.country is None:
            return self.body(x)
        return self.head(torch.cat([self.body(x), self.country(country)], dim=1))
