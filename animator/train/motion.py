"""Motion training mode: the generator learns on what the renderer feeds it, the source crop
warped by the AU rig towards the target AUs, and the cycle comes back the same way.

The training loop needs one object, :class:`WarpBatch`::

    warp(crops (B,3,H,W), landmarks (B,P,2) crop pixels, source (B,17), target (B,17))
        -> (warped crops, landmark moves (B,P,2))
    warp.apply(crops, landmarks, moves) -> crops moved by ``moves``

both differentiable in ``crops`` (the cycle warps the generated face back with ``-moves``
from the moved landmarks). :class:`LinearRig` is one: the renderer's AU rig
(animator.motion.rig, shipped in animator/assets/au_rig.json) expressed in crop pixels for
the set's mean aligned face (:func:`rig_in_crop`), applied as the renderer does (an AU is
added as far as the target exceeds the source, and the expressions motion takes back --
:data:`animator.motion.move.LOWERED` -- are taken back to the target or the resting reading,
whichever is higher; speech and blinks are never taken back), with the landmark moves
spread into a dense field by Gaussian weights on a coarse grid and applied with
``grid_sample`` on the GPU. What it leaves out of the render-time stage: per-face head pose
(crops are aligned, so one similarity serves all), the lid and lip contour clamps (a relaxing
smile's lips kept together, a relaxing lid stopped at the iris, a closing eye's lids kept), the still
eyeballs under moving lids with the eyes' painting (animator.motion.eyes) and the
mouth-cavity fill: what they paint, the generator learns to paint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from animator.aus import N_AUS
from animator.errors import AnimatorError
from animator.motion.move import LOWERED, REST_READING


class WarpBatch(Protocol):
    def __call__(self, crops: torch.Tensor, landmarks: torch.Tensor, source: torch.Tensor,
                 target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def apply(self, crops: torch.Tensor, landmarks: torch.Tensor, moves: torch.Tensor) -> torch.Tensor: ...


RIG_FILE = "motion_rig.npz"
LANDMARKS_FILE = "landmarks.npz"


# ---------------------------------------------------------------- the rig in crop pixels (pure)

def rig_in_crop(basis: np.ndarray, template: np.ndarray, mean_face: np.ndarray,
                stable: list[int], indices: np.ndarray) -> np.ndarray:
    """(17, P, 2) crop-pixel displacement per AU unit of the points ``indices`` for a face
    whose landmarks are ``mean_face`` (K >= 468, 3) in crop pixels.

    ``basis`` (17, 468, 3) is in the template's face frame (animator.motion.rig.AURig); as
    AURig.displace does, a face-frame move d is d R / s in the crop, with (s, R) the
    similarity that puts the face onto the template on its ``stable`` points."""
    from animator.estimate.geometry import umeyama

    face = np.asarray(mean_face, np.float64)[: basis.shape[1]]
    scale, rotation, _ = umeyama(face[stable], np.asarray(template, np.float64)[stable])
    in_crop = np.asarray(basis, np.float64) @ rotation / scale
    return in_crop[:, indices, :2].astype(np.float32)


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
    """Landmarks move by the AU change the renderer's motion stage makes (``as_rendered``:
    what the target adds, less the :data:`~animator.motion.move.LOWERED` expressions taken
    back) or by all of target - source, times the displacement; the crop follows them."""

    displacement: torch.Tensor  # (17, P, 2) crop pixels per AU unit at ``size``
    size: int
    sigma: float = 5.0
    grid: int = 32
    as_rendered: bool = True

    def moves(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B,P,2) landmark moves in pixels at ``size``."""
        source, target = source.float(), target.float()
        delta = target - source
        if self.as_rendered:
            lowered = torch.zeros(N_AUS, dtype=torch.bool, device=delta.device)
            lowered[list(LOWERED)] = True
            taken = (source - target.clamp_min(REST_READING)).clamp_min(0.0) * lowered
            delta = delta.clamp_min(0.0) - taken
        return torch.einsum("ba,apc->bpc", delta, self.displacement.to(delta.device))

    def apply(self, crops: torch.Tensor, landmarks: torch.Tensor, moves: torch.Tensor) -> torch.Tensor:
        field = dense_displacement(landmarks, moves, crops.shape[-1], self.sigma * crops.shape[-1] / self.size,
                                   self.grid)
        return warp_images(crops, field)

    def __call__(self, crops: torch.Tensor, landmarks: torch.Tensor, source: torch.Tensor,
                 target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        moves = self.moves(source, target) * (crops.shape[-1] / self.size)
        return self.apply(crops, landmarks, moves), moves

    def to(self, device: torch.device) -> LinearRig:
        return LinearRig(self.displacement.to(device), self.size, self.sigma, self.grid, self.as_rendered)


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
