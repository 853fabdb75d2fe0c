"""AU estimation from face landmarks: geometry (pose-normalised measures), calibrated
intensities, and helpers for images and AU time series.

``estimate_image_aus(rgb, detector, landmarker, estimator)`` estimates the largest face of a
photo in one call (``animator estimate`` goes through the tracker so that ``--select`` takes the
face IDs of ``animator faces``; ``animator prepare`` estimates from the mesh it already has); ``smooth_au_series`` is the zero-lag smoothing the
renderer applies to an actor's per-frame AUs in relative keyframe mode.
"""

from __future__ import annotations

import numpy as np

from animator.estimate.aus import OBSERVABLE, OBSERVABLE_68, AUEstimator
from animator.estimate.temporal import smooth_au_series

__all__ = ["AUEstimator", "OBSERVABLE", "OBSERVABLE_68", "estimate_image_aus", "smooth_au_series"]


def estimate_image_aus(rgb: np.ndarray, detector, landmarker,
                       estimator: AUEstimator | None = None) -> tuple[np.ndarray, float] | None:
    """(17,) AUs and the detection score for the largest face in ``rgb``; None if no face.

    ``detector`` is a :class:`animator.faces.detect.FaceDetector`, ``landmarker`` a mesh (or
    68-point) landmarker; pass one ``estimator`` when calling this for many images.
    """
    detections = detector.detect(rgb)
    if not detections:
        return None
    face = detections[0]
    points = landmarker.landmarks(rgb, face)
    estimator = estimator or AUEstimator.default()
    return estimator.estimate(points), float(face.score)

