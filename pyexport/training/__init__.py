"""The parts of fitting a potential, one concept per module (the whole fit is
:func:`pyexport.fit.run_fit`): ``data`` (labelled structures, split, contract inputs),
``batches`` (several structures as one graph, a model's energies / forces / stresses on it),
``loss``, ``metrics``, ``design`` (design rows of the linear model), ``ridge`` (the closed-form
fit), ``nn`` (training cluster-nn), ``extrapolation`` (core radii, active set) and
``checkpoints`` (the schema and safe reader of every fit's checkpoint, pyexport fit-efg's too)."""
