"""Does a slowly rising AU change the face smoothly? Prints JSON.

    python -m pipelines.motion_ramps INPUT... [--aus AU05,AU07,AU26] [--to 1.6] [--step 0.05]

Each input is a photo or a clip (its first frame). Its face's AUs are read, then each AU is
raised from the face's own value in small steps. The motion stage moves the face at each step,
as ``animator render`` does over a keyframed ramp, and the mean change of the face's pixels
from one step to the next is measured. Whatever the stage does only past a threshold (holding
the eyeball, painting it or the mouth's tear) shows as one step much larger than the steps
around it. Per input and AU, the report gives ``jump``, the largest step over the larger of
its two neighbours (about 1: smooth), and ``at``, the AU's rise where that step starts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from animator.aus import AU_NAMES
from animator.errors import AnimatorError
from pipelines import print_report

RISE_TO = 1.6
STEP = 0.05


def ramp_steps(image: np.ndarray, mesh: np.ndarray, current: np.ndarray, au: str, rig,
               rises: np.ndarray) -> np.ndarray:
    """(len(rises) - 1,) the mean change of the face's pixels (inside the mesh's bounding box)
    between consecutive edits of ``image``, its ``au`` raised by each of ``rises`` above
    ``current`` (the face's AUs, whose mesh is ``mesh``)."""
    from animator.motion.move import move_face  # noqa: PLC0415

    (x0, y0), (x1, y1) = mesh[:468, :2].min(0).astype(int), mesh[:468, :2].max(0).astype(int)
    k = AU_NAMES.index(au)
    previous, steps = None, []
    for rise in rises:
        target = current.copy()
        target[k] = current[k] + rise
        face = move_face(image, mesh, current, target, rig)[0][y0:y1, x0:x1].astype(np.float32)
        if previous is not None:
            steps.append(float(np.abs(face - previous).mean()))
        previous = face
    return np.array(steps)


def jumps(steps: np.ndarray) -> np.ndarray:
    """(len(steps) - 2,) each inner step over the larger of its two neighbours."""
    return steps[1:-1] / np.maximum(np.maximum(steps[:-2], steps[2:]), 1e-6)


def first_frame(path: Path) -> np.ndarray:
    """A photo, or a clip's first frame (RGB uint8)."""
    from animator.media.decode import iter_frames  # noqa: PLC0415
    from animator.media.images import is_image, read_image  # noqa: PLC0415

    if is_image(path):
        return read_image(path)
    frame = next(iter(iter_frames(path)), None)
    if frame is None:
        raise AnimatorError(f"{path}: no frames")
    return frame.rgb


def measure(args: argparse.Namespace) -> dict:
    """Each input's and AU's largest ramp step over its neighbours."""
    from animator.estimate import AUEstimator  # noqa: PLC0415
    from animator.faces.detect import FaceDetector  # noqa: PLC0415
    from animator.faces.landmarks import MeshLandmarker  # noqa: PLC0415
    from animator.motion.rig import AURig  # noqa: PLC0415
    from pipelines.motion_eval import read_mesh  # noqa: PLC0415

    aus = [name.strip().upper() for name in args.aus.split(",")]
    unknown = [name for name in aus if name not in AU_NAMES]
    if unknown:
        raise AnimatorError(f"--aus: unknown {', '.join(unknown)}")
    rises = np.arange(0.0, args.to + args.step / 2, args.step) if args.step > 0 else np.zeros(0)
    if len(rises) < 4:
        raise AnimatorError(f"--to {args.to} --step {args.step}: a ramp needs at least three steps up")
    detector, landmarker, estimator, rig = FaceDetector(), MeshLandmarker(), AUEstimator.default(), AURig.default()
    report = {"step": args.step, "to": args.to, "inputs": {}}
    for path in args.inputs:
        image = first_frame(path)
        mesh = read_mesh(image, detector, landmarker)
        if mesh is None:
            raise AnimatorError(f"{path}: no face found")
        current = estimator.estimate(mesh)
        per_au = {}
        for au in aus:
            ratio = jumps(ramp_steps(image, mesh, current, au, rig, rises))
            worst = int(np.argmax(ratio))
            per_au[au] = {"jump": round(float(ratio[worst]), 2), "at": round(float(rises[worst + 1]), 2)}
        report["inputs"][str(path)] = per_au
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", type=Path, nargs="+", help="Photos or clips (their first frame).")
    parser.add_argument("--aus", default=",".join(AU_NAMES), help="Comma-separated AUs to ramp.")
    parser.add_argument("--to", type=float, default=RISE_TO, help="How far each AU rises.")
    parser.add_argument("--step", type=float, default=STEP)
    args = parser.parse_args(argv)
    return print_report(lambda: measure(args))


if __name__ == "__main__":
    sys.exit(main())
