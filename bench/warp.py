"""Benchmark the motion stage (rig -> dense field -> full-resolution warp -> eyes and mouth, behind
spectacle rims when the face wears glasses) per face; prints one JSON object.

    python bench/warp.py [CLIP] [--frames 24] [--repeats 5]

The clip's first frames are tracked as ``animator render`` tracks them; every face is then
moved to each preset below from its own AUs, ``--repeats`` times. Reported per target: the
minimum and median milliseconds per face for the whole stage and for each of its steps (the
minimum is the figure to compare: the machine may be shared), and the stage's CPU time (this
process's, less sensitive to waiting for a busy CPU). The field's size and the frame's size
are reported too, and whether the clip's face wears glasses: its rims are found once, on the
first frame, as ``animator render`` finds them (not timed), and ``rims`` times filling them
and putting them back.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_CLIP = REPO / "examples" / "single_face.mp4"
TARGETS = ("happy", "surprise", "anger", "blink", "AU26=4")


def faces(clip: Path, frames: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(frame, mesh) for the largest face of the clip's first ``frames`` frames."""
    from animator.media.decode import iter_frames
    from pipelines.render import track_faces

    tracks, _ = track_faces(clip, None, None, "largest", quiet=True, smooth_mesh=True)
    result = []
    for frame in iter_frames(clip):
        if frame.index >= frames:
            break
        result += [(frame.rgb, obs.mesh) for obs in tracks.for_frame(frame.index)]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from animator.aus import parse_target
    from animator.estimate import AUEstimator
    from animator.motion.eyes import paint_eyes, picture_blur
    from animator.motion.mouth import fill_mouth, mouth_tear
    from animator.motion.move import face_field, motion_aus
    from animator.motion.rig import AURig
    from animator.motion.rims import RimFinder, behind_rims, without_rims
    from animator.motion.warp import apply_field

    rig, estimator = AURig.default(), AUEstimator.default()
    samples = faces(args.clip, args.frames)
    rims = RimFinder().find(*samples[0])
    report = {"clip": str(args.clip), "frame_size": list(samples[0][0].shape[:2][::-1]),
              "faces": len(samples), "repeats": args.repeats, "glasses": rims is not None, "ms_per_face": {}}
    for spec in TARGETS:
        target = parse_target(spec)
        steps: dict[str, list[float]] = {"rig": [], "field": [], "warp": [], "paint": [], "rims": [],
                                         "total": [], "total_cpu": []}
        for _ in range(args.repeats):
            for rgb, mesh in samples:
                delta = motion_aus(estimator.estimate(mesh), target, rig)
                cpu = time.process_time()
                t0 = time.perf_counter()
                moved = rig.displace(mesh, delta)
                t1 = time.perf_counter()
                mouth = mouth_tear(mesh[:468], moved)
                field = face_field(rgb.shape, mesh[:468], moved, mouth)
                t2 = time.perf_counter()
                on_rims = None if rims is None else rims.in_frame(mesh, field.box)
                skin = rgb if on_rims is None else without_rims(rgb, on_rims[1], on_rims[0])
                t3 = time.perf_counter()
                warped = apply_field(skin, field)
                t4 = time.perf_counter()
                blur = functools.cache(functools.partial(picture_blur, rgb, mesh))
                warped = fill_mouth(paint_eyes(skin, warped, mesh, moved, blur), moved, mouth, blur)
                t5 = time.perf_counter()
                if on_rims is not None:
                    behind_rims(rgb, warped, on_rims[1], on_rims[0])
                t6 = time.perf_counter()
                cpu = time.process_time() - cpu
                for name, seconds in zip(steps, (t1 - t0, t2 - t1, t4 - t3, t5 - t4, t3 - t2 + t6 - t5, t6 - t0, cpu)):
                    steps[name].append(seconds * 1e3)
        report["ms_per_face"][spec] = {name: {"min": round(min(v), 3), "median": round(statistics.median(v), 3)}
                                       for name, v in steps.items()}
        report["field_size"] = list(field.offsets.shape[:2][::-1])
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
