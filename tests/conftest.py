"""Shared fixtures: tiny SSL models built from configs, offline."""

import pytest

from sercaf_toolkit.tiny_ssl import build_tiny_ssl_model


@pytest.fixture(scope="session")
def tiny_ssl_source(tmp_path_factory):
    """``source(model_type, feat_extract_norm)``: a saved model folder."""
    root = tmp_path_factory.mktemp("tiny_ssl")

    def source(model_type="wav2vec2", feat_extract_norm="group"):
        folder = root / f"{model_type}-{feat_extract_norm}"
        return build_tiny_ssl_model(
            str(folder), model_type, feat_extract_norm=feat_extract_norm
        )

    return source
