"""Still images as RGB uint8 arrays (the project's frame convention), with clear errors."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from animator.errors import AnimatorError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# Larger photos are refused from their header, before decoding: 150 MP is 450 MB as RGB, more
# than any camera makes, and a tiny file claiming more is a decompression bomb.
MAX_PIXELS = 150_000_000


def is_image(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a photo as RGB uint8 (H, W, 3); EXIF orientation is applied by OpenCV."""
    path = Path(path)
    if not path.is_file():
        raise AnimatorError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AnimatorError(f"{path}: empty file (0 bytes), not an image")
    check_pixel_count(path)
    data = np.fromfile(path, dtype=np.uint8)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:  # OpenCV asserts on some malformed files instead of returning None
        image = None
    if image is None:
        raise AnimatorError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def check_pixel_count(path: Path) -> None:
    """Refuse an image whose header claims more than :data:`MAX_PIXELS` (Pillow reads only
    the header here; formats it does not know are left to OpenCV's own limit)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError:  # past Pillow's own, higher, limit
        claim = f"more than {2 * Image.MAX_IMAGE_PIXELS / 1e6:,.0f} megapixels"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return  # not a header Pillow parses: OpenCV decides
    else:
        if width * height <= MAX_PIXELS:
            return
        claim = f"{width}x{height} pixels ({width * height / 1e6:,.0f} megapixels)"
    raise AnimatorError(f"{path}: the header claims {claim}; animator decodes at most "
                        f"{MAX_PIXELS / 1e6:g} megapixels")


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
    with open(path, "wb") as handle:  # not ndarray.tofile: a short write there has no errno
        handle.write(encoded)
