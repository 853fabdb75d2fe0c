"""Refit the AU calibration and write ``animator/assets/au_calibration.json``.

    python -m animator.estimate.calibrate --data DATA/au-calibration

Data: OpenFace 2 intensities for three people -- ``eric_andre/`` (81 consecutive 128x128 crops
with ``aus.csv``; padded with black so the detector sees background around the face) and
``voxceleb/`` (two talking-face clips of two other people, each with OpenFace's per-frame CSV;
frames OpenFace did not track are dropped). The shipped detector and landmarker run on every
frame; each AU's candidate features (:data:`CANDIDATES`) are computed as the estimator does.

Per AU the feature is chosen by **leave-one-person-out** agreement: for each candidate, fit on
all people but one and predict that one, once per person. The score is the mean Pearson r
*within* the held-out people whose OpenFace values vary (std >= PERSON_MIN_STD; a constant
prediction scores 0): with three people the r of the pooled predictions is dominated by one
person's offset (OpenFace scores AU14 ~1.4 throughout one clip) and rewards predicting it. If
OpenFace varies in the set (pooled std >= MIN_STD) and the best score >= MIN_R, the first
candidate scoring within MARGIN of the best wins.

The reported agreement validates that whole procedure, selection included: for each held-out
person the feature is chosen (as above, on the other two people alone), fitted on them and
scored on the held-out person. Choosing the feature by its score on all three people and
reporting that score would be optimistic: the held-out person would have voted for their own
feature. ``fixed_feature_score`` is that optimistic number for the shipped feature, kept to
show how much the choice depends on who is left out.

The map is a ``quantile`` match: the feature's percentiles onto OpenFace's over the same frames
(equipercentile calibration; monotone, the least-squares gain as the slope beyond the data). A
regression of OpenFace on the feature would shrink every peak towards the mean by the
correlation (and more across people whose offsets differ): a plain brow raise read AU01 1.4
that way, where OpenFace itself scores the same blendshape value 2.5-3.

Otherwise the AU gets a ``prior``: its first candidate, zero at the 90th percentile of the
feature over frames OpenFace scores below 0.5, reaching 5 at :data:`PRIOR_SPAN` above it. AUs
in :data:`FACS_SCALED` always take the prior on their chosen feature: OpenFace's AU45 peaks near
2 on complete blinks in this data, while the ``blink`` preset (and FACS) puts a closed eye at the
top of the scale; the estimator must agree with the presets the generator is driven by.

The shipped feature is chosen and its map fitted on all three people. Reported per AU: the score, the pooled r and
MAE, r within each held-out person, and the mean offset on frames OpenFace scores below 0.5
("neutral offset").

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

from animator.aus import AU_MAX, AU_NAMES
from animator.errors import AnimatorError
from animator.estimate import aus as au_table
from animator.estimate import geometry
from animator.estimate.aus import FEATURE_NAMES, AUEstimator, AUMap, AURule, au_map_to_dict
from animator.media.images import read_image

PAD = 32
MIN_STD, MIN_R, MARGIN = 0.25, 0.4, 0.05
PERSON_MIN_STD = 0.15   # a held-out person counts towards the choice where OpenFace varies this much
QUANTILES = np.linspace(0.0, 100.0, 51)
# AUs whose intensity scale is anatomical (closed eye = 5), not OpenFace's; see the docstring.
FACS_SCALED = frozenset({"AU45"})

# The features each AU may read, anatomically plausible ones only; the first is the prior's.
# Blendshape names are MediaPipe's with Left/Right merged; the others are geometry.MEASURE_NAMES.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "AU01": ("browInnerUp", "brow_inner_raise"),
    "AU02": ("browOuterUp", "brow_outer_raise"),
    "AU04": ("browDown", "brow_lower"),
    "AU05": ("eyeWide", "upper_lid_raise"),
    "AU06": ("cheekSquint", "cheek_raise", "eyeSquint", "mouthSmile"),
    "AU07": ("eyeSquint", "lid_tighten"),
    "AU09": ("noseSneer", "nose_wing_raise"),
    "AU10": ("mouthUpperUp", "upper_lip_raise"),
    "AU12": ("mouthSmile", "lip_corner_pull"),
    "AU14": ("mouthDimple", "lip_corner_back"),
    "AU15": ("mouthFrown", "lip_corner_depress"),
    "AU17": ("mouthShrugLower", "chin_raise"),
    "AU20": ("mouthStretch", "lip_stretch"),
    "AU23": ("mouthPress", "lip_press", "mouthRollLower"),
    "AU25": ("lips_part", "mouthLowerDown", "jawOpen"),
    "AU26": ("jawOpen", "jaw_drop"),
    "AU45": ("eyeBlink", "eye_closure"),
}

# A prior's span: the feature's rise from the neutral zero to intensity 5. Blendshapes are
# coefficients on 0-1; geometric measures are in inter-ocular units (1 IOD ~ 62 mm in adults),
# from the movements FACS describes at their maximum (brows rise ~10 mm, lids ~4 mm).
PRIOR_SPAN: dict[str, float] = {
    "AU01": 0.6, "AU02": 0.6, "AU04": 0.6, "AU05": 0.5, "AU06": 0.6, "AU07": 0.6, "AU09": 0.08,
    "AU10": 0.6, "AU12": 0.8, "AU14": 0.5, "AU15": 0.5, "AU17": 0.5, "AU20": 0.5, "AU23": 0.6,
    "AU25": 0.30, "AU26": 0.6, "AU45": 0.4,
}


@dataclass
class Person:
    name: str
    features: np.ndarray   # (N, F) in FEATURE_NAMES order
    aus: np.ndarray        # (N, 17) OpenFace intensities


def load_crops(folder: Path, detector, landmarker, estimator: AUEstimator) -> Person:
    """Face crops listed in ``folder/aus.csv`` (file, AU01_r ... AU45_r)."""
    table = folder / "aus.csv"
    if not table.is_file():
        raise AnimatorError(f"{table}: no such file (the calibration set is needed)")
    with table.open() as handle:
        rows = list(csv.DictReader(handle))
    landmarks = []
    for row in rows:
        rgb = cv2.copyMakeBorder(read_image(folder / row["file"]), PAD, PAD, PAD, PAD,
                                 cv2.BORDER_CONSTANT, value=(0, 0, 0))
        found = detector.detect(rgb)
        h, w = rgb.shape[:2]
        target = found[0] if found else np.array([PAD, PAD, w - PAD, h - PAD], np.float32)
        landmarks.append(landmarker.landmarks(rgb, target))
    values = np.array([[float(r[f"{n}_r"]) for n in AU_NAMES] for r in rows], dtype=np.float64)
    return Person(folder.name, estimator.features(np.stack(landmarks)), values)


def load_openface_video(video: Path, table: Path, detector, landmarker, estimator: AUEstimator) -> Person:
    """A clip tracked as ``animator estimate`` does, joined to OpenFace's per-frame CSV."""
    from animator.faces.track import track_video
    from animator.media.decode import iter_frames

    with table.open() as handle:
        rows = list(csv.reader(handle))
    header = [c.strip() for c in rows[0]]
    column = {name: header.index(name) for name in ["frame", "success"] + [f"{n}_r" for n in AU_NAMES]}
    openface = {int(r[column["frame"]]) - 1: r for r in rows[1:] if r[column["success"]].strip() == "1"}
    tracks = track_video(iter_frames(video), detector, landmarker).select("largest")
    seen = [o for o in tracks.observations if not o.interpolated and o.frame_index in openface]
    values = np.array([[float(openface[o.frame_index][column[f"{n}_r"]]) for n in AU_NAMES] for o in seen])
    return Person(f"{video.parent.name}/{video.stem}", estimator.features(np.stack([o.mesh for o in seen])), values)


def load_people(data: Path, estimator: AUEstimator) -> list[Person]:
    from animator.faces.detect import FaceDetector
    from animator.faces.landmarks import MeshLandmarker

    detector, landmarker = FaceDetector(), MeshLandmarker()
    people = [load_crops(data / "eric_andre", detector, landmarker, estimator)]
    for table in sorted((data / "voxceleb").glob("*.csv")):
        people.append(load_openface_video(table.with_suffix(".mp4"), table, detector, landmarker, estimator))
    return people


def fit_map(x: np.ndarray, y: np.ndarray) -> AUMap | None:
    """The feature's percentiles mapped onto OpenFace's; None where the least-squares slope
    (used beyond the data) is not positive, i.e. the feature does not grow with the AU."""
    if x.std() == 0:
        return None
    gain = np.polyfit(x, y, 1)[0]
    if gain <= 0:
        return None
    xs, ys = np.percentile(x, QUANTILES), np.percentile(y, QUANTILES)
    keep = np.r_[True, np.diff(xs) > 1e-9]
    return AUMap(np.column_stack([xs[keep], np.maximum.accumulate(ys[keep])]), float(gain))


def prior_map(x: np.ndarray, y: np.ndarray, name: str) -> AUMap:
    absent = x[y < 0.5]
    zero = float(np.percentile(absent if len(absent) >= 5 else x, 90))
    span = PRIOR_SPAN[name]
    return AUMap(np.array([[zero, 0.0], [zero + span, AU_MAX]]), AU_MAX / span)


def _r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")


def leave_one_person_out(people: list[Person], index: int, column: int, method: str) -> list[np.ndarray]:
    """Each person's predictions from a map fitted on the others."""
    predictions = []
    for held in range(len(people)):
        train = [p for k, p in enumerate(people) if k != held]
        x = np.concatenate([p.features[:, column] for p in train])
        y = np.concatenate([p.aus[:, index] for p in train])
        au_map = prior_map(x, y, AU_NAMES[index]) if method == "prior" else fit_map(x, y)
        value = people[held].features[:, column]
        predictions.append(np.zeros_like(value) if au_map is None else np.clip(au_map(value), 0.0, AU_MAX))
    return predictions


def agreement(people: list[Person], index: int, predictions: list[np.ndarray]) -> dict:
    truth = [p.aus[:, index] for p in people]
    pred, target = np.concatenate(predictions), np.concatenate(truth)
    absent = target < 0.5
    within = [_r(a, b) for a, b in zip(predictions, truth)]
    varying = [np.nan_to_num(r) for r, t in zip(within, truth) if t.std() >= PERSON_MIN_STD]
    return {"score": float(np.mean(varying)) if varying else float("nan"),
            "r": _r(pred, target), "mae": float(np.abs(pred - target).mean()), "r_per_person": within,
            "neutral_offset": float((pred[absent] - target[absent]).mean()) if absent.any() else float("nan")}


def select_feature(people: list[Person], index: int) -> tuple[str, str]:
    """The feature and method for one AU, chosen on ``people`` alone (leave one of them out)."""
    name = AU_NAMES[index]
    target = np.concatenate([p.aus[:, index] for p in people])
    trials = []
    if target.std() >= MIN_STD:
        for feature in CANDIDATES[name]:
            column = FEATURE_NAMES.index(feature)
            score = agreement(people, index, leave_one_person_out(people, index, column, "quantile"))
            trials.append((np.nan_to_num(score["score"], nan=-1.0), feature))
    best = max(score for score, _ in trials) if trials else -1.0
    if best < MIN_R:
        return CANDIDATES[name][0], "prior"
    # the first candidate within MARGIN of the best: blendshapes, listed first, carry less of a
    # person's anatomy (a high brow, a long chin) than geometry, which r cannot show
    feature = next(f for score, f in trials if score >= best - MARGIN)
    return feature, "prior" if name in FACS_SCALED else "quantile"


def fit_rule(people: list[Person], index: int, feature: str, method: str) -> AURule:
    """The map of ``feature`` onto OpenFace's AU ``index``, fitted on ``people``."""
    column = FEATURE_NAMES.index(feature)
    x = np.concatenate([p.features[:, column] for p in people])
    y = np.concatenate([p.aus[:, index] for p in people])
    return AURule(feature, prior_map(x, y, AU_NAMES[index]) if method == "prior" else fit_map(x, y))


def calibrate_au(people: list[Person], index: int) -> tuple[AURule, dict]:
    """The chosen feature and map for one AU (fitted on all people), and the agreement of the
    whole procedure -- selection included -- on each person left out."""
    name = AU_NAMES[index]
    predictions, chosen = [], []
    for held in range(len(people)):
        train = [p for k, p in enumerate(people) if k != held]
        feature, method = select_feature(train, index)
        rule = fit_rule(train, index, feature, method)
        value = people[held].features[:, FEATURE_NAMES.index(feature)]
        predictions.append(np.zeros_like(value) if rule.au_map is None
                           else np.clip(rule.au_map(value), 0.0, AU_MAX))
        chosen.append(feature)
    feature, method = select_feature(people, index)
    rule = fit_rule(people, index, feature, method)
    if rule.au_map is None:
        raise AnimatorError(f"calibrate: {name}: the {method} fit of {feature} on all people has no positive slope")
    fixed = agreement(people, index, leave_one_person_out(people, index, FEATURE_NAMES.index(feature), method))
    return rule, {"method": method, "chosen_per_person": chosen, "fixed_feature_score": fixed["score"],
                  **agreement(people, index, predictions)}


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
    return geometry.canonical_frame(landmarker.landmarks(rgb, found[0])[:geometry.MESH.n_points])


def _rounded(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 3)


def calibrate(data: Path) -> dict:
    """The full calibration document (template, per-AU rules with their agreement, provenance)."""
    from animator.faces.detect import FaceDetector
    from animator.faces.landmarks import MeshLandmarker

    template = build_template(FaceDetector(), MeshLandmarker())
    unfitted = {n: AURule(CANDIDATES[n][0], None) for n in AU_NAMES}
    people = load_people(Path(data), AUEstimator(template, unfitted))
    entries = {}
    for index, name in enumerate(AU_NAMES):
        rule, score = calibrate_au(people, index)
        target = np.concatenate([p.aus[:, index] for p in people])
        entries[name] = {"feature": rule.feature, **au_map_to_dict(rule.au_map, score["method"]),
                         "lopo_score": _rounded(score["score"]),
                         "lopo_r": _rounded(score["r"]), "lopo_mae": _rounded(score["mae"]),
                         "lopo_r_per_person": [_rounded(v) for v in score["r_per_person"]],
                         "lopo_features": score["chosen_per_person"],
                         "fixed_feature_score": _rounded(score["fixed_feature_score"]),
                         "neutral_offset": _rounded(score["neutral_offset"]),
                         "openface_mean": _rounded(target.mean()), "openface_std": _rounded(target.std())}
    return {
        "format": au_table.CALIBRATION_FORMAT,
        "provenance": {
            "data": "au-calibration: " + ", ".join(f"{p.name} ({len(p.aus)} frames)" for p in people)
                    + "; OpenFace 2 AU intensities; three different people",
            "date": datetime.date.today().isoformat(),
            "landmarks": "animator.faces: YuNet detection + MediaPipe Face Landmarker v2 (478 points) "
                         "and its blendshape model; the clips tracked as animator estimate does",
            "method": "per AU: intensity = clip(monotone piecewise-linear map of one feature (knots, "
                      "extended with slope), 0, 5); feature chosen by leave-one-person-out r; "
                      "'quantile' = the feature's percentiles onto OpenFace's; 'prior' = fixed span "
                      "from a zero at the 90th percentile of frames OpenFace scores < 0.5, where the "
                      "data cannot fit or the scale is anatomical (AU45: closed eye = 5)",
            "validation": "leave one person out (3 folds), feature selection inside each fold "
                          "(lopo_features: the feature each fold chose); lopo_r = Pearson r of the pooled held-out "
                          "predictions, lopo_r_per_person = r within each held-out person (order of "
                          "'people'), lopo_score = their mean over people whose OpenFace values vary "
                          f"(std >= {PERSON_MIN_STD}), fixed_feature_score = the same with the shipped "
                          "feature fixed (optimistic: chosen on all people), neutral_offset = mean (prediction - OpenFace) on "
                          "frames OpenFace scores < 0.5",
            "people": [p.name for p in people],
            "script": "python -m animator.estimate.calibrate",
        },
        "template": {
            "source": "MediaPipe face mesh of scikit-image's astronaut photo (Eileen Collins, public "
                      "domain) in its canonical frame: origin between the eye centres, x towards "
                      "the subject's left, y down, z away from the camera, inter-ocular distance 1",
            "points": np.round(template, 5).tolist(),
        },
        "aus": entries,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="the au-calibration folder (eric_andre/ and voxceleb/ with OpenFace CSVs)")
    parser.add_argument("--out", type=Path, default=au_table.CALIBRATION_PATH, help="calibration JSON")
    args = parser.parse_args(argv)
    from animator.outputs import atomic_output

    document = calibrate(args.data)
    with atomic_output(args.out, overwrite=True) as tmp:
        tmp.write_text(json.dumps(document, indent=1) + "\n")
    for name, entry in document["aus"].items():
        print(f"{name} {entry['feature']:<18} {entry['method']:<9} score={entry['lopo_score']} r={entry['lopo_r']} "
              f"per-person={entry['lopo_r_per_person']} mae={entry['lopo_mae']} "
              f"neutral={entry['neutral_offset']} fixed-feature={entry['fixed_feature_score']} "
              f"folds chose={entry['lopo_features']}")


if __name__ == "__main__":
    main()
