"""``python -m pipelines.evaluate``: measure a generator on a set's held-out split for its model card.

For every held-out face (``test_ids.csv``) the generator is asked for several AU targets: the
AUs of other held-out faces (``random_sets`` seeded derangements) and every preset. Measured:

- AU error: the project's estimator (YuNet + face mesh on the edited crop, upscaled
  ``upscale``x first) against the requested target, per AU: MAE and Pearson r. The baseline is
  the same estimator on the unedited input against the same target, so an improvement shows.
  Only pairs where a face was found in both input and edit count; misses are reported. AUs the
  estimator cannot observe are listed but not scored. ``label_noise_mae`` is the estimator on
  the 128 px input crop against the set's own label: roughly the floor the AU error can reach.
- Cycle reconstruction: ``G(G(x, y_target), y_source)`` against ``x``, mean L1 on [0, 1] and
  PSNR (per image, capped at 100 dB), with the set's labels as ``y_source``.
- Change: the mean of ``1 - A`` inside the input face's mesh outline (how much of the face the
  generator repaints; 0 keeps the input) and outside it (should stay near 0).

- Responsiveness per AU: each observable AU requested alone (everything else 0) at 1, 2, 3
  and 4 on ``responsiveness_faces`` faces, read back with the estimator: the mean read-back
  and the share >= 2 at 4, and the requested-vs-read-back Pearson r over 0-4 (0 = neutral).
- Identity (with ``identity_model``, OpenCV Zoo SFace, see pipelines/identity.py): cosine of
  the input's and the edit's embeddings per target, and the share above OpenCV's same-person
  threshold.
- ``motion="rig"``: the generator is fed the crop warped by the set's AU rig towards the
  target (as ``animator train --motion rig`` trains it), the cycle warped back.

Writes REPORT_DIR/metrics.json, metrics.md (tables for the model card and README), grid.png
(held-out faces x presets), morph_strip.png (one face, neutral -> happy -> surprise) and,
with ``compare``, grid_compare.png: each face's row from this model over the row from the
compared (previous) model, which edits plain crops.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from animator import __version__
from animator.aus import AU_NAMES, FACS_NAMES, N_AUS, PRESETS, preset
from animator.errors import AnimatorError
from animator.faces.landmarks import N_LANDMARKS
from animator.media.images import write_image
from animator.outputs import atomic_output, check_output
from animator.progress import progress
from pipelines.identity import SAME_PERSON_COSINE

FORMAT = "animator-evaluation/1"
GRID_COLUMNS = ("neutral", "happy", "sad", "surprise", "fear", "anger", "disgust", "blink")
MORPH_KEYS = ("neutral", "happy", "surprise")
PSNR_CAP_DB = 100.0
HEADER_HEIGHT = 24
GAP = 2
CHUNK = 256  # faces edited, re-edited and measured at a time (bounds memory)
RESPONSE_LEVELS = (1.0, 2.0, 3.0, 4.0)
RESPONSIVE_READBACK = 2.0
MOTIONS = ("none", "rig")


@dataclass
class EvaluateOptions:
    checkpoint: Path | None  # None: the shipped default model
    data: Path
    out: Path
    limit: int | None = None
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 64
    random_sets: int = 2
    seed: int = 0
    upscale: float = 2.0
    score_threshold: float = 0.6
    grid_faces: int = 8
    morph_steps: int = 8
    responsiveness_faces: int = 40
    identity_model: Path | None = None
    compare: Path | None = None  # a previous model ("default": the shipped one) for grid_compare.png
    motion: str = "none"
    overwrite: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.motion not in MOTIONS:
            raise AnimatorError(f"--motion {self.motion!r}: expected one of {', '.join(MOTIONS)}")
        if self.responsiveness_faces < 0:
            raise AnimatorError(f"--responsiveness-faces {self.responsiveness_faces}: must be >= 0")
        if self.limit is not None and self.limit < 1:
            raise AnimatorError(f"--limit {self.limit}: must be at least 1")
        if self.random_sets < 0:
            raise AnimatorError(f"--random-sets {self.random_sets}: must be >= 0")
        if not 1.0 <= self.upscale <= 8.0:
            raise AnimatorError(f"--upscale {self.upscale}: must be within 1-8")
        if self.grid_faces < 1 or self.morph_steps < 2 or self.batch_size < 1:
            raise AnimatorError("--grid-faces and --batch-size must be >= 1, --morph-steps >= 2")


# ---------------------------------------------------------------- data

@dataclass
class HeldOut:
    """The evaluated faces: crops at the model's size and the set's labels (N, 17) on 0-5."""

    names: list[str]
    crops: np.ndarray
    labels: np.ndarray
    available: int  # held-out faces before --limit
    landmarks: np.ndarray | None = None  # (N,P,2) crop pixels, for motion="rig"


def load_heldout(data: Path, size: int, limit: int | None, seed: int, landmarks: bool = False) -> HeldOut:
    """The held-out split; with ``limit``, a seeded sample (set names are not in random order);
    with ``landmarks``, the set's crop landmarks at ``size``."""
    from animator.train.data import load_split
    from animator.train.motion import LANDMARKS_FILE, load_landmarks

    faces = load_split(data, "test")
    if not len(faces):
        raise AnimatorError(f"{data}: no held-out faces (test_ids.csv lists none with labels)")
    rows = np.arange(len(faces))
    if limit is not None and limit < len(faces):
        rows = np.sort(np.random.default_rng(seed).choice(len(faces), limit, replace=False))
    crops = np.stack([faces.image(i, size) for i in rows])
    names = [faces.names[i] for i in rows]
    points = None
    if landmarks:
        points = load_landmarks(data / LANDMARKS_FILE, names) * (size / _set_size(data))
    return HeldOut(names, crops, faces.aus[rows], len(faces), points)


def _set_size(data: Path) -> int:
    """The crop size the set's landmarks were measured at (its manifest's, else 128)."""
    from animator.train.data import read_manifest

    return int((read_manifest(data) or {}).get("size", 128))


def target_sets(labels: np.ndarray, random_sets: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """(name, (N, 17) targets): other held-out faces' AUs, then every preset."""
    n = len(labels)
    rng = np.random.default_rng(seed)
    sets = []
    for k in range(random_sets):
        order = rng.permutation(n)  # a random cycle through all faces: nobody gets its own AUs
        donor = np.empty(n, dtype=np.int64)
        donor[order] = np.roll(order, -1)
        sets.append((f"heldout_{k + 1}", labels[donor]))
    sets += [(name, np.tile(preset(name), (n, 1))) for name in PRESETS]
    return sets


# ---------------------------------------------------------------- reading AUs from crops

@dataclass
class Readings:
    aus: np.ndarray     # (N, 17) float32, 0 where no face was found
    found: np.ndarray   # (N,) bool
    meshes: np.ndarray  # (N, N_LANDMARKS, 3) in crop pixels, NaN where no face was found
    points: np.ndarray  # (N, 5, 2) the detector's 5 points in crop pixels, NaN likewise


class AUReader:
    """The project's estimator on model-sized crops: detector + mesh on a copy upscaled
    ``upscale`` times: on 128 px UTKFace crops 2x finds every face and reads AUs closest to
    the full-resolution photo's (about 7 ms a face on one CPU core)."""

    def __init__(self, upscale: float = 2.0, score_threshold: float = 0.6) -> None:
        from animator.estimate import AUEstimator
        from animator.faces.detect import FaceDetector
        from animator.faces.landmarks import MeshLandmarker

        self.upscale = upscale
        self.detector = FaceDetector(score_threshold=score_threshold)
        self.landmarker = MeshLandmarker()
        self.estimator = AUEstimator.default()
        self.observable = self.estimator.observable

    def locate(self, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(landmarks (478, 3), detector's 5 points (5, 2)) of the largest face in ``crop``,
        in crop pixels; None if none."""
        big = crop
        if self.upscale != 1.0:
            big = cv2.resize(crop, None, fx=self.upscale, fy=self.upscale, interpolation=cv2.INTER_CUBIC)
        faces = self.detector.detect(big)
        if not faces:
            return None
        mesh = self.landmarker.landmarks(big, faces[0])
        # cv2.resize maps big pixel u to crop pixel (u + 0.5) / f - 0.5
        mesh[:, :2] = (mesh[:, :2] + 0.5) / self.upscale - 0.5
        mesh[:, 2] /= self.upscale
        return mesh, (faces[0].points + 0.5) / self.upscale - 0.5

    def read(self, crops: np.ndarray) -> Readings:
        located = [self.locate(crop) for crop in crops]
        found = np.array([m is not None for m in located], dtype=bool)
        meshes = np.full((len(crops), N_LANDMARKS, 3), np.nan, dtype=np.float32)
        points = np.full((len(crops), 5, 2), np.nan, dtype=np.float32)
        aus = np.zeros((len(crops), N_AUS), dtype=np.float32)
        if found.any():
            meshes[found] = np.stack([m[0] for m in located if m is not None])
            points[found] = np.stack([m[1] for m in located if m is not None])
            aus[found] = self.estimator.estimate(meshes[found])
        return Readings(aus, found, meshes, points)


def face_masks(meshes: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size) bool inside each mesh's face outline (all False where the mesh is NaN)."""
    from animator.faces.landmarks import FACE_OVAL

    masks = np.zeros((len(meshes), size, size), dtype=np.uint8)
    for mask, mesh in zip(masks, meshes):
        if np.isfinite(mesh).all():
            outline = np.round(mesh[FACE_OVAL, :2] * 16).astype(np.int32)  # 4 fractional bits
            cv2.fillPoly(mask, [outline], 1, lineType=cv2.LINE_8, shift=4)
    return masks.astype(bool)


class Edits:
    """The generator as it is evaluated: on the crop, or (``rig``) on the crop warped by the
    set's AU rig from the source AUs towards the target, as motion training feeds it."""

    def __init__(self, editor, rig=None) -> None:
        self.editor, self.rig = editor, rig

    def edit(self, crops: np.ndarray, targets: np.ndarray, sources: np.ndarray,
             landmarks: np.ndarray | None) -> tuple[Any, np.ndarray | None]:
        """(the editor's EditResult, the landmark moves of the warp, or None without a rig)."""
        if self.rig is None:
            return self.editor.edit(crops, targets), None
        with torch.no_grad():
            warped, moves = self.rig(_tensor(crops), torch.from_numpy(landmarks).float(),
                                     torch.from_numpy(sources).float(), torch.from_numpy(targets).float())
        return self.editor.edit(_uint8(warped), targets), moves.numpy()

    def back(self, edited: np.ndarray, sources: np.ndarray, landmarks: np.ndarray | None,
             moves: np.ndarray | None) -> Any:
        """The cycle's second edit: the edited face moved back by ``-moves`` from the moved
        landmarks (as motion training does), then asked for its ``sources``."""
        if self.rig is None:
            return self.editor.edit(edited, sources)
        with torch.no_grad():
            moves_t = torch.from_numpy(moves)
            returned = self.rig.apply(_tensor(edited), torch.from_numpy(landmarks).float() + moves_t, -moves_t)
        return self.editor.edit(_uint8(returned), sources)


def _tensor(crops: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W,3) -> float (N,3,H,W) on 0-255."""
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()


def _uint8(images: torch.Tensor) -> np.ndarray:
    return images.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


# ---------------------------------------------------------------- metrics (pure)

def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r, or None when either side is constant (r is undefined)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size < 2 or a.std() < 1e-9 or b.std() < 1e-9:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR (dB) of uint8 images (N, H, W, 3) on a [0, 1] scale, capped."""
    diff = (a.astype(np.float64) - b.astype(np.float64)) / 255.0
    mse = (diff ** 2).reshape(len(a), -1).mean(1)
    with np.errstate(divide="ignore"):
        return np.minimum(10.0 * np.log10(1.0 / mse), PSNR_CAP_DB)


def masked_mean(values: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per-image mean of ``values`` (N, H, W) inside ``masks``; NaN where a mask is empty."""
    counts = masks.reshape(len(masks), -1).sum(1)
    sums = (values * masks).reshape(len(values), -1).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def au_errors(requested: np.ndarray, estimated: np.ndarray, observable: np.ndarray) -> dict[str, dict]:
    """Per AU MAE and Pearson r of ``estimated`` against ``requested`` (both (K, 17));
    unobservable AUs get None."""
    out = {}
    for i, name in enumerate(AU_NAMES):
        if not observable[i] or not len(requested):
            out[name] = {"mae": None, "r": None}
            continue
        out[name] = {"mae": float(np.abs(estimated[:, i] - requested[:, i]).mean()),
                     "r": pearson(requested[:, i], estimated[:, i])}
    return out


def response_summary(levels: np.ndarray, readback: np.ndarray, found: np.ndarray) -> dict:
    """One AU's responsiveness from (L,) requested levels (the first 0, the last the top) and
    (L, N) read-back values with (L, N) found flags: the mean read-back and the share >=
    RESPONSIVE_READBACK at the top level, the read-back at 0, and Pearson r over all pairs."""
    top, zero = found[-1], found[0]
    requested = np.repeat(np.asarray(levels, np.float64)[:, None], readback.shape[1], axis=1)
    return {
        "n": int(top.sum()),
        "mean_at_top": float(readback[-1][top].mean()) if top.any() else None,
        "share_responsive": float((readback[-1][top] >= RESPONSIVE_READBACK).mean()) if top.any() else None,
        "mean_at_zero": float(readback[0][zero].mean()) if zero.any() else None,
        "r": pearson(requested[found], readback[found]),
    }


def _mean(values) -> float | None:
    """Mean of the defined values (None and NaN skipped); None when there are none."""
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


# ---------------------------------------------------------------- the run

@dataclass
class SetResult:
    """One target set's measurements per face."""

    targets: np.ndarray      # (N, 17)
    estimated: np.ndarray    # (N, 17)
    found: np.ndarray        # (N,) bool: a face in the edited crop
    cycle_l1: np.ndarray     # (N,)
    cycle_psnr: np.ndarray   # (N,)
    change_face: np.ndarray  # (N,) NaN where the input's face was not found
    change_outside: np.ndarray
    identity: np.ndarray     # (N,) SFace cosine input vs edit, NaN where not measured


def measure_set(edits: Edits, reader: AUReader, held: HeldOut, inputs: Readings, masks: np.ndarray,
                targets: np.ndarray, bar=None, identity=None) -> SetResult:
    """``identity``: (FaceIdentity, input embeddings (N,128) NaN where no face) or None."""
    n = len(held.crops)
    result = SetResult(np.asarray(targets, dtype=np.float32), np.zeros((n, N_AUS), np.float32),
                       np.zeros(n, bool), *(np.zeros(n) for _ in range(4)), np.full(n, np.nan))
    for start in range(0, n, CHUNK):
        part = slice(start, min(start + CHUNK, n))
        crops = held.crops[part]
        points = None if held.landmarks is None else held.landmarks[part]
        edited, moves = edits.edit(crops, result.targets[part], held.labels[part], points)
        back = edits.back(edited.output, held.labels[part], points, moves)
        read = reader.read(edited.output)
        result.estimated[part], result.found[part] = read.aus, read.found
        if identity is not None:
            result.identity[part] = identity_cosines(identity[0], edited.output, read, identity[1][part])
        diff = np.abs(back.output.astype(np.float32) - crops.astype(np.float32)) / 255.0
        result.cycle_l1[part] = diff.reshape(len(crops), -1).mean(1)
        result.cycle_psnr[part] = psnr(back.output, crops)
        change = 1.0 - edited.attention
        result.change_face[part] = np.where(inputs.found[part], masked_mean(change, masks[part]), np.nan)
        result.change_outside[part] = np.where(inputs.found[part], masked_mean(change, ~masks[part]), np.nan)
        if bar is not None:
            bar.update(len(crops))
    return result


def embed_faces(model, crops: np.ndarray, readings: Readings) -> np.ndarray:
    """(N, 128) SFace embeddings of the faces found, NaN rows elsewhere."""
    from pipelines.identity import align_face

    out = np.full((len(crops), 128), np.nan, np.float32)
    rows = np.flatnonzero(readings.found)
    if len(rows):
        out[rows] = model.embed(np.stack([align_face(crops[i], readings.points[i]) for i in rows]))
    return out


def identity_cosines(model, edited: np.ndarray, readings: Readings, inputs: np.ndarray) -> np.ndarray:
    from pipelines.identity import cosine

    values = cosine(embed_faces(model, edited, readings), inputs)
    return np.where(np.isfinite(values), values, np.nan)


def responsiveness(edits: Edits, reader: AUReader, held: HeldOut, rows: np.ndarray,
                   observable: np.ndarray, bar=None) -> dict[str, dict]:
    """Per observable AU: :func:`response_summary` of that AU requested alone from neutral."""
    crops, sources = held.crops[rows], held.labels[rows]
    points = None if held.landmarks is None else held.landmarks[rows]
    n = len(rows)

    def read(targets: np.ndarray) -> Readings:
        edited, _ = edits.edit(crops, targets, sources, points)
        if bar is not None:
            bar.update(n)
        return reader.read(edited.output)

    neutral = read(np.zeros((n, N_AUS), np.float32))
    levels = np.array((0.0, *RESPONSE_LEVELS))
    out = {}
    for a, name in enumerate(AU_NAMES):
        if not observable[a]:
            continue
        readings = [neutral]
        for level in RESPONSE_LEVELS:
            targets = np.zeros((n, N_AUS), np.float32)
            targets[:, a] = level
            readings.append(read(targets))
        out[name] = response_summary(levels, np.stack([r.aus[:, a] for r in readings]),
                                     np.stack([r.found for r in readings]))
    return out


def summarise(held: HeldOut, inputs: Readings, sets: dict[str, SetResult],
              observable: np.ndarray) -> dict[str, Any]:
    """Every number of the report (JSON-ready; undefined values are None)."""
    requested, generated, baseline = [], [], []
    per_target = {}
    for name, res in sets.items():
        pair = res.found & inputs.found
        wanted = res.targets[pair]
        requested.append(wanted)
        generated.append(res.estimated[pair])
        baseline.append(inputs.aus[pair])
        per_target[name] = {
            "targets": "other held-out faces' AUs" if name.startswith("heldout_") else "preset",
            "n": int(len(res.found)), "found": int(res.found.sum()),
            "au_mae": _mean([np.abs(res.estimated[pair] - wanted)[:, observable].mean()] if pair.any() else []),
            "au_mae_input": _mean([np.abs(inputs.aus[pair] - wanted)[:, observable].mean()] if pair.any() else []),
            "cycle_l1": float(res.cycle_l1.mean()), "cycle_psnr_db": float(res.cycle_psnr.mean()),
            "change_face": _mean(res.change_face[inputs.found]),
            "change_outside": _mean(res.change_outside[inputs.found]),
            "identity_cosine": _mean(res.identity),
            "identity_same_person": (float(np.mean(res.identity[np.isfinite(res.identity)] >= SAME_PERSON_COSINE))
                                     if np.isfinite(res.identity).any() else None),
        }
    requested, generated, baseline = (np.concatenate(x) for x in (requested, generated, baseline))
    edited_err = au_errors(requested, generated, observable)
    input_err = au_errors(requested, baseline, observable)
    noise = np.abs(inputs.aus[inputs.found] - held.labels[inputs.found])
    per_au = {}
    for i, name in enumerate(AU_NAMES):
        per_au[name] = {
            "facs_name": FACS_NAMES[name], "observable": bool(observable[i]),
            "mae": edited_err[name]["mae"], "r": edited_err[name]["r"],
            "mae_input": input_err[name]["mae"], "r_input": input_err[name]["r"],
            "label_noise_mae": float(noise[:, i].mean()) if observable[i] and len(noise) else None,
        }
    all_sets = list(sets.values())
    found_edits = sum(int(r.found.sum()) for r in all_sets)
    total_edits = sum(len(r.found) for r in all_sets)
    return {
        "n_faces": len(held.names),
        "n_edits": total_edits,
        "faces_found": {"inputs": int(inputs.found.sum()), "edits": found_edits,
                        "edits_missed": total_edits - found_edits,
                        "pairs_scored": int(len(requested))},
        "au_error": {
            "observable": [n for n, o in zip(AU_NAMES, observable) if o],
            "mean": {key: _mean(per_au[n][key] for n in AU_NAMES if per_au[n]["observable"])
                     for key in ("mae", "mae_input", "r", "r_input", "label_noise_mae")},
            "per_au": per_au,
        },
        "cycle": {"l1": float(np.mean([r.cycle_l1.mean() for r in all_sets])),
                  "psnr_db": float(np.mean([r.cycle_psnr.mean() for r in all_sets]))},
        "change": {"face": _mean(t["change_face"] for t in per_target.values()),
                   "outside_face": _mean(t["change_outside"] for t in per_target.values()),
                   "presets": _mean(per_target[p]["change_face"] for p in PRESETS)},
        "identity": {"presets": _mean(per_target[p]["identity_cosine"] for p in PRESETS),
                     "all_targets": _mean(t["identity_cosine"] for t in per_target.values())},
        "per_target": per_target,
    }


def evaluate(opts: EvaluateOptions) -> dict[str, Any]:
    """Measure, draw and write the report folder; returns metrics.json's content."""
    inputs_paths = [opts.data] + ([opts.checkpoint] if opts.checkpoint is not None else [])
    check_output(opts.out, inputs_paths, opts.overwrite, directory=True)
    from animator.model.checkpoint import DEFAULT_MODEL_DIR, load_generator
    from animator.model.inference import FaceEditor
    from animator.train.data import TEST_IDS, dataset_summary

    from animator.train.motion import RIG_FILE, load_rig

    identity_model = None
    if opts.identity_model is not None:
        from pipelines.identity import FaceIdentity

        identity_model = FaceIdentity(opts.identity_model)
    generator, config = load_generator(opts.checkpoint)
    n_parameters = sum(p.numel() for p in generator.parameters())
    editor = FaceEditor(generator, opts.device, opts.precision, opts.batch_size, config=config)
    rig = load_rig(opts.data / RIG_FILE) if opts.motion == "rig" else None
    edits = Edits(editor, rig)
    held = load_heldout(opts.data, editor.image_size, opts.limit, opts.seed, landmarks=rig is not None)
    reader = AUReader(opts.upscale, opts.score_threshold)
    inputs = reader.read(held.crops)
    masks = face_masks(inputs.meshes, editor.image_size)
    identity = None if identity_model is None else (identity_model, embed_faces(identity_model, held.crops, inputs))
    sets = target_sets(held.labels, opts.random_sets, opts.seed)
    response_rows = pick_faces(inputs.found, opts.responsiveness_faces, opts.seed)
    n_observable = int(reader.observable.sum())
    work = len(sets) * len(held.names) + len(response_rows) * (1 + n_observable * len(RESPONSE_LEVELS))
    with progress(work, "evaluate", opts.quiet, unit="face") as bar:
        results = {name: measure_set(edits, reader, held, inputs, masks, targets, bar, identity)
                   for name, targets in sets}
        response = responsiveness(edits, reader, held, response_rows, reader.observable, bar) \
            if len(response_rows) else {}
    metrics = summarise(held, inputs, results, reader.observable)
    metrics["responsiveness"] = {"faces": len(response_rows), "levels": [0.0, *RESPONSE_LEVELS],
                                 "responsive_readback": RESPONSIVE_READBACK, "per_au": response}
    grid_rows = pick_faces(inputs.found, opts.grid_faces, opts.seed)
    grid = draw_grid(edits, held, grid_rows)
    strip = draw_morph(edits, held, grid_rows[0], opts.morph_steps)
    compare = None
    if opts.compare is not None:
        previous = FaceEditor.from_checkpoint(None if str(opts.compare) == "default" else opts.compare,
                                              opts.device, opts.precision, opts.batch_size)
        compare = interleave_grids(grid, draw_grid(Edits(previous), held, grid_rows), len(grid_rows))
    test_ids = opts.data / TEST_IDS
    report = {
        "format": FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "animator_version": __version__,
        "checkpoint": {"path": str(opts.checkpoint or DEFAULT_MODEL_DIR), "parameters": n_parameters,
                       "config": config.to_json()},
        "data": {**dataset_summary(opts.data), "split": "test", "held_out": held.available,
                 "evaluated": len(held.names), "limit": opts.limit,
                 "test_ids_sha256": hashlib.sha256(test_ids.read_bytes()).hexdigest()},
        "settings": {"seed": opts.seed, "random_sets": opts.random_sets, "presets": list(PRESETS),
                     "device": str(editor.device), "precision": editor.precision,
                     "upscale": opts.upscale, "score_threshold": opts.score_threshold,
                     "estimator": reader.estimator.provenance, "psnr_cap_db": PSNR_CAP_DB,
                     "grid_faces": [held.names[i] for i in grid_rows],
                     "morph_face": held.names[grid_rows[0]], "morph": list(MORPH_KEYS),
                     "motion": opts.motion,
                     "identity_model": None if opts.identity_model is None else str(opts.identity_model),
                     "compare": None if opts.compare is None else str(opts.compare)},
        **_rounded(metrics),
        "files": {"grid": "grid.png", "morph_strip": "morph_strip.png", "table": "metrics.md",
                  **({"grid_compare": "grid_compare.png"} if compare is not None else {})},
    }
    with atomic_output(opts.out, inputs_paths, opts.overwrite, directory=True) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "metrics.md").write_text(markdown(report))
        write_image(tmp / "grid.png", grid)
        write_image(tmp / "morph_strip.png", strip)
        if compare is not None:
            write_image(tmp / "grid_compare.png", compare)
    return report


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, float):
        return round(value, 5) if np.isfinite(value) else None
    return value


# ---------------------------------------------------------------- pictures

def pick_faces(found: np.ndarray, count: int, seed: int) -> np.ndarray:
    """A seeded sample of faces, those the estimator found first (they are the clear ones)."""
    order = np.random.default_rng(seed + 1).permutation(len(found))
    order = np.concatenate([order[found[order]], order[~found[order]]])
    return order[:count]


def labelled_row(cells: list[np.ndarray], titles: list[str]) -> np.ndarray:
    """Cells side by side with GAP px between them and a white header strip of titles."""
    size = cells[0].shape[0]
    width = len(cells) * size + (len(cells) - 1) * GAP
    header = np.full((HEADER_HEIGHT, width, 3), 255, np.uint8)
    body = np.full((size, width, 3), 255, np.uint8)
    for k, (cell, title) in enumerate(zip(cells, titles)):
        x = k * (size + GAP)
        body[:, x:x + size] = cell
        scale = 0.45
        (tw, th), _ = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.putText(header, title, (x + max(0, (size - tw) // 2), (HEADER_HEIGHT + th) // 2),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([header, body])


def draw_grid(edits: Edits, held: HeldOut, rows: np.ndarray) -> np.ndarray:
    """Rows: faces; columns: the input, then each of GRID_COLUMNS."""
    crops, n, k = held.crops[rows], len(rows), len(GRID_COLUMNS)
    targets = np.stack([preset(name) for name in GRID_COLUMNS])
    points = None if held.landmarks is None else np.repeat(held.landmarks[rows], k, axis=0)
    edited, _ = edits.edit(np.repeat(crops, k, axis=0), np.tile(targets, (n, 1)),
                           np.repeat(held.labels[rows], k, axis=0), points)
    edited = edited.output.reshape(n, k, *crops.shape[1:])
    rows = [labelled_row([crops[0], *edited[0]], ["input", *GRID_COLUMNS])]
    for i in range(1, n):
        row = labelled_row([crops[i], *edited[i]], [""] * (1 + len(GRID_COLUMNS)))[HEADER_HEIGHT:]
        rows += [np.full((GAP, row.shape[1], 3), 255, np.uint8), row]
    return np.vstack(rows)


def morph_targets(steps: int) -> tuple[np.ndarray, list[str]]:
    """``steps + 1`` AU vectors along MORPH_KEYS, evenly spaced, and their labels."""
    keys = np.stack([preset(name) for name in MORPH_KEYS])
    t = np.linspace(0.0, len(MORPH_KEYS) - 1, steps + 1)
    lower = np.minimum(np.floor(t).astype(int), len(MORPH_KEYS) - 2)
    w = (t - lower)[:, None].astype(np.float32)
    aus = (1 - w) * keys[lower] + w * keys[lower + 1]
    labels = [MORPH_KEYS[round(x)] if abs(x - round(x)) < 1e-6 else "" for x in t]
    return aus.astype(np.float32), labels


def draw_morph(edits: Edits, held: HeldOut, row: int, steps: int) -> np.ndarray:
    aus, labels = morph_targets(steps)
    crop = held.crops[row]
    points = None if held.landmarks is None else np.repeat(held.landmarks[row][None], len(aus), axis=0)
    edited, _ = edits.edit(np.repeat(crop[None], len(aus), axis=0), aus,
                           np.repeat(held.labels[row][None], len(aus), axis=0), points)
    return labelled_row([crop, *edited.output], ["input", *labels])


def interleave_grids(grid: np.ndarray, previous: np.ndarray, faces: int) -> np.ndarray:
    """Two grids of the same faces -> one: under the header, each face's row from ``grid``,
    then its row from ``previous`` (marked by a grey bar on the left), then a gap."""
    size = (grid.shape[0] - HEADER_HEIGHT - (faces - 1) * GAP) // faces
    marker = 4
    parts = [np.pad(grid[:HEADER_HEIGHT], ((0, 0), (marker, 0), (0, 0)), constant_values=255)]
    for i in range(faces):
        top = HEADER_HEIGHT + i * (size + GAP)
        ours = np.pad(grid[top:top + size], ((0, 0), (marker, 0), (0, 0)), constant_values=255)
        theirs = np.pad(previous[top:top + size], ((0, 0), (marker, 0), (0, 0)), constant_values=128)
        gap = np.full((GAP, ours.shape[1], 3), 255, np.uint8)
        parts += [ours, gap[:1], theirs] + ([gap, gap] if i < faces - 1 else [])
    return np.vstack(parts)


# ---------------------------------------------------------------- markdown

def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    """The model card's evaluation tables."""
    err = report["au_error"]
    mean = err["mean"]
    found = report["faces_found"]
    n_sets = len(report["per_target"])
    lines = [
        f"Held-out split: {report['n_faces']} faces (of {report['data']['held_out']}), "
        f"{n_sets} targets each ({report['settings']['random_sets']} sets of other held-out faces' "
        f"AUs and {n_sets - report['settings']['random_sets']} presets), {report['n_edits']} edits. "
        f"AUs read back with animator's landmark estimator ({len(err['observable'])} observable AUs).",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| AU MAE, edited face vs requested (0-5 scale) | {_fmt(mean['mae'])} |",
        f"| AU MAE, unedited input vs requested (baseline) | {_fmt(mean['mae_input'])} |",
        f"| AU Pearson r, edited / input | {_fmt(mean['r'])} / {_fmt(mean['r_input'])} |",
        f"| estimator noise on inputs (label vs 128 px crop MAE) | {_fmt(mean['label_noise_mae'])} |",
        f"| faces found in edits | {found['edits']} / {report['n_edits']} "
        f"({100 * found['edits'] / max(1, report['n_edits']):.1f} %) |",
        f"| cycle reconstruction L1 ([0, 1]) | {_fmt(report['cycle']['l1'], 4)} |",
        f"| cycle reconstruction PSNR | {_fmt(report['cycle']['psnr_db'], 2)} dB |",
        f"| mean change 1 - A inside the face (presets) | {_fmt(report['change']['presets'])} |",
        f"| mean change 1 - A inside the face (all targets) | {_fmt(report['change']['face'])} |",
        f"| mean change 1 - A outside the face | {_fmt(report['change']['outside_face'])} |",
        "",
        "| AU | FACS name | MAE edited | MAE input | r edited | r input | estimator noise |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in err["per_au"].items():
        if not row["observable"]:
            lines.append(f"| {name} | {row['facs_name']} | not observable | | | | |")
            continue
        lines.append(f"| {name} | {row['facs_name']} | {_fmt(row['mae'])} | {_fmt(row['mae_input'])} | "
                     f"{_fmt(row['r'])} | {_fmt(row['r_input'])} | {_fmt(row['label_noise_mae'])} |")
    lines += ["",
              "| target | AU MAE edited | AU MAE input | faces found | change (face) | cycle L1 | "
              "cycle PSNR | identity cosine | same person |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, row in report["per_target"].items():
        lines.append(f"| {name} | {_fmt(row['au_mae'])} | {_fmt(row['au_mae_input'])} | "
                     f"{row['found']}/{row['n']} | {_fmt(row['change_face'])} | "
                     f"{_fmt(row['cycle_l1'], 4)} | {_fmt(row['cycle_psnr_db'], 2)} | "
                     f"{_fmt(row['identity_cosine'])} | {_fmt(row['identity_same_person'], 2)} |")
    response = report["responsiveness"]
    if response["per_au"]:
        top = response["levels"][-1]
        lines += ["",
                  f"Responsiveness: each AU requested alone from neutral at "
                  f"{', '.join(f'{v:g}' for v in response['levels'][1:])} on {response['faces']} faces, "
                  f"read back with the estimator (r over requested 0-{top:g}).",
                  "",
                  f"| AU | read back at 0 | read back at {top:g} | share >= {response['responsive_readback']:g} "
                  f"at {top:g} | r requested vs read back |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for name, row in response["per_au"].items():
            lines.append(f"| {name} | {_fmt(row['mean_at_zero'], 2)} | {_fmt(row['mean_at_top'], 2)} | "
                         f"{_fmt(row['share_responsive'], 2)} | {_fmt(row['r'])} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> None:
    import click

    @click.command("evaluate", context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--checkpoint", type=click.Path(path_type=Path),
                  help="Generator: animator model folder, .safetensors or GANimation .pth "
                       "(default: the shipped model).")
    @click.option("--data", required=True, type=click.Path(path_type=Path),
                  help="GANimation-layout set; its test_ids.csv is the held-out split.")
    @click.option("--out", required=True, type=click.Path(path_type=Path), help="Report folder to write.")
    @click.option("--limit", type=int, help="Evaluate a seeded sample of this many held-out faces.")
    @click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
    @click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto",
                  show_default=True)
    @click.option("--batch-size", type=int, default=64, show_default=True)
    @click.option("--random-sets", type=int, default=2, show_default=True,
                  help="Target sets drawn from other held-out faces' AUs (besides the presets).")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--upscale", type=float, default=2.0, show_default=True,
                  help="Enlarge crops this much before detecting faces in them.")
    @click.option("--responsiveness-faces", type=int, default=40, show_default=True,
                  help="Faces on which each AU is requested alone at 1-4 and read back.")
    @click.option("--identity-model", type=click.Path(path_type=Path),
                  help="OpenCV Zoo SFace ONNX file: identity cosine input vs edit (needs '.[eval]').")
    @click.option("--compare", type=click.Path(path_type=Path),
                  help="A previous model ('default': the shipped one): grid_compare.png shows its "
                       "row under each of this model's.")
    @click.option("--motion", type=click.Choice(MOTIONS), default="none", show_default=True,
                  help="rig: feed the generator the crop warped by the set's AU rig (motion training).")
    @click.option("--overwrite", is_flag=True, help="Replace an existing report folder.")
    @click.option("--quiet", "-q", is_flag=True)
    def command(**kwargs: Any) -> None:
        """Measure a generator on the held-out faces: AU error, cycle error, attention, pictures."""
        try:
            report = evaluate(EvaluateOptions(**kwargs))
        except AnimatorError as exc:
            raise click.ClickException(str(exc)) from None
        if not kwargs["quiet"]:
            click.echo(f"{kwargs['out']}: {report['n_faces']} faces, AU MAE "
                       f"{_fmt(report['au_error']['mean']['mae'])} (input "
                       f"{_fmt(report['au_error']['mean']['mae_input'])}), cycle L1 "
                       f"{_fmt(report['cycle']['l1'], 4)}", err=True)

    command.main(args=argv, prog_name="python -m pipelines.evaluate")


if __name__ == "__main__":
    main(sys.argv[1:])
