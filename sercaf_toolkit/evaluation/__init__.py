"""Evaluation: metrics (WA, UA, F1 as scikit-learn computes them),
pictures, results (a run's test files, tables over finished runs) and
cross-corpus evaluation of a trained model (``sercaf evaluate``)."""
