"""Refit the AU calibration and write ``animator/assets/au_calibration.json``.

    python -m animator.estimate.calibrate --data DATA/au-calibration

Data: OpenFace 2 intensities for three people -- ``eric_andre/`` (81 consecutive 128x128 crops
with ``aus.csv``; padded with black so the detector sees background around the face) and
``voxceleb/`` (two talking-face clips of two other people, each with OpenFace's per-frame CSV;
frames OpenFace did not track are dropped). The shipped detector and landmarker run on every
frame; each AU's candidate features (:data:`CANDIDATES`, :data:`VIDEO_CANDIDATES`) are
computed as the estimator does.

Per AU, a **weighted sum of its candidates**: each candidate weighted by its mean Pearson r
with OpenFace *within* each person whose OpenFace values vary (std >= PERSON_MIN_STD), over
its spread; candidates under KEEP_FRACTION of the best r, not positive, or dead (spread <
MIN_SPREAD) are left out. Within-person r ignores each person's offset, which with three
people would otherwise decide (OpenFace scores AU14 ~1.4 throughout one clip). Where
OpenFace's labels vary in the data set (pooled std >= MIN_STD, decided on the labels alone)
and the sum follows OpenFace within people (mean r >= MIN_R), its percentiles are mapped onto
OpenFace's over the same frames (``quantile``: equipercentile, monotone, the least-squares
gain as the slope beyond the data; a regression would shrink every peak towards the mean by
the correlation: a plain brow raise read AU01 1.4 that way, where OpenFace scores the same
blendshape value 2.5-3). Otherwise the AU gets a ``prior``: its first candidate, zero at the
90th percentile of the feature over frames OpenFace scores below 0.5, reaching 5 at
:data:`PRIOR_SPAN` above it. AUs in :data:`FACS_SCALED` always take the prior: OpenFace's AU45
peaks near 2 on complete blinks in this data, while the ``blink`` preset (and FACS) puts a
closed eye at the top of the scale; the estimator must agree with the presets the generator
is driven by.

Two modes are fitted: ``static`` on single frames, and ``video`` for the AUs in
:data:`VIDEO_BASELINE`, on each person's features relative to their own resting value (the
estimator's ``estimate_track``).

Validation is **leave one person out** and covers the whole procedure: for each held-out
person the weights, the features kept and the r gate come from the other two alone; the score
is the mean within-person r over the held-out people whose OpenFace values vary (a constant
prediction scores 0). The shipped rules are fitted on all three people.
Reported per AU and mode: the score, the pooled r and MAE, r within each held-out person, the
features each fold kept, and the mean offset on frames OpenFace scores below 0.5 ("neutral
offset").

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
from animator.estimate.aus import (BASELINE_PERCENTILE, FEATURE_NAMES, AUEstimator, AUMap, AURule,
                                   relative_to_rest, rule_to_dict)
from animator.media.images import read_image

PAD = 32
MIN_STD, MIN_R = 0.25, 0.4
PERSON_MIN_STD = 0.15   # a person's OpenFace values vary (for fitting and for the score) this much
MIN_SPREAD = 1e-4       # a feature that moves less than this (coefficient or IOD units) is dead
KEEP_FRACTION = 0.5     # a candidate joins the weighted sum if its r is at least this share of the best
QUANTILES = np.linspace(0.0, 100.0, 51)
# AUs read relative to the track's resting value in video mode: those OpenFace 2 scores with its
# person-normalised ("dynamic") intensity models (its AU_all_best list), decided before
# looking at our data. The others (AU04, 06, 07, 10, 12, 14) keep the static maps in videos.
VIDEO_BASELINE = frozenset({"AU01", "AU02", "AU05", "AU09", "AU15", "AU17", "AU20", "AU23", "AU25",
                            "AU26", "AU45"})
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
    # AU25 reads the lip gap alone: MediaPipe's mouthLowerDown (FACS's AU16) stays near 0 on
    # some plainly open mouths, and a sum with it read the acting clips' dropped jaws (lips well
    # apart) at AU25 1.2-1.3 (docs/au_estimation.md).
    "AU25": ("lips_part",),
    "AU26": ("jawOpen",),   # and, in video mode, VIDEO_CANDIDATES
    "AU45": ("eyeBlink", "eye_closure"),
}

# Candidates that carry a per-person resting offset join only in video mode, where each feature
# is relative to the person's own rest: jaw_drop measures face length as much as movement; read
# statically, a sum with it put a stranger's anatomy into AU26 (a plain "o" read 1.4 where
# jawOpen reads 2.3). Not mouthClose, although it scores higher (docs/au_estimation.md): its
# tiny spread gets a large weight, and a resting closed mouth read AU26 ~1 in video mode.
VIDEO_CANDIDATES: dict[str, tuple[str, ...]] = {"AU26": ("jaw_drop",)}


def candidates(name: str, mode: str) -> tuple[str, ...]:
    """The features AU ``name`` may read in ``mode`` (``static`` or ``video``)."""
    return CANDIDATES[name] + (VIDEO_CANDIDATES.get(name, ()) if mode == "video" else ())


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


def relative_to_baseline(person: Person) -> Person:
    """The person's features relative to their own resting value, as video mode reads a track
    (:func:`animator.estimate.aus.relative_to_rest`)."""
    return Person(person.name, relative_to_rest(person.features), person.aus)


def combination(people: list[Person], index: int, names: tuple[str, ...]) -> tuple[tuple[str, ...], np.ndarray]:
    """The candidate features ``names``, each weighted by its mean r with OpenFace *within*
    each person over its spread (so the weights are comparable); candidates below
    KEEP_FRACTION of the best, not positive or dead (spread < MIN_SPREAD) are left out.
    Within-person r ignores each person's offset, which with three people would otherwise
    decide the weights."""
    agreement_r = [within_r(people, index, AURule((f,), np.ones(1), None)) for f in names]
    best = max(agreement_r)
    columns = [FEATURE_NAMES.index(f) for f in names]
    spread = np.concatenate([p.features[:, columns] - p.features[:, columns].mean(0) for p in people]).std(0)
    kept = [k for k, r in enumerate(agreement_r)
            if r > 0 and r >= KEEP_FRACTION * best and spread[k] >= MIN_SPREAD]
    if not kept:
        return names[:1], np.ones(1)
    return tuple(names[k] for k in kept), np.array([agreement_r[k] / spread[k] for k in kept])


def within_r(people: list[Person], index: int, rule: AURule) -> float:
    """Mean r of the rule's weighted sum with OpenFace within each person whose values vary."""
    varying = [p for p in people if p.aus[:, index].std() >= PERSON_MIN_STD]
    return float(np.mean([np.nan_to_num(_r(rule.score(p.features), p.aus[:, index])) for p in varying])) \
        if varying else float("nan")


def fit_quantile(people: list[Person], index: int, names: tuple[str, ...]) -> AURule:
    """The weighted candidates ``names``, their sum's percentiles mapped onto OpenFace's."""
    features, weights = combination(people, index, names)
    rule = AURule(features, weights, None)
    score = np.concatenate([rule.score(p.features) for p in people])
    return AURule(features, weights, fit_map(score, np.concatenate([p.aus[:, index] for p in people])))


def fit_prior(people: list[Person], index: int, names: tuple[str, ...]) -> AURule:
    """The first candidate of ``names`` alone with the fixed span of :func:`prior_map`."""
    feature = names[0]
    column = FEATURE_NAMES.index(feature)
    x = np.concatenate([p.features[:, column] for p in people])
    y = np.concatenate([p.aus[:, index] for p in people])
    return AURule((feature,), np.ones(1), prior_map(x, y, AU_NAMES[index]))


def held_out(people: list[Person], index: int, fit) -> tuple[list[np.ndarray], list[AURule]]:
    """Each person's predictions by ``fit(others, index)``, and the rule each fold fitted."""
    predictions, rules = [], []
    for held in range(len(people)):
        rule = fit([p for k, p in enumerate(people) if k != held], index)
        predictions.append(np.clip(rule(people[held].features), 0.0, AU_MAX))
        rules.append(rule)
    return predictions, rules


def agreement(people: list[Person], index: int, predictions: list[np.ndarray]) -> dict:
    truth = [p.aus[:, index] for p in people]
    pred, target = np.concatenate(predictions), np.concatenate(truth)
    absent = target < 0.5
    within = [_r(a, b) for a, b in zip(predictions, truth)]
    varying = [np.nan_to_num(r) for r, t in zip(within, truth) if t.std() >= PERSON_MIN_STD]
    return {"score": float(np.mean(varying)) if varying else float("nan"),
            "r": _r(pred, target), "mae": float(np.abs(pred - target).mean()), "r_per_person": within,
            "neutral_offset": float((pred[absent] - target[absent]).mean()) if absent.any() else float("nan")}


def fittable(people: list[Person], index: int) -> bool:
    """Whether OpenFace's labels vary enough in the data set (pooled std >= MIN_STD) to fit
    the AU at all; FACS_SCALED AUs never are. Decided once on all people's labels -- it looks at
    no feature and no prediction -- so that leaving out the one person who shows an AU most
    (AU06: eric_andre) does not turn the AU into a prior in that fold alone."""
    return AU_NAMES[index] not in FACS_SCALED and np.concatenate([p.aus[:, index] for p in people]).std() >= MIN_STD


def fit_rule(people: list[Person], index: int, names: tuple[str, ...], fit: bool) -> tuple[AURule, str]:
    """One AU's rule over candidates ``names`` fitted on ``people``, and its method:
    ``quantile`` where the AU is ``fit`` (:func:`fittable`) and the weighted sum follows
    OpenFace within people (mean r >= MIN_R); otherwise the ``prior``."""
    if fit:
        rule = fit_quantile(people, index, names)
        if rule.au_map is not None and np.nan_to_num(within_r(people, index, rule), nan=-1.0) >= MIN_R:
            return rule, "quantile"
    return fit_prior(people, index, names), "prior"


def calibrate_au(people: list[Person], index: int, mode: str = "static") -> tuple[AURule, dict]:
    """One AU's rule and method fitted on all ``people`` (relative to each person's rest in
    ``video`` mode: :func:`relative_to_baseline`), and the agreement of the whole procedure --
    weights, features kept and the r gate included -- on each person left out."""
    fit, names = fittable(people, index), candidates(AU_NAMES[index], mode)
    predictions, rules = held_out(people, index, lambda train, i: fit_rule(train, i, names, fit)[0])
    rule, method = fit_rule(people, index, names, fit)
    return rule, {"method": method, "features_per_fold": [r.feature for r in rules],
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


def _validation(score: dict) -> dict:
    return {"lopo_score": _rounded(score["score"]), "lopo_r": _rounded(score["r"]),
            "lopo_mae": _rounded(score["mae"]), "lopo_r_per_person": [_rounded(v) for v in score["r_per_person"]],
            "lopo_features": score["features_per_fold"], "neutral_offset": _rounded(score["neutral_offset"])}


def calibrate(data: Path) -> dict:
    """The full calibration document (template, per-AU rules with their agreement, provenance)."""
    from animator.faces.detect import FaceDetector
    from animator.faces.landmarks import MeshLandmarker

    template = build_template(FaceDetector(), MeshLandmarker())
    unfitted = {n: AURule(CANDIDATES[n][:1], np.ones(1), None) for n in AU_NAMES}
    people = load_people(Path(data), AUEstimator(template, unfitted))
    relative = [relative_to_baseline(p) for p in people]
    entries = {}
    for index, name in enumerate(AU_NAMES):
        target = np.concatenate([p.aus[:, index] for p in people])
        entries[name] = {"openface_mean": _rounded(target.mean()), "openface_std": _rounded(target.std())}
        for mode, data_set in (("static", people), ("video", relative)):
            if mode == "video" and name not in VIDEO_BASELINE:
                continue
            rule, score = calibrate_au(data_set, index, mode)
            entries[name][mode] = {**rule_to_dict(rule, score["method"]), **_validation(score)}
    return {
        "format": au_table.CALIBRATION_FORMAT,
        "provenance": {
            "data": "au-calibration: " + ", ".join(f"{p.name} ({len(p.aus)} frames)" for p in people)
                    + "; OpenFace 2 AU intensities; three different people",
            "date": datetime.date.today().isoformat(),
            "landmarks": "animator.faces: YuNet detection + MediaPipe Face Landmarker v2 (478 points) "
                         "and its blendshape model; the clips tracked as animator estimate does",
            "method": "per AU and mode: intensity = clip(monotone piecewise-linear map (knots, extended "
                      "with slope) of a weighted sum of features, 0, 5); weights = each candidate's "
                      "mean within-person r with OpenFace over its spread, candidates under half the "
                      "best left out; 'quantile' = the sum's percentiles onto OpenFace's; 'prior' = "
                      "the first candidate with a fixed span from a zero at the 90th percentile of "
                      "frames OpenFace scores < 0.5, where the data cannot fit or the scale is "
                      "anatomical (AU45: closed eye = 5). 'static': single frames; 'video' (AUs "
                      "OpenFace scores with person-normalised models): features relative to the "
                      f"track's {BASELINE_PERCENTILE:g}th percentile",
            "validation": "leave one person out (3 folds), weights and method fitted inside each fold "
                          "(lopo_features: the features each fold kept); lopo_r = Pearson r of the "
                          "pooled held-out predictions, lopo_r_per_person = r within each held-out "
                          "person (order of 'people'), lopo_score = their mean over people whose "
                          f"OpenFace values vary (std >= {PERSON_MIN_STD}), neutral_offset = mean "
                          "(prediction - OpenFace) on frames OpenFace scores < 0.5",
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
        for mode in ("static", "video"):
            if mode in entry:
                rule = entry[mode]
                print(f"{name} {mode:<6} {'+'.join(rule['features']):<40} {rule['method']:<8} "
                      f"score={rule['lopo_score']} per-person={rule['lopo_r_per_person']} r={rule['lopo_r']} "
                      f"mae={rule['lopo_mae']} neutral={rule['neutral_offset']} folds={rule['lopo_features']}")


if __name__ == "__main__":
    main()
