"""doodle_utils: the shared package of the Quick, Draw! doodle-recognition kernel suite.

Layers, each importing only the ones before it (``tests/test_layers.py`` holds this):

* foundation modules: ``paths`` (where everything lives), ``options`` (checked settings),
  ``devices``, ``metrics``, ``versions``, ``progress`` (the epoch line) and the private
  ``_files`` (atomic writes, locks);
* ``data`` — file formats, simplification, the packed store, the synthetic competition, a
  doodle traced from an image;
* ``render`` — render variants and their engines (OpenCV, numba, torch, Triton);
* ``models`` — the image model on a timm trunk and the point model;
* ``training`` — the configuration, loaders, callbacks, the fastai run and a finished run loaded;
* ``postprocess`` — ensembles, the stacker and balancing;
* on top: ``eda``, ``results``, ``prediction`` (a trained model used; ONNX), ``pipeline``,
  ``kaggle``, ``kaggle_emulator``, ``cli``.

Importing the package does no I/O and loads no heavy dependency. The flat module paths of
0.1 (``doodle_utils.store``, ``doodle_utils.train``, ...) still import, with a
DeprecationWarning naming the new path (see ``_moved``).
"""
import warnings

from . import _moved

__version__ = "0.2.0"

_moved.install()
# fastai 2.8's layers.py applies torch.jit.script at import, which torch 2.11 deprecates: a
# warning in every notebook's imports cell that no user can act on. Only that one is hidden.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning,
                        module=r"torch\.jit\._script")
