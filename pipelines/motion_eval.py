"""Does an edit read back as what was asked? ``--motion warp`` against ``none`` on real photos.

    python -m pipelines.motion_eval --utkface TAR [--faces 40] [--sheet SHEET.jpg] [--extra IMG...]
                                    [--identity SFACE.onnx] [--oracle CLIPS_DIR]
                                    [--relax FACES [--relax-sheet SHEET.jpg]]

Faces: UTKFace photos (none of them was used to fit the rig, so all are held out), drawn in a
fixed order, upscaled 2x and padded so the detector sees a whole head, and kept when they are
near neutral (each tested AU reads below 1). For every face and every tested AU, the face is
edited to its own AUs with that one AU set to 4 (``animator morph``'s path: the largest face,
the shipped generator, pasted back at full resolution), then the edited photo is read again by
the estimator. Prints JSON: per AU and motion mode, the fraction of faces reading >= 2 and the
median reading; ``rig landmarks`` reads the rig's target landmarks themselves (no picture), so
a gap between it and ``warp`` is the landmark model not re-finding the motion on the photo;
``warp, region re-found`` reads the landmarks found on the ``warp`` edit with those inside the
requested AU's FACS region (the rig's support) put where the rig moved them: whether what the
estimator misses is that region's motion or the rest of the face; ``motion_found`` is, per AU,
the median over faces of how much of the rig's move of that region the landmark model finds
on the ``warp`` edit (the found moves projected on the rig's, in the face frame; 1: all).
``--sheet`` writes a contact sheet: faces x presets, each as today's edit (motion none) and
the new ones (warp+generator, warp). ``--extra`` adds photos (e.g. frames of clips) to the
sheet only. ``--identity`` (the SFace model, :mod:`pipelines.identity`) adds, per preset and
motion mode, the mean cosine between the embeddings of each input face and its edit, and the
share of edits OpenCV's threshold still calls the same person. ``--oracle`` (the expression
clips' folder) asks what motion alone can make the estimator read: a neutral frame of each
acting clip is warped so that its landmarks land exactly on those of the same person's
expressive frame (pose-aligned), once with the whole face's motion and once with only the
motion inside the requested AUs' FACS regions (the rig's supports); both are read again.
``--relax`` asks whether motion takes an expression back: up to that many other UTKFace photos
that smile (AU12 reads >= 2) are edited to ``neutral`` with ``warp``, and read again (the
median readings of the smile's AUs before and after, and the share of faces whose AU12 reads
below 1 after); ``--relax-sheet`` shows them before and after.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from animator.aus import AU_NAMES, PRESETS, parse_target
from animator.errors import AnimatorError
from animator.media.images import read_image, write_image
from pipelines import print_report

TESTED = ("AU01", "AU02", "AU04", "AU05", "AU12", "AU26", "AU45")
REQUEST = 4.0
READS_AS = 2.0
SHEET_TARGETS = ("happy", "surprise", "anger", "blink", "AU26=4")
SHEET_FACES = 6
RIG_LANDMARKS = "rig landmarks"  # the rig's targets read directly: the warp's ceiling
REFOUND = "warp, region re-found"  # the warp's found landmarks, the AU's region at the rig's targets
MOVES_AT_LEAST = 0.02  # inter-ocular units: the rig's moves that motion_found compares
IDENTITY_MODES = ("none", "warp")  # the paper's generator alone against the default
TILE = 176
SMILE, SMILE_FROM = "AU12", 2.0   # --relax: photos whose AU12 reads at least this ...
SMILE_AUS = ("AU06", "AU12")      # ... and the AUs read before and after relaxing them
SMILES_PER_KEPT = 30              # photos looked at per smiling face wanted
RELAX_SHEET_PAIRS = 4             # --relax-sheet: faces (before, after) per row
# (clip, neutral frame, expressive frame, AUs it shows): frames picked by eye (tests/test_estimate.py)
ORACLE_PAIRS = (("d3", 0, 136, ("AU04",)), ("d9", 0, 480, ("AU01",)), ("d9", 0, 504, ("AU01",)),
                ("d6", 0, 200, ("AU01", "AU02", "AU05")), ("d14", 0, 72, ("AU01", "AU02", "AU05")),
                ("d14", 0, 342, ("AU01", "AU02")), ("d9", 0, 384, ("AU45",)), ("d0", 5, 66, ("AU45",)),
                ("d14", 0, 94, ("AU45",)), ("d9", 0, 70, ("AU26",)))


def near_neutral(reading: np.ndarray) -> bool:
    """Every tested AU reads below 1."""
    return bool(reading[[AU_NAMES.index(n) for n in TESTED]].max() < 1.0)


def smiling(reading: np.ndarray) -> bool:
    return bool(reading[AU_NAMES.index(SMILE)] >= SMILE_FROM)


def utk_faces(tar_path: Path, limit: int, detector, landmarker, estimator,
              keep=near_neutral, per_kept: int = 6) -> list[tuple[str, np.ndarray]]:
    """Up to ``limit`` UTKFace photos whose AU reading ``keep`` accepts (near neutral ones by
    default), upscaled and padded, in a fixed order: one in ``len / (limit * per_kept)`` of
    the photos is looked at (about 1 in 3 reads near neutral, 1 in 15 smiles widely)."""
    kept = []
    with open_utkface(tar_path) as tar:
        members = sorted((m for m in tar.getmembers() if m.name.endswith(".jpg")), key=lambda m: m.name)
        for member in members[:: max(1, len(members) // (limit * per_kept))]:
            image = utk_photo(tar, member)
            reading = read_aus(image, detector, landmarker, estimator)
            if reading is not None and keep(reading):
                kept.append((Path(member.name).name.split(".")[0], image))
            if len(kept) == limit:
                break
    return kept


def open_utkface(tar_path: Path) -> tarfile.TarFile:
    """The UTKFace photos' tar file, open; a one-line error when ``tar_path`` is not one."""
    if not (Path(tar_path).is_file() and tarfile.is_tarfile(tar_path)):
        raise AnimatorError(f"{tar_path}: not a tar file of UTKFace photos")
    return tarfile.open(tar_path)


def utk_photo(tar: tarfile.TarFile, member: tarfile.TarInfo | str) -> np.ndarray:
    """One photo of the open UTKFace ``tar`` (a member or its name; KeyError when missing),
    RGB, as :func:`prepare_photo` makes it."""
    data = np.frombuffer(tar.extractfile(member).read(), np.uint8)
    return prepare_photo(cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))


def prepare_photo(rgb: np.ndarray) -> np.ndarray:
    """A tight face crop upscaled 2x and padded by its edge pixels, so a whole head is in view."""
    big = cv2.resize(rgb, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    pad = big.shape[0] // 5
    return cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)


def read_mesh(rgb: np.ndarray, detector, landmarker) -> np.ndarray | None:
    """The first detected face's 478 landmarks, None without a face."""
    detections = detector.detect(rgb)
    return landmarker.landmarks(rgb, detections[0]) if detections else None


def read_aus(rgb: np.ndarray, detector, landmarker, estimator) -> np.ndarray | None:
    mesh = read_mesh(rgb, detector, landmarker)
    return None if mesh is None else estimator.estimate(mesh)


def rig_targets(mesh: np.ndarray, current: np.ndarray, targets: np.ndarray, rig) -> np.ndarray:
    """(N, 478, 3): ``mesh`` moved from its ``current`` AUs to each of ``targets`` (N, 17) as
    the motion stage moves it (its iris points as they were)."""
    from animator.motion.move import motion_aus  # noqa: PLC0415

    moved = np.repeat(np.asarray(mesh, np.float64)[None], len(targets), axis=0)
    for i, target in enumerate(targets):
        moved[i, : len(rig.template)] = rig.displace(mesh, motion_aus(current, target, rig))
    return moved


def motion_found(source: np.ndarray, moved: np.ndarray, found: np.ndarray, region: np.ndarray,
                 template: np.ndarray) -> float:
    """The share of the rig's move of the ``region`` landmarks (``source`` -> ``moved``) that the
    landmark model found on the edit (``found``): the found moves projected on the rig's, in the
    face frame, over the points the rig moves by at least :data:`MOVES_AT_LEAST`."""
    from animator.estimate.geometry import normalise_pose  # noqa: PLC0415

    n = len(template)
    before, after, seen = normalise_pose(np.stack([source[:n], moved[:n], found[:n]]), template)[..., :2]
    return share_of_move((seen - before)[region], (after - before)[region], MOVES_AT_LEAST)


def share_of_move(made: np.ndarray, asked: np.ndarray, at_least: float) -> float:
    """How much of the ``asked`` move (K, 2) the ``made`` one is, projected on it, over the
    points asked to move at least ``at_least``."""
    keep = np.linalg.norm(asked, axis=1) > at_least
    return float((made[keep] * asked[keep]).sum() / max((asked[keep] ** 2).sum(), 1e-12))


def with_region_refound(found: np.ndarray, target: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``found`` (478, 3; landmarks found on an edit) with the ``region`` (468,) bool landmarks
    at ``target``'s, after fitting ``found`` onto ``target`` on the points expressions barely
    move (the landmark model's own placement of the head is not at issue)."""
    from animator.estimate.geometry import MESH, umeyama  # noqa: PLC0415

    stable = list(MESH.stable)
    scale, rotation, shift = umeyama(found[stable, :2].astype(np.float64), target[stable, :2])
    out = np.asarray(found, np.float64).copy()
    out[:, :2] = scale * out[:, :2] @ rotation.T + shift
    out[: len(region)][region] = target[: len(region)][region]
    return out


def edit(image: np.ndarray, targets: np.ndarray, editor, rig) -> list[np.ndarray]:
    """The photo edited to each of ``targets`` (N, 17), as ``animator morph`` edits a frame
    (without an ``editor``, the generator does not run; without a ``rig``, nothing moves)."""
    from pipelines.morph import edit_frames, find_faces  # noqa: PLC0415

    faces = find_faces(image, editor.crop_policy if editor else None, Path("photo"), "largest")
    jobs = edit_frames(image, faces, targets, editor, rig, Fraction(1), 16, False)
    return [job.frame.rgb for job in jobs]


def face_tile(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.62 * max(x1 - x0, y1 - y0)
    M = np.array([[TILE / (2 * half), 0, TILE / 2 - cx * TILE / (2 * half)],
                  [0, TILE / (2 * half), TILE / 2 - cy * TILE / (2 * half)]])
    return cv2.warpAffine(rgb, M, (TILE, TILE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def contact_sheet(rows: list[list[np.ndarray]], labels: list[str]) -> np.ndarray:
    header = np.full((22, TILE * len(labels), 3), 255, np.uint8)
    for i, label in enumerate(labels):
        cv2.putText(header, label, (i * TILE + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return np.vstack([header] + [np.hstack(row) for row in rows])


def measure(args: argparse.Namespace) -> dict:
    """The read-back, motion found, oracle, identity and contact sheet of the command line."""
    from animator.estimate import AUEstimator  # noqa: PLC0415
    from animator.faces.detect import FaceDetector  # noqa: PLC0415
    from animator.faces.landmarks import MeshLandmarker  # noqa: PLC0415
    from animator.motion.fit import support_mask  # noqa: PLC0415
    from animator.motion.rig import AURig  # noqa: PLC0415
    from pipelines.render import _load_editor  # noqa: PLC0415

    detector, landmarker, estimator = FaceDetector(), MeshLandmarker(), AUEstimator.default()
    editor = _load_editor(args.checkpoint, "cpu", 16)
    rig = AURig.default()
    # --motion mode -> (editor, rig)
    modes = {"none": (editor, None), "warp+generator": (editor, rig), "warp": (None, rig)}
    faces = utk_faces(args.utkface, args.faces, detector, landmarker, estimator)
    regions = support_mask(rig.template)
    readings = {mode: {au: [] for au in TESTED} for mode in (*modes, RIG_LANDMARKS, REFOUND)}
    found_share = {au: [] for au in TESTED}
    for _, image in faces:
        mesh = read_mesh(image, detector, landmarker)
        base = estimator.estimate(mesh)
        targets = np.repeat(base[None], len(TESTED), axis=0)
        for i, au in enumerate(TESTED):
            targets[i, AU_NAMES.index(au)] = REQUEST
        moved = rig_targets(mesh, base, targets, rig)
        on_rig = estimator.estimate(moved)
        for i, au in enumerate(TESTED):
            readings[RIG_LANDMARKS][au].append(float(on_rig[i, AU_NAMES.index(au)]))
        for mode, (mode_editor, mode_rig) in modes.items():
            for i, (au, edited) in enumerate(zip(TESTED, edit(image, targets, mode_editor, mode_rig))):
                k = AU_NAMES.index(au)
                found = read_mesh(edited, detector, landmarker)
                readings[mode][au].append(float(estimator.estimate(found)[k]) if found is not None else 0.0)
                if mode == "warp" and found is not None:
                    refound = with_region_refound(found, moved[i], regions[k])
                    readings[REFOUND][au].append(float(estimator.estimate(refound)[k]))
                    found_share[au].append(motion_found(mesh, moved[i], found, regions[k],
                                                        estimator.template))
                elif mode == "warp":
                    readings[REFOUND][au].append(0.0)
    report = {"faces": len(faces), "request": REQUEST, "reads_as": READS_AS,
              "source": str(args.utkface.name), "per_au": {
                  mode: {au: {"reads_back": round(float(np.mean(np.array(v) >= READS_AS)), 3),
                              "median": round(float(np.median(v)), 2)} for au, v in per.items()}
                  for mode, per in readings.items()},
              "motion_found": {au: round(float(np.median(v)), 2) for au, v in found_share.items() if v}}
    if args.relax:
        report["relax"] = relax_readback(utk_faces(args.utkface, args.relax, detector, landmarker, estimator,
                                                   keep=smiling, per_kept=SMILES_PER_KEPT),
                                         detector, landmarker, estimator, rig, args.relax_sheet)
    if args.oracle:
        report["oracle"] = oracle_readback(args.oracle, detector, landmarker, estimator, rig)
    if args.identity:
        compared = {mode: modes[mode] for mode in IDENTITY_MODES}
        report["identity"] = identity_per_preset(args.identity, faces, compared, detector)
    if args.sheet:
        write_sheet(args.sheet, faces[:SHEET_FACES] + [(p.stem, read_image(p)) for p in args.extra],
                    modes, detector)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utkface", type=Path, required=True, help="UTKFace-aligned-200.tar")
    parser.add_argument("--faces", type=int, default=40)
    parser.add_argument("--sheet", type=Path, help="Write a contact sheet (faces x presets) here.")
    parser.add_argument("--extra", type=Path, nargs="*", default=[], help="More photos for the sheet.")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--identity", type=Path, help="The SFace ONNX model: report identity per preset.")
    parser.add_argument("--oracle", type=Path, help="The expression clips' folder: read back real motion.")
    parser.add_argument("--relax", type=int, default=0, help="Smiling photos to edit to neutral and read back.")
    parser.add_argument("--relax-sheet", type=Path, help="With --relax: write them, before and after, here.")
    args = parser.parse_args(argv)
    return print_report(lambda: measure(args))


def relax_readback(faces: list[tuple[str, np.ndarray]], detector, landmarker, estimator, rig,
                   sheet: Path | None = None) -> dict:
    """Smiling ``faces`` edited to ``neutral`` with ``warp`` (motion takes the smile back):
    per AU of :data:`SMILE_AUS`, the median reading before and after, and the share of faces
    whose smile reads below 1 after. ``sheet``: each face before and after, four to a row."""
    before, after, tiles = [], [], []
    for _, image in faces:
        edited = edit(image, np.zeros((1, len(AU_NAMES))), None, rig)[0]
        detections, found = detector.detect(image), read_mesh(edited, detector, landmarker)
        if found is None or not detections:
            continue
        before.append(estimator.estimate(landmarker.landmarks(image, detections[0])))
        after.append(estimator.estimate(found))
        tiles.append([face_tile(image, detections[0].box), face_tile(edited, detections[0].box)])
    if not before:
        return {"faces": 0}
    if sheet:
        tiles += [[np.full((TILE, TILE, 3), 255, np.uint8)] * 2] * (-len(tiles) % RELAX_SHEET_PAIRS)
        rows = [sum(tiles[i:i + RELAX_SHEET_PAIRS], []) for i in range(0, len(tiles), RELAX_SHEET_PAIRS)]
        write_image(sheet, contact_sheet(rows, ["input", "neutral (warp)"] * RELAX_SHEET_PAIRS))
    columns = [AU_NAMES.index(n) for n in SMILE_AUS]
    before, after = np.array(before)[:, columns], np.array(after)[:, columns]
    return {"faces": len(before), "per_au": {
                name: {"before": round(float(np.median(before[:, i])), 2), "after": round(float(np.median(after[:, i])), 2)}
                for i, name in enumerate(SMILE_AUS)},
            "smile_below_1": round(float(np.mean(after[:, SMILE_AUS.index(SMILE)] < 1.0)), 3)}


def oracle_readback(clips: Path, detector, landmarker, estimator, rig) -> list[dict]:
    """Per :data:`ORACLE_PAIRS` entry and AU: the estimator's reading of the neutral frame, of
    the expressive frame, and of the neutral frame warped onto the expressive frame's
    landmarks — with all of them, and with only those inside the AUs' FACS regions."""
    from animator.estimate.geometry import MESH, umeyama  # noqa: PLC0415
    from animator.media.decode import iter_frames  # noqa: PLC0415
    from animator.motion.fit import support_mask  # noqa: PLC0415
    from animator.motion.move import move_landmarks  # noqa: PLC0415

    stable, support = list(MESH.stable), support_mask(rig.template)
    n = len(rig.template)

    def face_frame(mesh: np.ndarray) -> tuple[np.ndarray, tuple]:
        scale, rotation, shift = umeyama(mesh[stable].astype(np.float64), rig.template[stable])
        return scale * mesh[:n].astype(np.float64) @ rotation.T + shift, (scale, rotation)

    rows = []
    for clip, rest, peak, aus in ORACLE_PAIRS:
        frames = {}
        for frame in iter_frames(clips / f"{clip}.mp4"):
            if frame.index in (rest, peak):
                frames[frame.index] = frame.rgb
            if frame.index >= max(rest, peak):
                break
        if len(frames) < 2:
            raise AnimatorError(f"{clips / clip}.mp4: frames {rest} and {peak} are needed")
        neutral, expressive = (read_mesh(frames[i], detector, landmarker) for i in (rest, peak))
        (before, (scale, rotation)), (after, _) = face_frame(neutral), face_frame(expressive)
        inside = np.zeros(n, bool)
        for au in aus:
            inside |= support[AU_NAMES.index(au)]
        readings = {"neutral": estimator.estimate(neutral), "expressive": estimator.estimate(expressive)}
        for name, keep in (("whole face moved", np.ones(n, bool)), ("FACS regions only", inside)):
            target = neutral[:n, :2] + (((after - before) * keep[:, None]) @ rotation / scale)[:, :2]
            moved, _ = move_landmarks(frames[rest], neutral, target)
            readings[name] = read_aus(moved, detector, landmarker, estimator)
        rows += [{"clip": clip, "frames": [rest, peak], "au": au,
                  **{k: round(float(v[AU_NAMES.index(au)]), 2) for k, v in readings.items()}} for au in aus]
    return rows


def identity_per_preset(model_path: Path, faces: list[tuple[str, np.ndarray]], modes: dict,
                        detector) -> dict:
    """Per preset and motion mode: the mean SFace cosine between each face and its edit to the
    preset, and the share at or above OpenCV's same-person threshold. Each image is aligned on
    its own detection's five points, as SFace expects."""
    from pipelines.identity import SAME_PERSON_COSINE, FaceIdentity, align_face, cosine  # noqa: PLC0415

    model = FaceIdentity(model_path)
    presets = [name for name in PRESETS if name != "neutral"]
    targets = np.stack([parse_target(name) for name in presets])

    def embedding(rgb: np.ndarray) -> np.ndarray | None:
        found = detector.detect(rgb)
        return model.embed(align_face(rgb, found[0].points)[None])[0] if found else None

    cosines = {mode: {name: [] for name in presets} for mode in modes}
    for _, image in faces:
        before = embedding(image)
        for mode, pair in modes.items():
            for name, edited in zip(presets, edit(image, targets, *pair)):
                after = embedding(edited)
                if before is not None and after is not None:
                    cosines[mode][name].append(float(cosine(before[None], after[None])[0]))
    return {mode: {name: {"cosine": round(float(np.mean(v)), 3),
                          "same_person": round(float(np.mean(np.array(v) >= SAME_PERSON_COSINE)), 3)}
                   for name, v in per.items() if v}
            for mode, per in cosines.items()}


def write_sheet(path: Path, faces: list[tuple[str, np.ndarray]], modes: dict, detector) -> None:
    targets = np.stack([parse_target(t) for t in SHEET_TARGETS])
    labels = ["input"] + [f"{t} {mode}" for t in SHEET_TARGETS for mode in modes]
    rows = []
    for _, image in faces:
        detections = detector.detect(image)
        if not detections:
            continue
        box = detections[0].box
        edits = {mode: edit(image, targets, *pair) for mode, pair in modes.items()}
        row = [face_tile(image, box)]
        for i in range(len(SHEET_TARGETS)):
            row += [face_tile(edits[mode][i], box) for mode in modes]
        rows.append(row)
    write_image(path, contact_sheet(rows, labels))


if __name__ == "__main__":
    sys.exit(main())
