"""Face detection with YuNet (OpenCV's FaceDetectorYN): boxes, 5 landmarks and scores.

Detection runs on a copy downscaled so its long side is at most ``max_side``; boxes and
points are mapped back to full-frame pixels, so large frames cost about as much as small ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from animator.errors import AnimatorError

YUNET_MODEL = Path(__file__).resolve().parents[1] / "assets" / "yunet" / "face_detection_yunet_2026may.onnx"


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's warnings while a model loads (its DNN engine warns about targets it
    ignores on every load, which users cannot act on)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


@dataclass
class Detection:
    """One face. ``points`` are in YuNet's order: right eye, left eye, nose tip, right mouth
    corner, left mouth corner ("right" = the subject's right = image left)."""

    box: np.ndarray     # (4,) float32 [x0, y0, x1, y1]
    points: np.ndarray  # (5, 2) float32
    score: float

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


class FaceDetector:
    """YuNet through ``cv2.FaceDetectorYN``; the model ships inside the package."""

    def __init__(self, score_threshold: float = 0.6, max_side: int = 640,
                 nms_threshold: float = 0.3, top_k: int = 5000):
        if not 0.0 <= score_threshold <= 1.0:
            raise AnimatorError(f"--score-threshold: {score_threshold} is not in [0, 1]")
        if not YUNET_MODEL.is_file():
            raise AnimatorError(f"{YUNET_MODEL}: the shipped YuNet model is missing (reinstall animator)")
        self.score_threshold = score_threshold
        self.max_side = max_side
        with quiet_opencv():
            self._net = cv2.FaceDetectorYN.create(str(YUNET_MODEL), "", (320, 320),
                                                  score_threshold, nms_threshold, top_k)

    def detect(self, frame_rgb: np.ndarray, max_side: int | None = None) -> list[Detection]:
        """All faces scoring at least ``score_threshold``, largest first; the image is shrunk
        to ``max_side`` pixels on its longer side first (default: the detector's)."""
        h, w = frame_rgb.shape[:2]
        scale = min(1.0, (max_side or self.max_side) / max(h, w))
        image = frame_rgb
        if scale < 1.0:
            image = cv2.resize(frame_rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                               interpolation=cv2.INTER_AREA)
        bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
        self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self._net.detect(bgr)
        if faces is None:
            return []
        # the resize maps x_small = x * (w_small / w); undo it per axis
        sx, sy = w / bgr.shape[1], h / bgr.shape[0]
        detections = []
        for row in np.asarray(faces, dtype=np.float32):
            x, y, bw, bh = row[:4]
            box = np.array([x * sx, y * sy, (x + bw) * sx, (y + bh) * sy], dtype=np.float32)
            points = (row[4:14].reshape(5, 2) * np.array([sx, sy], dtype=np.float32)).astype(np.float32)
            detections.append(Detection(box=box, points=points, score=float(row[14])))
        detections.sort(key=lambda d: d.area, reverse=True)
        return detections

    def detect_region(self, frame_rgb: np.ndarray, region: np.ndarray,
                      max_side: int | None = None) -> list[Detection]:
        """Faces inside ``region`` [x0, y0, x1, y1] only (clipped to the frame), in frame
        pixels: the cheap re-check a tracker makes around a face it already follows. The
        region is shrunk to ``max_side`` pixels first (default: the detector's)."""
        h, w = frame_rgb.shape[:2]
        x0, y0 = (max(0, int(np.floor(v))) for v in region[:2])
        x1, y1 = min(w, int(np.ceil(region[2]))), min(h, int(np.ceil(region[3])))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return []
        found = self.detect(frame_rgb[y0:y1, x0:x1], max_side)
        offset = np.array([x0, y0], dtype=np.float32)
        for d in found:
            d.box = d.box + np.tile(offset, 2)
            d.points = d.points + offset
        return found
