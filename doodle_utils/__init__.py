"""doodle_utils: the shared package of the Quick, Draw! doodle-recognition kernel suite.

Modules: ``data`` (file formats), ``simplify`` (Google's simplification), ``store`` (packed
memory-mapped store), ``synth`` (the synthetic mini-competition), ``cli`` (the ``doodle``
command). Importing the package does no I/O and loads no heavy dependency.
"""
__version__ = "0.1.0"
