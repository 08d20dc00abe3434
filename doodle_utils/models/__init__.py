"""The models: :mod:`.image` (a timm trunk on rendered drawings: :class:`DoodleNet`,
:func:`create_backbone`, :func:`check_arch`) and :mod:`.points` (the 8th place's point model,
:class:`PointCNN`, with the featuriser that turns strokes into its points).

Above data and render, below training: a model knows nothing of loaders or schedules.
"""
from .image import DoodleNet, check_arch, create_backbone
from .points import FEATURES, RESAMPLING, STEMS, PointCNN, point_features, sample_points

__all__ = ["DoodleNet", "check_arch", "create_backbone", "FEATURES", "RESAMPLING", "STEMS", "PointCNN",
           "point_features", "sample_points"]
