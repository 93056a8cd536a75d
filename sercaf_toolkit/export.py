"""Kept for model folders exported before the package was grouped by stage.

Their ``hyperparams.yaml`` builds its label encoder with
``sercaf_toolkit.export.label_encoder_of_size``; new exports name
:func:`sercaf_toolkit.data.label_encoder_of_size`, and the exporter is
:mod:`sercaf_toolkit.deployment.export`.
"""

from sercaf_toolkit.data import label_encoder_of_size

__all__ = ["label_encoder_of_size"]
