"""AU estimation from MediaPipe's 478 face landmarks: blendshapes and pose-normalised geometry,
calibrated against OpenFace 2 (docs/au_estimation.md).

- ``AUEstimator.default().estimate(landmarks)``: (478, 3) or (N, 478, 3) landmarks in frame
  pixels -- what the tracker stores as ``FaceObservation.mesh`` and
  ``MeshLandmarker.landmarks`` returns -- to (…, 17) AU intensities on 0-5 (GANimation's order).
- ``estimate_image_aus(rgb, detector, landmarker, estimator)``: the largest face of a photo
  (``animator estimate`` on images).
- ``smooth_au_series``: the zero-lag smoothing the renderer applies to an actor's per-frame AUs
  in relative keyframe mode.
"""

from __future__ import annotations

import numpy as np

from animator.estimate.aus import AUEstimator
from animator.estimate.temporal import smooth_au_series

__all__ = ["AUEstimator", "estimate_image_aus", "smooth_au_series"]


def estimate_image_aus(rgb: np.ndarray, detector, landmarker,
                       estimator: AUEstimator | None = None) -> tuple[np.ndarray, float] | None:
    """(17,) AUs and the detection score for the largest face in ``rgb``; None if no face.

    ``detector`` is a :class:`animator.faces.detect.FaceDetector`, ``landmarker`` a
    :class:`animator.faces.landmarks.MeshLandmarker`; pass one ``estimator`` when calling this
    for many images.
    """
    detections = detector.detect(rgb)
    if not detections:
        return None
    face = detections[0]
    estimator = estimator or AUEstimator.default()
    return estimator.estimate(landmarker.landmarks(rgb, face)), float(face.score)
