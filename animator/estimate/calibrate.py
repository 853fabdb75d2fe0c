"""Refit the AU calibration and write ``animator/assets/au_calibration.json``.

    python -m animator.estimate.calibrate --data CALIBRATION_SET  # e.g. the au-calibration/eric_andre folder

Data: 81 consecutive 128x128 face crops of one person with OpenFace 2 intensities (aus.csv).
The crops cut the chin at the edge, so each is padded with black (a photo has background
around a face) before the shipped detector and face-mesh model run on it.

Method, per AU and per layout (the 468-point mesh, and its 68-point iBUG subset):
- linear: least squares ``OpenFace ~ gain * measure + b``; isotonic: a monotone
  (pool-adjacent-violators) fit with the linear gain as the slope beyond the data. Either is
  used where OpenFace varies in the set (std >= 0.25), the slope is positive (the sign FACS
  predicts) and its cross-validated Pearson r is at least 0.4; the better of the two is kept;
- prior: otherwise ``slope = 5 / PRIOR_SPAN`` (the measure's change at intensity 5, a
  FACS-geometry estimate in inter-ocular units) from a zero at the 90th percentile of the
  measure over frames where OpenFace scores the AU below 0.5 (absent or trace), or at the
  template face's value where that is higher (one person's anatomy alone would put, e.g., a
  narrow-eyed person's upper-lid zero where wider eyes read as AU05);
- unobservable: AUs in :data:`animator.estimate.aus.UNOBSERVABLE` (and, for 68 points,
  those whose measure that layout cannot compute): reported as 0.
Cross-validation leaves out contiguous blocks (9 blocks of 9 frames): neighbouring frames of
one video are near duplicates, so a random split would overstate agreement.

The pose template is the face mesh of scikit-image's astronaut photo (Eileen Collins, public
domain) in its own canonical frame, so the shipped file holds no calibration-set data beyond
the fitted numbers.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import isotonic_regression

from animator.aus import AU_MAX, AU_NAMES, N_AUS
from animator.errors import AnimatorError
from animator.estimate import aus as au_table
from animator.estimate import geometry
from animator.estimate.aus import AU_MEASURES, AUMap, au_map_to_dict
from animator.media.images import read_image

PAD = 32
N_BLOCKS = 9
MIN_STD, MIN_CV_R = 0.25, 0.4

# Measure change (inter-ocular units; 1 IOD ~ 62 mm in adults) at intensity 5, from the
# movements FACS describes at their maximum: brows rise ~10 mm, lids ~4 mm, lips and jaw more.
PRIOR_SPAN: dict[str, float] = {
    "AU01": 0.16, "AU02": 0.16, "AU04": 0.15, "AU05": 0.06, "AU06": 0.08, "AU07": 0.05,
    "AU09": 0.08, "AU10": 0.10, "AU12": 0.25, "AU14": 0.10, "AU15": 0.10, "AU17": 0.10,
    "AU20": 0.13, "AU23": 0.12, "AU25": 0.30, "AU26": 0.25, "AU45": 0.30,
}


@dataclass
class CalibrationSet:
    files: list[str]
    meshes: np.ndarray   # (N, 468, 3) frame pixels of the padded crops
    aus: np.ndarray      # (N, 17) OpenFace intensities


def load_set(data: Path, detector, landmarker) -> CalibrationSet:
    """Run the shipped detector and mesh on every crop listed in ``data/aus.csv``."""
    table = data / "aus.csv"
    if not table.is_file():
        raise AnimatorError(f"{table}: no such file (the calibration set is needed)")
    with table.open() as handle:
        rows = list(csv.DictReader(handle))
    files, meshes = [], []
    for row in rows:
        rgb = cv2.copyMakeBorder(read_image(data / row["file"]), PAD, PAD, PAD, PAD,
                                 cv2.BORDER_CONSTANT, value=(0, 0, 0))
        found = detector.detect(rgb)
        h, w = rgb.shape[:2]
        target = found[0] if found else np.array([PAD, PAD, w - PAD, h - PAD], np.float32)
        files.append(row["file"])
        meshes.append(landmarker.landmarks(rgb, target))
    values = np.array([[float(r[f"{n}_r"]) for n in AU_NAMES] for r in rows], dtype=np.float64)
    return CalibrationSet(files, np.asarray(meshes, dtype=np.float64), values)


def blocks(n: int, n_blocks: int = N_BLOCKS) -> list[np.ndarray]:
    """Contiguous folds: consecutive frames are near duplicates and must not straddle a split."""
    return np.array_split(np.arange(n), n_blocks)


def fit_au(measure: np.ndarray, target: np.ndarray, name: str, method: str,
           neutral: float = -np.inf) -> tuple[AUMap, str]:
    """One AU's map from training frames and the method actually used: "linear" and
    "isotonic" fall back to "prior" where OpenFace barely varies or the slope is not positive.
    ``neutral`` (the template face's measure) raises a prior's zero where that face is higher.
    """
    if method in ("linear", "isotonic") and target.std() >= MIN_STD and measure.std() > 0:
        gain, offset = np.polyfit(measure, target, 1)
        if gain > 0:
            zero = -offset / gain
            if method == "linear":
                return AUMap(np.array([[zero, 0.0], [zero + AU_MAX / gain, AU_MAX]]), float(gain)), method
            return AUMap(_isotonic_knots(measure, target), float(gain)), method
    absent = measure[target < 0.5]
    zero = max(float(np.percentile(absent if len(absent) >= 5 else measure, 90)), neutral)
    span = PRIOR_SPAN[name]
    return AUMap(np.array([[zero, 0.0], [zero + span, AU_MAX]]), AU_MAX / span), "prior"


def _isotonic_knots(measure: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators fit, one knot per plateau at its mean measure."""
    order = np.argsort(measure, kind="stable")
    fitted = isotonic_regression(target[order]).x
    starts = np.flatnonzero(np.r_[True, np.diff(fitted) > 1e-9])
    xs = np.add.reduceat(measure[order], starts) / np.diff(np.r_[starts, len(order)])
    return np.column_stack([xs, fitted[starts]])


def cross_validate(measures: np.ndarray, targets: np.ndarray, methods: list[str],
                   neutral: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Leave-block-out per-AU (Pearson r, MAE) of the given methods; "unobservable" predicts 0.

    r is NaN where OpenFace or the prediction is constant (AU04 and AU17 in the shipped set).
    """
    neutral = np.full(N_AUS, -np.inf) if neutral is None else neutral
    pred = np.zeros_like(targets)
    for held in blocks(len(targets)):
        train = np.setdiff1d(np.arange(len(targets)), held)
        for i, name in enumerate(AU_NAMES):
            if methods[i] != "unobservable":
                au_map, _ = fit_au(measures[train, i], targets[train, i], name, methods[i], neutral[i])
                pred[held, i] = np.clip(au_map(measures[held, i]), 0.0, AU_MAX)
    r = np.array([np.corrcoef(pred[:, i], targets[:, i])[0, 1]
                  if pred[:, i].std() > 0 and targets[:, i].std() > 0 else np.nan for i in range(N_AUS)])
    return r, np.abs(pred - targets).mean(0)


def calibrate_layout(measures: np.ndarray, targets: np.ndarray, observable: np.ndarray,
                     neutral: np.ndarray) -> dict:
    """Fit every AU of one layout; each entry records its method and cross-validated agreement.

    Per AU the fit (linear or isotonic) with the higher cross-validated r is kept if that r is
    at least MIN_CV_R, else the prior. The choice uses the same folds as the reported r, which
    makes the reported r slightly optimistic for AUs where both fits are close.
    """
    scores = {m: cross_validate(measures, targets, [m] * N_AUS)[0] for m in ("linear", "isotonic")}
    methods, entries = [], []
    for i, name in enumerate(AU_NAMES):
        best = max(scores, key=lambda m: np.nan_to_num(scores[m][i], nan=-1.0))
        wanted = best if scores[best][i] >= MIN_CV_R else "prior"
        au_map, method = fit_au(measures[:, i], targets[:, i], name, wanted, neutral[i])
        method = method if observable[i] else "unobservable"
        methods.append(method)
        entries.append(au_map_to_dict(au_map if observable[i] else None, method))
    r, mae = cross_validate(measures, targets, methods, neutral)
    out = {}
    for i, name in enumerate(AU_NAMES):
        out[name] = {"measure": AU_MEASURES[name], **entries[i],
                     "cv_pearson_r": None if np.isnan(r[i]) else round(float(r[i]), 3),
                     "cv_mae": round(float(mae[i]), 3),
                     "openface_mean": round(float(targets[:, i].mean()), 3),
                     "openface_std": round(float(targets[:, i].std()), 3)}
    return out


def build_template(detector, landmarker) -> np.ndarray:
    """The astronaut's face mesh in its canonical frame (inter-ocular distance 1)."""
    try:
        from skimage import data as skimage_data
    except ImportError as exc:
        raise AnimatorError("calibrate: scikit-image is needed for the template photo "
                            "(pip install animator[test])") from exc
    rgb = np.ascontiguousarray(skimage_data.astronaut())
    found = detector.detect(rgb)
    if not found:
        raise AnimatorError("calibrate: no face found in the template photo")
    return geometry.canonical_frame(landmarker.landmarks(rgb, found[0]))


def calibrate(data: Path) -> dict:
    """The full calibration document (template, per-layout maps, provenance)."""
    from animator.faces.detect import FaceDetector
    from animator.faces.landmarks import MeshLandmarker

    detector, landmarker = FaceDetector(), MeshLandmarker()
    template = build_template(detector, landmarker)
    cal = load_set(Path(data), detector, landmarker)
    layouts = {}
    for key, layout in au_table.LAYOUT_KEYS.items():
        points = cal.meshes if layout is geometry.MESH else cal.meshes[:, list(geometry.MESH_TO_IBUG68)]
        observable = au_table.OBSERVABLE if layout is geometry.MESH else au_table.OBSERVABLE_68
        neutral = geometry.measures(geometry.template_for(layout, template), template)
        layouts[key] = calibrate_layout(geometry.measures(points, template), cal.aus, observable, neutral)
    return {
        "format": au_table.CALIBRATION_FORMAT,
        "provenance": {
            "data": f"au-calibration/{Path(data).name}: {len(cal.files)} consecutive 128x128 face "
                    "crops of one person with OpenFace 2 AU intensities (aus.csv)",
            "date": datetime.date.today().isoformat(),
            "landmarks": "animator.faces: YuNet detection + MediaPipe face mesh on crops padded "
                         f"with {PAD} px of black; ibug68 = the mesh's 68-point subset",
            "method": "per AU: intensity = clip(monotone piecewise-linear map of one geometric "
                      "measure (knots, extended with slope), 0, 5); 'linear' / 'isotonic' = fits to "
                      "OpenFace's intensities (the one with higher cross-validated r), 'prior' = "
                      "FACS-geometry slope from a zero at the 90th percentile of frames OpenFace "
                      "scores < 0.5 or the template face's value if higher; 'unobservable' = "
                      "reported as 0",
            "cross_validation": f"leave-block-out, {N_BLOCKS} contiguous blocks (frames are consecutive "
                                "frames of one person); cv_pearson_r and cv_mae per AU",
            "script": "python -m animator.estimate.calibrate",
        },
        "template": {
            "source": "MediaPipe face mesh of scikit-image's astronaut photo (Eileen Collins, public "
                      "domain) in its canonical frame: origin between the eye centres, x towards "
                      "the subject's left, y down, z away from the camera, inter-ocular distance 1",
            "points": np.round(template, 5).tolist(),
        },
        "layouts": layouts,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="calibration set folder: face crops + OpenFace's aus.csv")
    parser.add_argument("--out", type=Path, default=au_table.CALIBRATION_PATH, help="calibration JSON")
    args = parser.parse_args(argv)
    from animator.outputs import atomic_output

    document = calibrate(args.data)
    with atomic_output(args.out, overwrite=True) as tmp:
        tmp.write_text(json.dumps(document, indent=1) + "\n")
    for key, layout in document["layouts"].items():
        print(key)
        for name, entry in layout.items():
            print(f"  {name} {entry['method']:<12} r={entry['cv_pearson_r']} mae={entry['cv_mae']}")


if __name__ == "__main__":
    main()
