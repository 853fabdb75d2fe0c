"""Motion training mode: the generator learns on what the renderer feeds it, the source crop
warped by an AU rig towards the target AUs, and the cycle comes back the same way.

The training loop only needs one function, :data:`WarpBatch`::

    warp(crops (B,3,H,W), landmarks (B,P,2) crop pixels, source (B,17), target (B,17))
        -> (warped crops (B,3,H,W), moved landmarks (B,P,2))

differentiable in ``crops`` (the cycle warps the generated face back). :class:`LinearRig` is
one such function: per-AU landmark displacements fitted on the training set
(:func:`fit_linear_rig`), spread into a dense field by normalised Gaussian weights on a coarse
grid and applied with ``grid_sample``. Any motion stage with the same signature (the
renderer's rig) can replace it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F

from animator.aus import N_AUS
from animator.errors import AnimatorError

WarpBatch = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
                     tuple[torch.Tensor, torch.Tensor]]

RIG_FILE = "motion_rig.npz"
LANDMARKS_FILE = "landmarks.npz"


# ---------------------------------------------------------------- fitting (pure)

def fit_linear_rig(landmarks: np.ndarray, aus: np.ndarray, ridge: float = 1.0) -> np.ndarray:
    """Per-AU landmark displacement (17, P, 2), crop pixels per AU unit, by ridge regression of
    the landmarks on the AU labels (both centred): landmarks ~ mean + aus @ rig.

    Constant AUs (never seen moving) get zero displacement."""
    x = np.asarray(aus, np.float64)
    y = np.asarray(landmarks, np.float64).reshape(len(x), -1)
    if len(x) < 2:
        raise AnimatorError("fitting a rig needs at least two labelled faces")
    x = x - x.mean(0)
    y = y - y.mean(0)
    gram = x.T @ x + ridge * np.eye(x.shape[1])
    rig = np.linalg.solve(gram, x.T @ y)
    rig[x.std(0) < 1e-6] = 0.0
    return rig.reshape(N_AUS, -1, 2).astype(np.float32)


def mirror_field(field: torch.Tensor) -> torch.Tensor:
    """The displacement field (B,H,W,2) of the left-right mirrored image."""
    return field.flip(2) * field.new_tensor([-1.0, 1.0])


# ---------------------------------------------------------------- warping (torch)

def dense_displacement(points: torch.Tensor, moves: torch.Tensor, size: int, sigma: float,
                       grid: int) -> torch.Tensor:
    """(B,size,size,2) pixel displacement from sparse point moves (B,P,2).

    Gaussian weights of the points (width ``sigma`` px) on a ``grid`` x ``grid`` lattice,
    normalised where they sum to more than 1 (inside the landmark cloud: a weighted mean of
    the moves) and not elsewhere (so the field fades to zero away from the face), then
    bilinearly upsampled."""
    step = size / grid
    axis = (torch.arange(grid, device=points.device, dtype=torch.float32) + 0.5) * step - 0.5
    lattice = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(1, -1, 2)
    d2 = torch.cdist(lattice.expand(points.shape[0], -1, -1), points.float()).square()
    weights = torch.exp(-d2 / (2 * sigma ** 2))                      # (B, G*G, P)
    field = weights @ moves.float() / weights.sum(-1, keepdim=True).clamp_min(1.0)
    field = field.reshape(-1, grid, grid, 2).permute(0, 3, 1, 2)
    field = F.interpolate(field, size=(size, size), mode="bilinear", align_corners=False)
    return field.permute(0, 2, 3, 1)


def warp_images(images: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """Move image content by ``field`` (B,H,W,2) pixels: out(p) = in(p - field(p))."""
    b, _, h, w = images.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=images.device, dtype=torch.float32),
                            torch.arange(w, device=images.device, dtype=torch.float32), indexing="ij")
    source = torch.stack([xs, ys], -1).unsqueeze(0) - field.float()
    normalised = torch.stack([(source[..., 0] + 0.5) * 2 / w - 1, (source[..., 1] + 0.5) * 2 / h - 1], -1)
    out = F.grid_sample(images.float(), normalised, mode="bilinear", padding_mode="border",
                        align_corners=False)
    return out.to(images.dtype)


@dataclass
class LinearRig:
    """Landmarks move by (target - source) @ displacement; the crop follows them."""

    displacement: torch.Tensor  # (17, P, 2) crop pixels per AU unit at ``size``
    size: int
    sigma: float = 5.0
    grid: int = 32

    def moves(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B,P,2) landmark displacements in pixels at ``size``."""
        delta = (target - source).float()
        return torch.einsum("ba,apc->bpc", delta, self.displacement.to(delta.device))

    def __call__(self, crops: torch.Tensor, landmarks: torch.Tensor, source: torch.Tensor,
                 target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale = crops.shape[-1] / self.size
        moves = self.moves(source, target) * scale
        field = dense_displacement(landmarks, moves, crops.shape[-1], self.sigma * scale, self.grid)
        return warp_images(crops, field), landmarks + moves

    def to(self, device: torch.device) -> LinearRig:
        return LinearRig(self.displacement.to(device), self.size, self.sigma, self.grid)


# ---------------------------------------------------------------- files in a training set

def save_rig(path: str | os.PathLike | BinaryIO, displacement: np.ndarray, size: int, source: str) -> None:
    np.savez_compressed(path, displacement=displacement.astype(np.float32), size=np.int32(size),
                        source=np.array(source))


def load_rig(path: str | os.PathLike) -> LinearRig:
    path = Path(path)
    if not path.is_file():
        raise AnimatorError(f"{path}: no such file (--motion rig needs the set's {RIG_FILE}; "
                            f"build the set with pipelines.build_trainset)")
    with np.load(path) as data:
        displacement = data["displacement"]
        size = int(data["size"])
    if displacement.ndim != 3 or displacement.shape[0] != N_AUS or displacement.shape[2] != 2:
        raise AnimatorError(f"{path}: expected a (17, P, 2) displacement, got {displacement.shape}")
    return LinearRig(torch.from_numpy(displacement), size)


def save_landmarks(path: str | os.PathLike | BinaryIO, names: list[str], landmarks: np.ndarray,
                   indices: np.ndarray | None = None) -> None:
    """Crop-pixel landmarks (N,P,2) per sample name, float16 (1/16 px at 128 px) to travel;
    ``indices``: which points of the landmark model they are (a rig on the full model can be
    cut to them)."""
    indices = np.arange(landmarks.shape[1]) if indices is None else np.asarray(indices)
    np.savez_compressed(path, names=np.array(names), landmarks=landmarks.astype(np.float16),
                        indices=indices.astype(np.int32))


def load_landmarks(path: str | os.PathLike, names: list[str]) -> np.ndarray:
    """(len(names), P, 2) float32 in the order of ``names``; every name must be present."""
    path = Path(path)
    if not path.is_file():
        raise AnimatorError(f"{path}: no such file (--motion rig needs crop landmarks per face)")
    with np.load(path) as data:
        index = {str(n): i for i, n in enumerate(data["names"])}
        points = data["landmarks"].astype(np.float32)
    missing = [n for n in names if n not in index]
    if missing:
        raise AnimatorError(f"{path}: no landmarks for {len(missing)} face(s), e.g. {missing[0]}")
    return points[[index[n] for n in names]]
