"""Shared fixtures: real face photos from scikit-image and the project's ../shared data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = REPO.parent / "shared"
    if not path.is_dir():
        pytest.skip(f"{path} is absent: the shared data set (models, datasets, media) is needed")
    return path


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """Eileen Collins' portrait (public domain, shipped with scikit-image), RGB uint8 512x512."""
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image is a test dependency")
    return np.ascontiguousarray(skimage_data.astronaut())


@pytest.fixture(scope="session")
def face_image(astronaut: np.ndarray) -> np.ndarray:
    return astronaut
