"""Fit the AU rig (``animator/assets/au_rig.json``) from talking and acting clips.

    python -m pipelines.fit_rig CLIP.mp4... -o animator/assets/au_rig.json [--cache DIR]

Each clip is tracked as ``animator render`` tracks it (largest face, smoothed tracks), its AUs
are read by the shipped estimator and smoothed in time as the renderer smooths an actor's AUs,
and its meshes are pose-normalised onto the estimator's template. The ridge strength is chosen
by leaving one clip (one person) out; the rig is then fitted on all clips, its units set so the
estimator reads each AU back on the clips' most neutral frames, and written with its
provenance, including the held-out scores. Prints the provenance as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from animator.errors import AnimatorError
from animator.estimate import AUEstimator, smooth_au_series
from animator.estimate.aus import CALIBRATION_FORMAT
from animator.estimate.geometry import normalise_pose
from animator.motion.fit import (BUNCHED_AREA, MIN_AREA, PRIOR_SIGMA, SUPPORT, Clip, blink_closure_held_out,
                                 blink_closures, calibrate_units, fit_blink_closure,
                                 fit_rig_basis, geometric_prior, leave_one_out, support_mask, unfold)
from animator.motion.rig import BLINK, AURig
from animator.outputs import atomic_output
from pipelines import print_report
from pipelines.render import track_faces

RIDGES = (0.001, 0.003, 0.01, 0.03, 0.1)
RESTING_FRAMES = 5


def load_clip(video: Path, estimator: AUEstimator, cache: Path | None) -> Clip:
    """The clip's pose-normalised meshes and AU readings, each frame's own and smoothed (the
    meshes cached per file content)."""
    if not video.is_file():
        raise AnimatorError(f"{video}: no such file")
    digest = hashlib.sha256(video.read_bytes()).hexdigest()[:16]
    cached = cache / f"{video.stem}-{digest}.npz" if cache else None
    if cached and cached.exists():
        data = np.load(cached)
        meshes, times = data["meshes"], data["times"]
    else:
        tracks, _ = track_faces(video, None, None, "largest", quiet=True)
        observations = [o for o in tracks.observations if o.mesh is not None]
        if not observations:
            raise AnimatorError(f"{video}: no face found")
        meshes = np.stack([o.mesh for o in observations])
        times = np.array([o.time for o in observations])
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cached, meshes=meshes, times=times)
    readings = estimator.estimate(meshes)
    aus = smooth_au_series(times, readings)
    faces = normalise_pose(meshes[:, : len(estimator.template)], estimator.template)
    return Clip(video.stem, faces.astype(np.float32), aus.astype(np.float64), meshes, readings, times)


def observed_frames(video: Path, times: np.ndarray, wanted: set[int]) -> dict[int, np.ndarray]:
    """The RGB pictures of a clip's tracked observations ``wanted`` (indices into ``times``,
    :class:`Clip`'s), matched to the video's frames by time."""
    from animator.media.decode import iter_frames  # noqa: PLC0415

    found = {}
    for frame in iter_frames(video):
        k = int(np.argmin(np.abs(times - frame.time)))
        if k in wanted and abs(times[k] - frame.time) < 1e-3:
            found[k] = frame.rgb
    return found


def measure(args: argparse.Namespace) -> dict:
    """Fit the rig on the clips, write it to ``args.out`` and return its provenance (the report)."""
    estimator = AUEstimator.default()
    clips = [load_clip(path, estimator, args.cache) for path in args.clips]
    support = support_mask(estimator.template)
    prior = geometric_prior(estimator.template, support)
    template = estimator.template
    held_out = {ridge: leave_one_out(clips, template, support, ridge, prior) for ridge in RIDGES}
    best = max(RIDGES, key=lambda r: np.mean(list(held_out[r].values())))
    basis = fit_rig_basis(clips, template, support, best, prior)
    resting = np.concatenate([clip.resting(RESTING_FRAMES) for clip in clips])
    closures = [blink_closures(c.faces, c.readings[:, BLINK]) for c in clips]
    blink_closure = fit_blink_closure(closures)
    units = calibrate_units(basis, resting, estimator, blink_closure)
    basis = unfold(basis * units[:, None, None], template, support)
    au_spread = np.concatenate([c.centred()[1] for c in clips]).std(0)
    report = {
        "method": "per-landmark ridge regression of within-clip landmark changes on AU "
                  "changes, each AU restricted to its FACS region, shrunk towards the prior, "
                  "made bilaterally symmetric and smoothed (animator.motion.fit)",
        "clips": {c.name: len(c.faces) for c in clips},
        "au_estimator": {"calibration": "animator/assets/au_calibration.json",
                         "format": estimator.provenance.get("format", CALIBRATION_FORMAT),
                         "sources": {n: estimator.rules[n].feature for n in SUPPORT}},
        "support": {name: list(regions) for name, regions in SUPPORT.items()},
        "prior": f"geometric_prior (sigma {PRIOR_SIGMA}): the smallest smooth motion of "
                 "each AU's region that grows its FACS measure",
        "units": {"method": "calibrate_units: per AU, the factor that makes +2 read back as "
                            f"+2 (median) on the {RESTING_FRAMES} most neutral frames of each clip",
                  "factors": {n: round(float(f), 3) for n, f in zip(SUPPORT, units)}},
        "unfolded": f"unfold: at intensity 5 alone, no mesh triangle below {MIN_AREA} of its area "
                    f"({BUNCHED_AREA} between the brows)",
        "blink_closure": {
            "method": "fit_blink_closure: per clip, the median share of the open eye's lid "
                      "gap closed in frames the estimator reads at AU45 1, 2, 3, 4 (+-0.5); "
                      "the median over clips, made rising; 5 closes the eye",
            "knots": np.round(blink_closure, 3).tolist(),
            "held_out_error": blink_closure_held_out(closures, [c.name for c in clips])},
        "ridge": best,
        "held_out_explained": {str(r): {k: round(v, 3) for k, v in s.items()} for r, s in held_out.items()},
        "au_change_std": {name: round(float(s), 3) for name, s in zip(SUPPORT, au_spread)},
    }
    rig = AURig(estimator.template, basis, report, blink_closure)
    with atomic_output(args.out, args.clips, args.overwrite) as tmp:
        Path(tmp).write_text(json.dumps(rig.to_dict()) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, help="Keep each clip's tracked meshes here.")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    return print_report(lambda: measure(args))


if __name__ == "__main__":
    sys.exit(main())
