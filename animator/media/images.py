"""Still images as RGB uint8 arrays (the project's frame convention), with clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from animator.errors import AnimatorError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def is_image(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a photo as RGB uint8 (H, W, 3); EXIF orientation is applied by OpenCV."""
    path = Path(path)
    if not path.is_file():
        raise AnimatorError(f"{path}: no such file")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise AnimatorError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_image(path: str | os.PathLike, image: np.ndarray, quality: int = 95) -> None:
    """Write RGB uint8 (H, W, 3) or grey (H, W); the format follows the suffix."""
    path = Path(path)
    suffix = path.suffix.lower() if path.suffix.lower() in IMAGE_SUFFIXES else ".png"
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if suffix in (".jpg", ".jpeg") else []
    params += [cv2.IMWRITE_WEBP_QUALITY, quality] if suffix == ".webp" else []
    ok, encoded = cv2.imencode(suffix, image, params)
    if not ok:
        raise AnimatorError(f"{path}: could not encode image")
    encoded.tofile(path)
