"""Post-processing, the layer above training: what happens to the class probabilities.

* :mod:`.ensemble` — snapshot and model ensembles, weights chosen on the blend split (or
  cross-fitted validation).
* :mod:`.stacking` — the second level: LightGBM re-ranks each drawing's candidate classes.
* :mod:`.balance` — the proxy score and balancing predictions to the test set's known balance.
"""
