"""Dense face landmarks: MediaPipe's Face Landmarker (478 points, shipped) or FAN (68, opt-in).

The landmark model (``face_landmarks_detector.tflite`` of MediaPipe's Face Landmarker v2) sees
a 256x256 RGB crop scaled to [0, 1], upright and with a margin, as MediaPipe's own graph cuts it:
from a detection the crop is a square 1.4x the box's long side, turned by the eye line, then
refined once from the landmarks it produced; when tracking, the crop comes from the previous
frame's landmarks (their extent in the face's own axes, 1.5x, turned by the outer eye corners).
It returns the 468-point face mesh (MediaPipe's canonical numbering) followed by 10 iris points
(468-472 the subject's right iris centre and contour, 473-477 the left), plus a face-presence
score. One model serves tracking and AU estimation (the blendshape model reads these points).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from animator.errors import AnimatorError
from animator.faces.align import square_transform
from animator.faces.detect import Detection, quiet_opencv

LANDMARKER_DIR = Path(__file__).resolve().parents[1] / "assets" / "face_landmarker"
LANDMARK_MODEL = LANDMARKER_DIR / "face_landmarks_detector.tflite"
MESH_SIZE = 256
N_MESH = 468           # the face mesh part (indices 0-467)
N_LANDMARKS = 478      # mesh + 10 iris points

# MediaPipe mesh indices; "right" is the subject's right (image left), as in YuNet.
RIGHT_EYE = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246]
LEFT_EYE = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466]
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263
NOSE_TIP = 1
RIGHT_MOUTH_CORNER, LEFT_MOUTH_CORNER = 61, 291
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21,
             54, 103, 67, 109]

DETECTION_MARGIN = 1.4
MESH_MARGIN = 1.5


def eye_centers(mesh: np.ndarray) -> np.ndarray:
    """(2, 2): the mean of each eye's contour, right eye first (YuNet order)."""
    mesh = np.asarray(mesh)
    return np.stack([mesh[RIGHT_EYE, :2].mean(0), mesh[LEFT_EYE, :2].mean(0)]).astype(np.float32)


def five_points(mesh: np.ndarray) -> np.ndarray:
    """(5, 2) in YuNet's order: right eye, left eye, nose tip, right and left mouth corner."""
    mesh = np.asarray(mesh)
    rest = mesh[[NOSE_TIP, RIGHT_MOUTH_CORNER, LEFT_MOUTH_CORNER], :2]
    return np.concatenate([eye_centers(mesh), rest]).astype(np.float32)


def mesh_roi(mesh: np.ndarray, margin: float = MESH_MARGIN) -> np.ndarray:
    """Frame -> 256 crop transform that frames a face whose landmarks are known (for tracking)."""
    xy = np.asarray(mesh, dtype=np.float64)[:N_MESH, :2]
    eye_line = xy[LEFT_EYE_OUTER] - xy[RIGHT_EYE_OUTER]
    angle = float(np.arctan2(eye_line[1], eye_line[0]))
    c, s = np.cos(angle), np.sin(angle)
    to_face = np.array([[c, s], [-s, c]])          # frame axes -> face axes
    local = xy @ to_face.T
    lo, hi = local.min(0), local.max(0)
    center = to_face.T @ ((lo + hi) / 2.0)
    return square_transform(center, float((hi - lo).max()) * margin, angle, MESH_SIZE)


def detection_roi(box: np.ndarray, points: np.ndarray | None,
                  margin: float = DETECTION_MARGIN) -> np.ndarray:
    """Frame -> 256 crop transform from a detector box (and its eye points for the roll)."""
    x0, y0, x1, y1 = np.asarray(box, dtype=np.float64)
    angle = 0.0
    if points is not None:
        eye_line = np.asarray(points, dtype=np.float64)[1] - np.asarray(points, dtype=np.float64)[0]
        angle = float(np.arctan2(eye_line[1], eye_line[0]))
    center = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0]) - 0.5
    return square_transform(center, max(x1 - x0, y1 - y0) * margin, angle, MESH_SIZE)


def presence_probability(logit: float) -> float:
    """The face flag's logit as a probability (MediaPipe applies a sigmoid)."""
    return float(1.0 / (1.0 + np.exp(-np.clip(logit, -60.0, 60.0))))


class MeshLandmarker:
    """478 MediaPipe landmarks (face mesh + irises) through ``cv2.dnn.readNetFromTFLite``."""

    name = "mesh"

    def __init__(self) -> None:
        if not LANDMARK_MODEL.is_file():
            raise AnimatorError(f"{LANDMARK_MODEL}: the shipped landmark model is missing (reinstall animator)")
        with quiet_opencv():
            self._net = cv2.dnn.readNetFromTFLite(str(LANDMARK_MODEL))
        # outputs: the landmarks (1434 values) and the face flag (one logit); a third is unused
        self._outputs = ["Identity", "Identity_1"]

    def run(self, frame_rgb: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, float]:
        """Landmarks inside the 256 crop ``M`` cuts, mapped back to frame pixels (478, 3), and
        the probability that the crop holds a face."""
        crop = cv2.warpAffine(frame_rgb, M, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        self._net.setInput(cv2.dnn.blobFromImage(crop, 1.0 / 255.0))
        points, flag = self._net.forward(self._outputs)
        out = np.asarray(points, dtype=np.float64).reshape(N_LANDMARKS, 3)
        inverse = cv2.invertAffineTransform(M)
        landmarks = np.empty((N_LANDMARKS, 3), dtype=np.float32)
        landmarks[:, :2] = out[:, :2] @ inverse[:, :2].T + inverse[:, 2]
        landmarks[:, 2] = out[:, 2] / np.sqrt(abs(np.linalg.det(M[:, :2])))
        return landmarks, presence_probability(float(np.ravel(flag)[0]))

    def locate(self, frame_rgb: np.ndarray, detection_or_box: Detection | np.ndarray) -> tuple[np.ndarray, float]:
        """(478, 3) float32 landmarks in frame pixels and the presence score, for the face a
        detection (or a bare box) marks."""
        if isinstance(detection_or_box, Detection):
            M = detection_roi(detection_or_box.box, detection_or_box.points)
        else:
            M = detection_roi(np.asarray(detection_or_box).reshape(4), None)
        first, _ = self.run(frame_rgb, M)
        return self.run(frame_rgb, mesh_roi(first))

    def locate_from_mesh(self, frame_rgb: np.ndarray, prev_mesh: np.ndarray) -> tuple[np.ndarray, float]:
        """Landmarks and presence for a face tracked from the previous frame's landmarks."""
        return self.run(frame_rgb, mesh_roi(prev_mesh))

    def landmarks(self, frame_rgb: np.ndarray, detection_or_box: Detection | np.ndarray) -> np.ndarray:
        """(478, 3) float32 in frame pixels for the face a detection (or a bare box) marks."""
        return self.locate(frame_rgb, detection_or_box)[0]

    def landmarks_from_mesh(self, frame_rgb: np.ndarray, prev_mesh: np.ndarray) -> np.ndarray:
        """(478, 3) for a face tracked from the previous frame's landmarks, without detection."""
        return self.locate_from_mesh(frame_rgb, prev_mesh)[0]


class FanLandmarker:
    """68-point landmarks from the ``face-alignment`` package (opt-in: ``pip install animator[fan]``).

    Its weights are fetched by the package on first use; where that is impossible the error
    says so instead of a network traceback.
    """

    name = "fan"

    def __init__(self, device: str = "cpu") -> None:
        try:
            import face_alignment
        except ImportError as exc:
            raise AnimatorError("--landmarks fan needs the face-alignment package "
                                "(pip install animator[fan])") from exc
        try:
            kind = getattr(face_alignment.LandmarksType, "TWO_D", None) or face_alignment.LandmarksType._2D
            self._fa = face_alignment.FaceAlignment(kind, device=device)
        except Exception as exc:  # the package downloads its weights here: any failure is the user's setup
            raise AnimatorError(f"--landmarks fan: could not load face-alignment's weights "
                                f"(they are downloaded on first use; is the network reachable?): {exc}") from exc

    def landmarks(self, frame_rgb: np.ndarray, detection_or_box: Detection | np.ndarray) -> np.ndarray:
        """(68, 3) float32 (z = 0) in frame pixels."""
        box = detection_or_box.box if isinstance(detection_or_box, Detection) else detection_or_box
        box = np.asarray(box, dtype=np.float32).reshape(4)
        found = self._fa.get_landmarks_from_image(frame_rgb, detected_faces=[box])
        if not found:
            raise AnimatorError("--landmarks fan: face-alignment found no landmarks in the box")
        points = np.zeros((68, 3), dtype=np.float32)
        points[:, :2] = np.asarray(found[0], dtype=np.float32)[:, :2]
        return points


def make_landmarker(name: str = "mesh") -> MeshLandmarker | FanLandmarker:
    if name == "mesh":
        return MeshLandmarker()
    if name == "fan":
        return FanLandmarker()
    raise AnimatorError(f"--landmarks: {name!r} is not one of mesh, fan")
