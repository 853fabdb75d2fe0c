"""Does the rig move the brows as far as real skin moves? Optical flow against the rig, on clips.

    python -m pipelines.rig_skin CLIP.mp4... [--cache DIR]

The rig is fitted on the landmark model's points, which could themselves under-read how far
real skin moves; this follows the skin without them. Each clip is tracked and read as
:mod:`pipelines.fit_rig` reads it. Per brow AU (AU01, AU02, AU04): from the clip's frame that
shows the AU least to each frame reading it at least :data:`RISE` higher (up to
:data:`PAIRS_PER_CLIP` of them, evenly spread), the brow points are followed by pyramidal
Lucas-Kanade flow (started from the landmark model's guess, kept where flowing back lands
within :data:`BACK_PX`), put in the face frame, and projected on the rig's move for the change
in readings. Prints JSON: per AU, the median share of the rig's move the skin made (``skin``)
and the landmark model found (``landmarks``), overall and per clip. (The lids are left out:
flow does not follow a lid margin sliding over the eye.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from animator.aus import AU_NAMES
from animator.estimate.geometry import normalise_pose
from pipelines import measure_clips
from pipelines.motion_eval import share_of_move

BROW_AUS = ("AU01", "AU02", "AU04")
RISE = 2.0             # how much higher a frame must read the AU than the clip's least
PAIRS_PER_CLIP = 25
BACK_PX = 1.5          # flow's forward-backward error allowed, frame px
TRACKED_SHARE = 0.6    # a pair counts when this share of its points were followed
MOVES_AT_LEAST = 0.01  # inter-ocular units: the points whose rig move is compared
FLOW = {"winSize": (21, 21), "maxLevel": 2, "flags": cv2.OPTFLOW_USE_INITIAL_FLOW}


def pair_shares(grey_rest: np.ndarray, grey_moved: np.ndarray, mesh_rest: np.ndarray, mesh_moved: np.ndarray,
                asked: np.ndarray, points: list[int], template: np.ndarray) -> tuple[float, float] | None:
    """(skin, landmarks): the shares of the rig's move ``asked`` ((K, 2), face frame, for the
    mesh ``points``) that the skin made between two pictures (followed by flow from the first
    mesh's points) and that the second mesh found; None when too few points were followed."""
    start = mesh_rest[points, :2].astype(np.float32).reshape(-1, 1, 2)
    guess = mesh_moved[points, :2].astype(np.float32).reshape(-1, 1, 2)
    ahead, ok, _ = cv2.calcOpticalFlowPyrLK(grey_rest, grey_moved, start, guess.copy(), **FLOW)
    back, ok_back, _ = cv2.calcOpticalFlowPyrLK(grey_moved, grey_rest, ahead, start.copy(), **FLOW)
    followed = (ok.ravel() == 1) & (ok_back.ravel() == 1) & (np.linalg.norm((back - start)[:, 0], axis=1) < BACK_PX)
    if followed.mean() < TRACKED_SHARE:
        return None
    n = len(template)
    flowed = np.array(mesh_moved[:n], np.float64)   # the second mesh, its points where the flow took them
    flowed[points, :2] = ahead[:, 0]                # (the brows are none of the pose-fitting points)
    before, skin, found = normalise_pose(np.stack([mesh_rest[:n], flowed, mesh_moved[:n]]), template)[:, points, :2]
    return (share_of_move((skin - before)[followed], asked[followed], MOVES_AT_LEAST),
            share_of_move((found - before)[followed], asked[followed], MOVES_AT_LEAST))


def clip_pairs(clip, video: Path, au: str, rig, points: list[int]) -> list[tuple[float, float]]:
    """:func:`pair_shares` for one clip's frame pairs (its least-showing frame -> the risen ones)."""
    from pipelines.fit_rig import observed_frames  # noqa: PLC0415

    k = AU_NAMES.index(au)
    rest = int(np.argmin(clip.aus[:, k] + clip.aus.sum(1) / len(AU_NAMES)))
    risen = np.flatnonzero(clip.aus[:, k] - clip.aus[rest, k] >= RISE)
    if len(risen) > PAIRS_PER_CLIP:
        risen = risen[np.linspace(0, len(risen) - 1, PAIRS_PER_CLIP).astype(int)]
    greys = {i: cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
             for i, rgb in observed_frames(video, clip.times, {rest, *risen.tolist()}).items()}
    shares = [pair_shares(greys[rest], greys[t], clip.landmarks[rest], clip.landmarks[t],
                          np.tensordot(clip.aus[t] - clip.aus[rest], rig.basis[:, points, :2], 1),
                          points, rig.template) for t in risen]
    return [pair for pair in shares if pair is not None]


def summary(pairs: list[tuple[float, float]]) -> dict:
    """How many pairs, and the median (skin, landmarks) shares (None without pairs)."""
    medians = np.median(pairs, axis=0).round(2).tolist() if pairs else [None, None]
    return {"pairs": len(pairs), "skin": medians[0], "landmarks": medians[1]}


def measure(args: argparse.Namespace) -> dict:
    """The brows' skin and landmark moves against the rig's, per AU and clip."""
    from animator.estimate import AUEstimator  # noqa: PLC0415
    from animator.estimate.geometry import MESH  # noqa: PLC0415
    from animator.motion.rig import AURig  # noqa: PLC0415
    from pipelines.fit_rig import load_clip  # noqa: PLC0415

    estimator, rig = AUEstimator.default(), AURig.default()
    brows = [i for side in (*MESH.brow_inner, *MESH.brow_outer) for i in side]
    clips = [(path, load_clip(path, estimator, args.cache)) for path in args.clips]
    report = {"method": __doc__.split("\n\n")[2].replace("\n", " "), "per_au": {}}
    for au in BROW_AUS:
        per_clip = {path.stem: clip_pairs(clip, path, au, rig, brows) for path, clip in clips}
        pairs = [pair for shares in per_clip.values() for pair in shares]
        report["per_au"][au] = {**summary(pairs), "per_clip": {name: summary(shares) for name, shares
                                                                in per_clip.items() if shares}}
    return report


def main(argv: list[str] | None = None) -> int:
    return measure_clips(__doc__.splitlines()[0], measure, argv)


if __name__ == "__main__":
    sys.exit(main())
