"""Post-processing, the layer above training: what happens to the class probabilities.

* :mod:`.ensemble` — snapshot and model ensembles, weights chosen on the validation split.
* :mod:`.balance` — the proxy score and balancing predictions to the test set's known balance.
"""
