"""Are closed and raised lids painted as bright as real ones? Real frames against the motion stage's, on clips.

    python -m pipelines.eye_paint CLIP.mp4... [--cache DIR]

Each clip is one person, tracked and read as :mod:`pipelines.fit_rig` reads it.

Closed lids. The frames the estimator reads shut (AU45 >= SHUT) show the person's real closed
lids; up to OPEN_FRAMES frames read open (AU45 <= OPEN) are each closed by the rig (AU45 = 5)
with the lid left unlit. A lid's brightness is the mean luma of its skin between the lash band
and the fold (:func:`animator.motion.eyes.lid_skin`), the same region on both. ``smooth_lid``
lights the closed lid towards the skin above its crease (``lid_skin_colour``) by at most
``LID_TONE_GAIN``: its gain is clip(crease / unlit, 1, cap). Per person: the gain the real lid
asks for (real / unlit) and the one the shipped cap gives; and, leaving each person out, the
cap that fits the others best (least mean |log| error over CAPS) and its error on the one left
out, against the shipped cap's.

Raised lids. The frames read wide (AU05 >= WIDE, AU45 <= OPEN) show how bright a wide eye's
white is; up to OPEN_FRAMES open frames that read AU05 <= CALM are each widened by the rig
(AU05 = RAISE) with the white left unlit. A white's brightness is the median luma of the
opening outside the iris (a pixel in from the lids), over the median luma of the cheeks (the
exposure and the light vary between frames; the cheeks do not move with the lids).
``paint_eyes`` lights the white by 1 + ``WHITE_LIGHT`` x the share of the opening the lids
uncovered: per person, the light the real white asks for ((real / unlit - 1) / share) and,
leaving each person out, the light that fits the others best and its error on the one left
out, against the shipped light's and no light's.

Raised lids' margins. Under a real upper lid its lashes and margin shade the eyeball: across
the lid (along its normal, at the lid points beside the iris) the luma rises from the margin
into the white. Per person, the profile from the margin down to MARGIN_DEPTH eye widths over
the white's level below it (the plateau, to PLATEAU), real wide against the rig's AU05 = RAISE
with the upper lid's shadow (``UPPER_SHADOW``) at each of SHADOWS; the error is the mean |log|
ratio of the two profiles; leaving each person out, the shadow that fits the others best,
against the shipped one's and none. Prints JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import cv2
import numpy as np

from animator.motion import eyes
from animator.motion.eyes import LUMA, eye_contour, eye_width, iris_circle, polygon_coverage
from animator.motion.mouth import polygon_area
from animator.motion.rig import BLINK, LID_RAISER, UPPER_LID_SKIN
from pipelines import measure_clips

SHUT, OPEN, WIDE = 4.5, 0.3, 3.0     # AU45 readings of shut and open eyes; AU05 of wide ones
CALM, RAISE = 1.0, 4.0               # the rig's AU05 on open frames reading AU05 <= CALM
OPEN_FRAMES, SHUT_FRAMES, WIDE_FRAMES = 20, 30, 15   # at most, evenly spread over the clip
CAPS = np.round(np.arange(1.0, 2.001, 0.05), 2)
LIGHTS = np.round(np.arange(0.0, 1.001, 0.05), 2)
CHEEKS = (50, 280)                   # mesh points on the cheekbones, under the eyes
SHADOWS = np.round(np.arange(0.0, 0.701, 0.1), 2)
MARGIN_STEP, MARGIN_DEPTH, PLATEAU = 0.02, 0.08, 0.14   # of the eye's width, down from the upper lid


def spread(indices: np.ndarray, count: int) -> list[int]:
    """At most ``count`` of ``indices``, evenly spread."""
    if len(indices) <= count:
        return indices.tolist()
    return indices[np.linspace(0, len(indices) - 1, count).astype(int)].tolist()


def lid_brightness(rgb: np.ndarray, mesh: np.ndarray, eye: int) -> float:
    """Mean luma of the upper lid's skin between its lash band and its fold (frame px mesh)."""
    fold = np.asarray(mesh, np.float64)[list(UPPER_LID_SKIN[eye][0]), :2]
    return region_luma(rgb, eyes.lid_skin(eye_contour(mesh, eye), fold, eye_width(mesh, eye)))


def region_lumas(rgb: np.ndarray, polygon: np.ndarray, keep=None, inset: bool = False) -> np.ndarray:
    """The luma of the pixels the polygon (frame px) covers by more than half (a pixel in from
    its edge when ``inset``) and that ``keep(xs, ys)``, frame px, accepts."""
    h, w = rgb.shape[:2]
    x0, y0 = np.clip(np.floor(polygon.min(0)).astype(int) - 1, 0, [w, h])
    x1, y1 = np.clip(np.ceil(polygon.max(0)).astype(int) + 2, 0, [w, h])
    inside = polygon_coverage(polygon, (x0, y0), (y1 - y0, x1 - x0)) > 0.5
    if inset:
        inside = cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    if keep is not None:
        ys, xs = np.mgrid[y0:y1, x0:x1]
        inside &= keep(xs, ys)
    return rgb[y0:y1, x0:x1][inside].astype(np.float32) @ LUMA


def region_luma(rgb: np.ndarray, polygon: np.ndarray) -> float:
    """Mean luma of the pixels the polygon (frame px) covers by more than half; NaN when fewer
    than 4 are."""
    lumas = region_lumas(rgb, polygon)
    return float(lumas.mean()) if len(lumas) >= 4 else float("nan")


def white_brightness(rgb: np.ndarray, contour: np.ndarray, iris: tuple[np.ndarray, float]) -> float:
    """Median luma of an eye's white: the opening ``contour`` (frame px), a pixel in from the
    lids, outside 1.2 radii of the ``iris`` circle (centre, radius); NaN when under 6 pixels."""
    (cx, cy), radius = iris
    lumas = region_lumas(rgb, contour, lambda xs, ys: np.hypot(xs - cx, ys - cy) > 1.2 * radius, inset=True)
    return float(np.median(lumas)) if len(lumas) >= 6 else float("nan")


def margin_profile(rgb: np.ndarray, contour: np.ndarray, iris: tuple[np.ndarray, float],
                   width: float) -> list[np.ndarray]:
    """Per upper-lid point beside the iris (over 1.3 radii from its centre, across), the luma
    from the lid (``contour``, :func:`eye_contour`'s layout) down into the eye to MARGIN_DEPTH
    eye widths, every MARGIN_STEP, over its mean from there to PLATEAU."""
    luma = rgb.astype(np.float32) @ LUMA
    down = eyes.towards_lower_lid(contour) * width
    depths = np.arange(0, PLATEAU + 1e-9, MARGIN_STEP)
    inner = depths <= MARGIN_DEPTH + 1e-9
    profiles = []
    for point in contour[eyes.CONTOUR_UPPER]:
        if abs(point[0] - iris[0][0]) < 1.3 * iris[1]:
            continue
        line = (point + np.outer(depths, down)).astype(np.float32)
        values = cv2.remap(luma, line[:, :1], line[:, 1:], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[:, 0]
        profiles.append(values[inner] / max(float(values[~inner].mean()), 1.0))
    return profiles


def cheek_brightness(rgb: np.ndarray, mesh: np.ndarray) -> float:
    """Mean over both cheeks of the median luma of a square 0.3 eye widths wide around each."""
    half = max(2, int(0.15 * eye_width(mesh, 0)))
    h, w = rgb.shape[:2]
    medians = []
    for point in CHEEKS:
        x, y = np.clip(np.rint(np.asarray(mesh, np.float64)[point, :2]).astype(int), 0, [w - 1, h - 1])
        medians.append(np.median(rgb[max(0, y - half):y + half + 1, max(0, x - half):x + half + 1] @ LUMA))
    return float(np.mean(medians))


def held_out(errors: Callable[[float], np.ndarray], candidates: np.ndarray, shipped: float,
             name: str) -> list[dict]:
    """Leave each person out: the candidate setting (``name``) that fits the others best
    (least mean ``errors(setting)``, one error per person), its error on the one left out,
    and the shipped setting's."""
    table = {float(c): errors(float(c)) for c in candidates}
    shipped_errors = errors(shipped)
    rows = []
    for i in range(len(shipped_errors)):
        others = np.arange(len(shipped_errors)) != i
        best = min(table, key=lambda c: table[c][others].mean())
        rows.append({f"held_out_{name}": best, "held_out_error": round(float(table[best][i]), 3),
                     "shipped_error": round(float(shipped_errors[i]), 3)})
    return rows


def held_out_caps(needed: np.ndarray, crease: np.ndarray, shipped: float,
                  caps: np.ndarray = CAPS) -> list[dict]:
    """Per person (``needed``: the gain each real lid asks for; ``crease``: crease / unlit):
    the cap that fits the others best, its |log| error on this person, and the shipped cap's."""
    return held_out(lambda cap: np.abs(np.log(np.clip(crease, 1.0, cap) / needed)), caps, shipped, "cap")


def held_out_shadows(real: np.ndarray, edits: np.ndarray, shipped: float,
                     shadows: np.ndarray = SHADOWS) -> list[dict]:
    """Per person (``real``: (P, K) real wide margin profiles; ``edits``: (P, len(shadows), K)
    the rig's at each shadow): the shadow that fits the others best, its mean |log| profile
    error on this person, and the shipped shadow's (one of ``shadows``)."""
    errors = np.abs(np.log(edits / real[:, None])).mean(-1)               # (P, shadows)
    return held_out(lambda shadow: errors[:, int(np.argmin(np.abs(shadows - shadow)))], shadows, shipped, "shadow")


def held_out_lights(real: np.ndarray, unlit: np.ndarray, share: np.ndarray, shipped: float,
                    lights: np.ndarray = LIGHTS) -> list[dict]:
    """Per person (``real``, ``unlit``: the real wide white and the rig's unlit one, over the
    cheeks; ``share``: of the opening the rig uncovered): the light that fits the others best,
    its |log| error on this person, and the shipped light's."""
    return held_out(lambda light: np.abs(np.log((1 + light * share) * unlit / real)), lights, shipped, "light")


def rig_edit(rgb: np.ndarray, mesh: np.ndarray, current: np.ndarray, au: int, value: float, rig,
             **paint: float) -> tuple[np.ndarray, np.ndarray]:
    """The frame with ``au`` moved to ``value`` by the motion stage, with the eye paint's
    settings in ``paint`` (names in :mod:`animator.motion.eyes`) changed, and the moved landmarks."""
    from animator.motion.move import motion_aus, move_landmarks  # noqa: PLC0415

    target = current.copy()
    target[au] = value
    moved = rig.displace(mesh, motion_aus(current, target, rig))
    with mock.patch.multiple(eyes, **paint) if paint else contextlib.nullcontext():
        edited, _ = move_landmarks(rgb, mesh, moved)
    return edited, moved


def clip_brightness(path: Path, clip, rig) -> dict:
    """One person's lids and whites: real shut lids, the rig's unlit ones, the crease; real
    wide whites, the rig's unlit ones and the share of the opening it uncovered (medians over
    frames and both eyes; NaN where the clip has no such frames)."""
    from pipelines.fit_rig import observed_frames  # noqa: PLC0415

    blink, raiser = clip.readings[:, BLINK], clip.readings[:, LID_RAISER]
    shut = spread(np.flatnonzero(blink >= SHUT), SHUT_FRAMES)
    rest = spread(np.flatnonzero(blink <= OPEN), OPEN_FRAMES)
    wide = spread(np.flatnonzero((raiser >= WIDE) & (blink <= OPEN)), WIDE_FRAMES)
    calm = spread(np.flatnonzero((raiser <= CALM) & (blink <= OPEN)), OPEN_FRAMES)
    frames = observed_frames(path, clip.times, {*shut, *rest, *wide, *calm})
    values: dict[str, list[float]] = {"real": [], "unlit": [], "crease": [], "real_white": [], "unlit_white": [],
                                      "uncovered": []}
    for i in shut:
        values["real"] += [lid_brightness(frames[i], clip.landmarks[i], eye) for eye in range(2)]
    for i in wide:
        rgb, mesh = frames[i], clip.landmarks[i]
        cheeks = cheek_brightness(rgb, mesh)
        values["real_white"] += [white_brightness(rgb, eye_contour(mesh, eye), iris_circle(mesh, eye, eye_width(mesh, eye)))
                                 / cheeks for eye in range(2)]
    for i in rest:
        rgb, mesh, current = frames[i], clip.landmarks[i], clip.readings[i]
        closed, moved = rig_edit(rgb, mesh, current, BLINK, 5.0, rig, LID_TONE_GAIN=1.0)       # unlit
        values["unlit"] += [lid_brightness(closed, moved, eye) for eye in range(2)]
        values["crease"] += [float(eyes.lid_skin_colour(rgb, mesh, eye) @ LUMA) for eye in range(2)]
    for i in calm:
        rgb, mesh = frames[i], clip.landmarks[i]
        widened, moved = rig_edit(rgb, mesh, clip.readings[i], LID_RAISER, RAISE, rig, WHITE_LIGHT=0.0)  # unlit
        cheeks = cheek_brightness(rgb, mesh)
        for eye in range(2):
            before, after = eye_contour(mesh, eye), eye_contour(moved, eye)
            iris = iris_circle(mesh, eye, eye_width(mesh, eye))          # the eyeball stays
            values["unlit_white"].append(white_brightness(widened, after, iris) / cheeks)
            values["uncovered"].append(max(0.0, 1 - polygon_area(before) / polygon_area(after)))
    medians = {name: float(np.nanmedian(v)) if np.isfinite(v).any() else float("nan") for name, v in values.items()}
    return {**medians, **clip_margins(frames, clip, wide, calm, rig)}


def clip_margins(frames: dict[int, np.ndarray], clip, wide: list[int], calm: list[int], rig) -> dict:
    """One person's upper-lid margin profiles (:func:`margin_profile`, medians over lid points,
    frames and eyes): real on the ``wide`` frames, and on the ``calm`` ones widened by the rig
    with each of SHADOWS (empty when the clip has no wide frames)."""
    def profiles(rgb: np.ndarray, landmarks: np.ndarray, mesh: np.ndarray) -> list[np.ndarray]:
        return [p for eye in range(2) for p in margin_profile(rgb, eye_contour(landmarks, eye),
                                                             iris_circle(mesh, eye, eye_width(mesh, eye)),
                                                             eye_width(landmarks, eye))]

    real = [p for i in wide for p in profiles(frames[i], clip.landmarks[i], clip.landmarks[i])]
    if not real or not calm:
        return {}
    edits = []
    for shadow in SHADOWS:
        found = []
        for i in calm:
            mesh = clip.landmarks[i]
            widened, moved = rig_edit(frames[i], mesh, clip.readings[i], LID_RAISER, RAISE, rig,
                                      UPPER_SHADOW=float(shadow))
            found += profiles(widened, moved, mesh)
        edits.append(np.median(found, 0))
    return {"real_margin": np.median(real, 0), "edit_margins": np.array(edits)}


def measure(args: argparse.Namespace) -> dict:
    """Closed lids' brightness, raised lids' whites and margins, real against painted, per clip."""
    from animator.estimate import AUEstimator  # noqa: PLC0415
    from animator.motion.rig import AURig  # noqa: PLC0415
    from pipelines.fit_rig import load_clip  # noqa: PLC0415

    estimator, rig = AUEstimator.default(), AURig.default()
    people = {path.stem: clip_brightness(path, load_clip(path, estimator, args.cache), rig) for path in args.clips}
    return {"method": " ".join(__doc__.split("\n\n")[2:]).replace("\n", " "),
            "shipped_cap": eyes.LID_TONE_GAIN, "shipped_light": eyes.WHITE_LIGHT, "shipped_shadow": eyes.UPPER_SHADOW,
            "closed_lids": closed_lids_report(people), "raised_lids": raised_whites_report(people),
            "raised_lid_margins": margins_report(people)}


def closed_lids_report(people: dict[str, dict]) -> dict:
    """Per person the closed lid's gain asked for and given, and the caps left out."""
    lids = {name: p for name, p in people.items() if np.isfinite([p["real"], p["unlit"], p["crease"]]).all()}
    needed = np.array([p["real"] / p["unlit"] for p in lids.values()])
    crease = np.array([p["crease"] / p["unlit"] for p in lids.values()])
    rows = held_out_caps(needed, crease, eyes.LID_TONE_GAIN) if len(lids) >= 2 else [{}] * len(lids)
    per_person = {name: {"real": round(p["real"], 1), "unlit": round(p["unlit"], 1), "crease": round(p["crease"], 1),
                         "needed_gain": round(float(n), 2),
                         "shipped_gain": round(float(np.clip(c, 1.0, eyes.LID_TONE_GAIN)), 2), **row}
                  for (name, p), n, c, row in zip(lids.items(), needed, crease, rows)}
    return {"per_person": per_person, "mean_abs_log_error": mean_errors(rows)}


def raised_whites_report(people: dict[str, dict]) -> dict:
    """Per person the wide white real and unlit, the light asked for, and the lights left out."""
    wide = {name: p for name, p in people.items()
            if np.isfinite([p["real_white"], p["unlit_white"]]).all() and p["uncovered"] > 0}
    real, unlit, share = (np.array([p[key] for p in wide.values()])
                          for key in ("real_white", "unlit_white", "uncovered"))
    rows = held_out_lights(real, unlit, share, eyes.WHITE_LIGHT) if len(wide) >= 2 else [{}] * len(wide)
    per_person = {name: {"real": round(p["real_white"], 3), "unlit": round(p["unlit_white"], 3),
                         "uncovered": round(p["uncovered"], 3),
                         "needed_light": round(float((p["real_white"] / p["unlit_white"] - 1) / p["uncovered"]), 2),
                         "unlit_error": round(float(abs(np.log(p["unlit_white"] / p["real_white"]))), 3), **row}
                  for (name, p), row in zip(wide.items(), rows)}
    return {"per_person": per_person, "mean_abs_log_error": {**mean_errors(rows), **mean_of(per_person, "unlit_error")}}


def margins_report(people: dict[str, dict]) -> dict:
    """Per person the real wide margin profile, and the lashes' shadows left out."""
    margins = {name: p for name, p in people.items() if "real_margin" in p}
    rows = (held_out_shadows(np.array([p["real_margin"] for p in margins.values()]),
                             np.array([p["edit_margins"] for p in margins.values()]), eyes.UPPER_SHADOW)
            if len(margins) >= 2 else [{}] * len(margins))
    per_person = {name: {"real": np.round(p["real_margin"].astype(float), 3).tolist(), **row,
                         "no_shadow_error": round(float(np.abs(np.log(p["edit_margins"][0] / p["real_margin"])).mean()),
                                                  3)}
                  for (name, p), row in zip(margins.items(), rows)}
    errors = {**mean_errors(rows), **mean_of(per_person, "no_shadow_error")}
    return {"per_person": per_person, "mean_abs_log_error": errors}


def mean_of(per_person: dict[str, dict], key: str) -> dict:
    """``{key: its mean over the people}`` (empty without people)."""
    return {key: round(float(np.mean([row[key] for row in per_person.values()])), 3)} if per_person else {}


def mean_errors(rows: list[dict]) -> dict:
    """The mean held-out and shipped errors of :func:`held_out`'s rows."""
    return {key: round(float(np.mean([row[key] for row in rows])), 3)
            for key in ("held_out_error", "shipped_error") if rows and key in rows[0]}


def main(argv: list[str] | None = None) -> int:
    return measure_clips(__doc__.splitlines()[0], measure, argv)


if __name__ == "__main__":
    sys.exit(main())
