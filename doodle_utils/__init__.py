"""doodle_utils: the shared package of the Quick, Draw! doodle-recognition kernel suite.

Layers, each importing only the ones before it (``tests/test_layers.py`` holds this):

* foundation modules: ``paths`` (where everything lives), ``options`` (checked settings),
  ``devices``, ``metrics``, ``versions`` and the private ``_files`` (atomic writes, locks);
* ``data`` — file formats, simplification, the packed store, the synthetic competition;
* ``render`` — render variants and their engines (OpenCV, numba, torch, Triton);
* ``models`` — the image model on a timm trunk and the point model;
* ``training`` — the configuration, loaders, callbacks and the fastai run;
* ``postprocess`` — ensembles and balancing;
* on top: ``eda``, ``results``, ``pipeline``, ``kaggle``, ``kaggle_emulator``, ``cli``.

Importing the package does no I/O and loads no heavy dependency. The flat module paths of
0.1 (``doodle_utils.store``, ``doodle_utils.train``, ...) still import, with a
DeprecationWarning naming the new path (see ``_moved``).
"""
from . import _moved

__version__ = "0.1.0"

_moved.install()
