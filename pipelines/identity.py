"""Identity kept by an edit: cosine of OpenCV Zoo SFace embeddings of the input and the edit.

SFace (Apache-2.0) takes a 112x112 RGB face aligned on the detector's 5 points by a
least-squares similarity onto a fixed template, as OpenCV's ``FaceRecognizerSF.alignCrop``
does, with raw 0-255 pixel values, and gives a 128-d embedding; OpenCV calls cosine >= 0.363
"same person". OpenCV's DNN refuses the int8 file, so it runs in onnxruntime once the graph
inputs that no node uses, or that are weights, are dropped (the optional ``eval`` extra:
``pip install -e '.[eval]'``). A developer tool: the model path is always an argument.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from animator.errors import AnimatorError

ALIGNED_SIZE = 112
# OpenCV's alignCrop destination for YuNet's points: right eye, left eye, nose tip, right and
# left mouth corners, in a 112x112 image.
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
SAME_PERSON_COSINE = 0.363


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (rotation, uniform scale, shift; no reflection) mapping
    ``src`` (K,2) onto ``dst`` (K,2): Umeyama's closed form."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(sigma) @ sign) / s.var(0).sum()
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - scale * rotation @ mu_s
    return matrix


def align_face(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The 112x112 SFace input (RGB uint8) of a face with YuNet-order 5 points."""
    matrix = similarity_transform(points, TEMPLATE)
    return cv2.warpAffine(image, matrix, (ALIGNED_SIZE, ALIGNED_SIZE), flags=cv2.INTER_LINEAR)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) arrays."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


class FaceIdentity:
    """SFace embeddings of aligned faces (onnxruntime, CPU)."""

    def __init__(self, model: str | os.PathLike) -> None:
        path = Path(model)
        if not path.is_file():
            raise AnimatorError(f"{path}: no such file (the SFace ONNX model)")
        try:
            import onnx
            import onnxruntime
        except ImportError:
            raise AnimatorError("identity needs onnxruntime and onnx: pip install -e '.[eval]'") from None
        graph = onnx.load(str(path))
        weights = {t.name for t in graph.graph.initializer}
        used = {name for node in graph.graph.node for name in node.input}
        inputs = [i for i in graph.graph.input if i.name in used and i.name not in weights]
        del graph.graph.input[:]
        graph.graph.input.extend(inputs)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(graph.SerializeToString(), options,
                                                    providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def embed(self, aligned: np.ndarray) -> np.ndarray:
        """(N, 128) embeddings of (N, 112, 112, 3) RGB uint8 aligned faces."""
        blobs = np.asarray(aligned, np.float32).transpose(0, 3, 1, 2)
        return np.concatenate([self.session.run(None, {self.input: blob[None]})[0] for blob in blobs]
                              ) if len(blobs) else np.zeros((0, 128), np.float32)
