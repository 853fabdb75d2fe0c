"""MediaPipe's blendshape model: 478 face landmarks -> 52 ARKit-style expression coefficients.

``face_blendshapes.tflite`` (Face Landmarker v2, Apache-2.0) is a small learned model. As in
MediaPipe's ``FaceBlendshapesGraph`` it reads a fixed subset of 146 of the 478 landmarks, only
their x and y, in image pixels (MediaPipe multiplies its normalised landmarks by the image
size); the model normalises position and scale itself. Each coefficient is 0-1.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from animator.errors import AnimatorError
from animator.faces.detect import quiet_opencv
from animator.faces.landmarks import LANDMARKER_DIR, N_LANDMARKS

BLENDSHAPE_MODEL = LANDMARKER_DIR / "face_blendshapes.tflite"

# The landmarks the model reads, in its input order (MediaPipe's kLandmarksSubsetIdxs): brows,
# lids, lips, jaw line and nose points of the mesh, then the 10 iris points.
LANDMARK_SUBSET: tuple[int, ...] = (
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65,
    66, 67, 70, 78, 80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136,
    144, 145, 146, 148, 149, 150, 152, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168,
    172, 173, 176, 178, 181, 185, 191, 195, 197, 234, 246, 249, 251, 263, 267, 269, 270, 276,
    282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312, 314, 317, 318,
    321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380,
    381, 382, 384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466,
    468, 469, 470, 471, 472, 473, 474, 475, 476, 477,
)

# Output order. "Left"/"Right" are the subject's sides (ARKit's convention).
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft",
    "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen",
    "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)
N_BLENDSHAPES = len(BLENDSHAPE_NAMES)


class BlendshapeModel:
    """``model(landmarks)``: (478, 3) or (N, 478, 3|2) frame-pixel landmarks -> (…, 52) float32."""

    def __init__(self, path: Path = BLENDSHAPE_MODEL) -> None:
        if not path.is_file():
            raise AnimatorError(f"{path}: the shipped blendshape model is missing (reinstall animator)")
        with quiet_opencv():
            self._net = cv2.dnn.readNetFromTFLite(str(path))

    def __call__(self, landmarks: np.ndarray) -> np.ndarray:
        points = np.asarray(landmarks, dtype=np.float32)
        if points.ndim < 2 or points.shape[-2] != N_LANDMARKS or points.shape[-1] not in (2, 3):
            raise AnimatorError(f"blendshapes need (…, {N_LANDMARKS}, 2|3) landmarks, got shape {points.shape}")
        subset = points[..., list(LANDMARK_SUBSET), :2].reshape(-1, len(LANDMARK_SUBSET), 2)
        out = np.empty((len(subset), N_BLENDSHAPES), dtype=np.float32)
        for i, face in enumerate(subset):  # the model takes one face at a time
            self._net.setInput(np.ascontiguousarray(face[None]))
            out[i] = np.asarray(self._net.forward(), dtype=np.float32).reshape(N_BLENDSHAPES)
        return out.reshape(points.shape[:-2] + (N_BLENDSHAPES,))
