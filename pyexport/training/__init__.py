"""The parts of fitting a model, one concept per module (the whole fits are
:func:`pyexport.fit.run_fit` and :func:`pyexport.fit_efg.run_efg_fit`):

- ``config``: the options of every fit with their defaults (light: no torch);
- ``data``: labelled structures, the train / validation / test split, contract inputs;
- ``batches``: several structures as one graph, a model's energies / forces / stresses on it;
- ``loss`` and ``metrics``: the potential's loss, predictions and their errors;
- ``design`` and ``ridge``: design rows of the linear model and its closed-form ridge fit;
- ``nn`` and ``early_stopping``: training cluster-nn (early stopping is shared with fit-efg);
- ``extrapolation``: the repulsive core's radii and the active set of the extrapolation grade;
- ``checkpoints``: the one checkpoint schema of every fit, its safe reader, models from it.
"""
