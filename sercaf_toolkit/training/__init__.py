"""Training: checks before a run (preflight, recipe options), run records
and locks (runs), checkpoints, SERBrain, the recipe runner every
``train.py`` calls, and cross-validation over folds (``sercaf cv``)."""
