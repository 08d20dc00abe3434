"""Training with fastai (the layer above models).

* :mod:`.config` — :class:`TrainConfig`, the one definition of every training parameter and its
  default, and how a notebook's ``parameters`` become one.
* :mod:`.loaders` — fastai loaders over the packed store (render or featurise per batch).
* :mod:`.callbacks` — seeding, progressive sizes, plateau tricks, the checkpoint commit, snapshots.
* :mod:`.fit` — :func:`train` (one run, resumable, one or several processes) and its predictions;
  :func:`load_run` (a finished run as a Learner that predicts).
* :mod:`.showing` — fastai's ``show_batch`` / ``plot_top_losses`` for doodle batches.
* :mod:`.report` — tables and figures of finished runs (notebooks 03 and 06).
* :mod:`.relabel` — unrecognized training drawings relabelled by a trained run (a label column).

The names below were importable from ``doodle_utils.train`` before the layers became subpackages.
"""
from ..devices import world_size
from ..models import DoodleNet, check_arch, create_backbone
from .callbacks import (NEXT_CHECKPOINT, Checkpoint, DeviceLoss, EpochSeed, GrowBatchOnPlateau, History,
                        ProgressiveResize, QuietProgress, ResumableReduceLROnPlateau, RunStateError, Snapshots,
                        TrainOnly, set_batch_size, skipped)
from .config import (DEFAULT_AUGMENT, MODELS, OPTIMIZERS, RUN_PARAMETERS, SCHEDULES, TrainConfig, config_from_params,
                     default_run_label, parameters_help, run_config)
from .fit import (TrainResult, build_learner, launch, load_run, make_loaders, pick_device, predict_snapshots,
                  predict_views, resolve_processes, train)

__all__ = ["DoodleNet", "check_arch", "create_backbone", "NEXT_CHECKPOINT", "Checkpoint", "DeviceLoss", "EpochSeed",
           "GrowBatchOnPlateau", "History", "ProgressiveResize", "QuietProgress", "ResumableReduceLROnPlateau",
           "RunStateError", "Snapshots", "TrainOnly", "set_batch_size", "skipped", "DEFAULT_AUGMENT", "MODELS",
           "OPTIMIZERS", "RUN_PARAMETERS", "SCHEDULES", "TrainConfig", "config_from_params", "default_run_label",
           "parameters_help", "run_config", "TrainResult", "build_learner", "launch", "load_run", "make_loaders", "pick_device",
           "predict_snapshots", "predict_views", "resolve_processes", "train", "world_size"]
