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

Raised lids. The frames read wide (AU05 >= WIDE, AU45 <= OPEN) show how bright the white a
raised lid uncovers is (the opening above the iris); ``eyeball_colours`` paints it from the eye
at rest (the brightest tenth of its white, on the open frames): per person, both and their
ratio. Prints JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from unittest import mock

import numpy as np

from animator.aus import AU_NAMES
from animator.motion import eyes
from animator.motion.eyes import LUMA, eye_contour, eye_width, iris_circle, polygon_coverage
from animator.motion.rig import UPPER_LID_SKIN
from pipelines import measure_clips

SHUT, OPEN, WIDE = 4.5, 0.3, 3.0     # AU45 readings of shut and open eyes; AU05 of wide ones
OPEN_FRAMES, SHUT_FRAMES, WIDE_FRAMES = 20, 30, 15   # at most, evenly spread over the clip
CAPS = np.round(np.arange(1.0, 2.001, 0.05), 2)
LID_RAISER, BLINK = AU_NAMES.index("AU05"), AU_NAMES.index("AU45")


def spread(indices: np.ndarray, count: int) -> list[int]:
    """At most ``count`` of ``indices``, evenly spread."""
    if len(indices) <= count:
        return indices.tolist()
    return indices[np.linspace(0, len(indices) - 1, count).astype(int)].tolist()


def lid_brightness(rgb: np.ndarray, mesh: np.ndarray, eye: int) -> float:
    """Mean luma of the upper lid's skin between its lash band and its fold (frame px mesh)."""
    fold = np.asarray(mesh, np.float64)[list(UPPER_LID_SKIN[eye][0]), :2]
    return region_luma(rgb, eyes.lid_skin(eye_contour(mesh, eye), fold, eye_width(mesh, eye)))


def region_luma(rgb: np.ndarray, polygon: np.ndarray, keep=None) -> float:
    """Mean luma of the pixels the polygon (frame px) covers by more than half (and that
    ``keep(xs, ys)``, frame px, accepts); NaN when fewer than 4 are."""
    h, w = rgb.shape[:2]
    x0, y0 = np.clip(np.floor(polygon.min(0)).astype(int) - 1, 0, [w, h])
    x1, y1 = np.clip(np.ceil(polygon.max(0)).astype(int) + 2, 0, [w, h])
    inside = polygon_coverage(polygon, (x0, y0), (y1 - y0, x1 - x0)) > 0.5
    if keep is not None:
        ys, xs = np.mgrid[y0:y1, x0:x1]
        inside &= keep(xs, ys)
    pixels = rgb[y0:y1, x0:x1][inside].astype(np.float32)
    return float((pixels @ LUMA).mean()) if len(pixels) >= 4 else float("nan")


def white_above_iris(rgb: np.ndarray, mesh: np.ndarray, eye: int) -> float:
    """Mean luma of the eye's opening above its iris (outside 1.15 iris radii, above a third
    of a radius over the centre, within 1.2 radii to either side): the white a raised lid shows."""
    (cx, cy), radius = iris_circle(mesh, eye, eye_width(mesh, eye))

    def above(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return ((np.hypot(xs - cx, ys - cy) > 1.15 * radius) & (ys < cy - 0.3 * radius)
                & (np.abs(xs - cx) < 1.2 * radius))

    return region_luma(rgb, eye_contour(mesh, eye), above)


def painted_white(rgb: np.ndarray, mesh: np.ndarray, eye: int) -> float:
    """Luma of the white :func:`animator.motion.eyes.eyeball_colours` samples from this eye."""
    contour = eye_contour(mesh, eye)
    h, w = rgb.shape[:2]
    x0, y0 = np.clip(np.floor(contour.min(0)).astype(int) - 2, 0, [w, h])
    x1, y1 = np.clip(np.ceil(contour.max(0)).astype(int) + 3, 0, [w, h])
    local = rgb[y0:y1, x0:x1].astype(np.float32)
    (cx, cy), radius = iris_circle(mesh, eye, eye_width(mesh, eye))
    ys, xs = np.mgrid[y0:y1, x0:x1]
    opening = polygon_coverage(contour, (x0, y0), local.shape[:2])
    _, white = eyes.eyeball_colours(local, opening, np.hypot(xs - cx, ys - cy).astype(np.float32), radius)
    return float(white @ LUMA)


def held_out_caps(needed: np.ndarray, crease: np.ndarray, shipped: float,
                  caps: np.ndarray = CAPS) -> list[dict]:
    """Per person (``needed``: the gain each real lid asks for; ``crease``: crease / unlit):
    the cap that fits the others best, its |log| error on this person, and the shipped cap's."""
    def errors(cap: float) -> np.ndarray:
        return np.abs(np.log(np.clip(crease, 1.0, cap) / needed))

    rows = []
    for i in range(len(needed)):
        others = np.arange(len(needed)) != i
        cap = float(min(caps, key=lambda c: errors(c)[others].mean()))
        rows.append({"held_out_cap": cap, "held_out_error": round(float(errors(cap)[i]), 3),
                     "shipped_error": round(float(errors(shipped)[i]), 3)})
    return rows


def clip_brightness(path: Path, clip, rig) -> dict:
    """One person's lids and whites: real shut lids, the rig's unlit ones, the crease, the
    painted and the real white (medians over frames and both eyes; NaN where the clip has no
    such frames)."""
    from animator.motion.move import added_aus, move_landmarks  # noqa: PLC0415
    from pipelines.fit_rig import observed_frames  # noqa: PLC0415

    blink, raiser = clip.readings[:, BLINK], clip.readings[:, LID_RAISER]
    shut = spread(np.flatnonzero(blink >= SHUT), SHUT_FRAMES)
    rest = spread(np.flatnonzero(blink <= OPEN), OPEN_FRAMES)
    wide = spread(np.flatnonzero((raiser >= WIDE) & (blink <= OPEN)), WIDE_FRAMES)
    frames = observed_frames(path, clip.times, {*shut, *rest, *wide})
    values: dict[str, list[float]] = {"real": [], "unlit": [], "crease": [], "painted_white": [], "real_white": []}
    for i in shut:
        values["real"] += [lid_brightness(frames[i], clip.landmarks[i], eye) for eye in range(2)]
    for i in wide:
        values["real_white"] += [white_above_iris(frames[i], clip.landmarks[i], eye) for eye in range(2)]
    for i in rest:
        rgb, mesh, current = frames[i], clip.landmarks[i], clip.readings[i]
        target = current.copy()
        target[BLINK] = 5.0
        moved = rig.displace(mesh, added_aus(current, target, rig))
        with mock.patch.object(eyes, "LID_TONE_GAIN", 1.0):   # the stretched lid, unlit
            closed, _ = move_landmarks(rgb, mesh, moved)
        values["unlit"] += [lid_brightness(closed, moved, eye) for eye in range(2)]
        values["crease"] += [float(eyes.lid_skin_colour(rgb, mesh, eye) @ LUMA) for eye in range(2)]
        values["painted_white"] += [painted_white(rgb, mesh, eye) for eye in range(2)]
    return {name: float(np.nanmedian(v)) if np.isfinite(v).any() else float("nan")
            for name, v in values.items()}


def measure(args: argparse.Namespace) -> dict:
    """Closed lids' and raised lids' brightness, real against painted, per clip."""
    from animator.estimate import AUEstimator  # noqa: PLC0415
    from animator.motion.rig import AURig  # noqa: PLC0415
    from pipelines.fit_rig import load_clip  # noqa: PLC0415

    estimator, rig = AUEstimator.default(), AURig.default()
    people = {path.stem: clip_brightness(path, load_clip(path, estimator, args.cache), rig) for path in args.clips}
    lids = {name: p for name, p in people.items() if np.isfinite([p["real"], p["unlit"], p["crease"]]).all()}
    needed = np.array([p["real"] / p["unlit"] for p in lids.values()])
    crease = np.array([p["crease"] / p["unlit"] for p in lids.values()])
    held_out = held_out_caps(needed, crease, eyes.LID_TONE_GAIN) if len(lids) >= 2 else [{}] * len(lids)
    closed = {name: {"real": round(p["real"], 1), "unlit": round(p["unlit"], 1), "crease": round(p["crease"], 1),
                     "needed_gain": round(float(n), 2),
                     "shipped_gain": round(float(np.clip(c, 1.0, eyes.LID_TONE_GAIN)), 2), **h}
              for (name, p), n, c, h in zip(lids.items(), needed, crease, held_out)}
    raised = {name: {"painted": round(p["painted_white"], 1), "real_above_iris": round(p["real_white"], 1),
                     "ratio": round(p["real_white"] / p["painted_white"], 2)}
              for name, p in people.items() if np.isfinite([p["real_white"], p["painted_white"]]).all()}
    mean = {key: round(float(np.mean([row[key] for row in held_out])), 3)
            for key in ("held_out_error", "shipped_error") if held_out and key in held_out[0]}
    return {"method": " ".join(__doc__.split("\n\n")[2:4]).replace("\n", " "), "shipped_cap": eyes.LID_TONE_GAIN,
            "closed_lids": {"per_person": closed, "mean_abs_log_error": mean}, "raised_lids": raised}


def main(argv: list[str] | None = None) -> int:
    return measure_clips(__doc__.splitlines()[0], measure, argv)


if __name__ == "__main__":
    sys.exit(main())
