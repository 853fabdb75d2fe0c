"""``animator prepare``: photos and videos -> a GANimation training set (see animator.train.data).

For every photo, and every ``every``-th frame of every video: detect faces (the largest one
is kept), fit the face mesh, align and crop with the renderer's crop policy (5 points from the
mesh, as the tracker does), then drop faces that are too small (detector box's short side
below ``min_face`` frame pixels), too blurred (variance of the Laplacian of the grey crop
below ``blur_threshold``) or, in videos, near-identical to the last kept frame (mean absolute
difference of 16x16 grey thumbnails below ``dedupe_threshold`` levels).

AU labels: OpenFace CSVs from ``--openface DIR`` when given (``DIR/STEM.csv`` per source, or
``DIR/SUBFOLDER/STEM.csv`` mirroring the input tree; columns found by NAME, headers
whitespace-stripped as OpenFace writes them; for videos the row whose ``frame`` is the frame's
0-based index + 1, since OpenFace counts frames from 1; the most confident face when a CSV
has several; rows with ``success`` 0 are dropped), otherwise animator's own estimator on the
mesh. A source without a CSV is dropped ("no_label"), so one set never mixes label sources.

Train/test split by a stable hash (SHA-1) of a split key, so it never depends on the order
or on which sources were processed first: ``file`` (default) keys on the source file, so all
frames of a video land on the same side; ``folder`` keys on the source's parent folder (use
it when folders are identities). UTKFace gives no identity, so its split is per file and the
same person may appear on both sides.

Resumable: every finished source is appended to ``DATA/prepare_progress.jsonl``; a rerun
skips them and rewrites the index files from the whole record.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import re
import shutil
import signal
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from animator import __version__
from animator.aus import AU_MAX, AU_NAMES
from animator.errors import AnimatorError
from animator.media.images import is_image, read_image, write_image
from animator.outputs import OutputError, atomic_output, writing
from animator.progress import progress
from animator.train.data import (AUS_FILE, IMAGES_DIR, MANIFEST, TEST_IDS, TRAIN_IDS,
                                 split_of, write_aus, write_ids)

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
PROGRESS = "prepare_progress.jsonl"
SPLIT_KEYS = ("file", "folder")
OPENFACE_COLUMNS = tuple(f"{name}_r" for name in AU_NAMES)
DROP_REASONS = ("unreadable", "no_face", "too_small", "blurry", "duplicate", "no_label")
# Options that change what the images or labels are: a resumed run must keep them.
RECORDED = ("size", "crop", "crop_scale", "every", "openface", "min_face", "blur_threshold",
            "dedupe_threshold", "image_format", "quality")
# Crop file formats: GANimation's JPEG, lossless PNG, or WebP (about half JPEG's size at the
# same quality, for sets that must travel, e.g. to a GPU machine).
IMAGE_FORMATS = ("jpg", "png", "webp")


@dataclass(frozen=True)
class PrepareOptions:
    size: int = 128
    crop: str = "aligned"
    crop_scale: float = 1.0
    every: int = 5
    openface: str | None = None
    min_face: float = 64.0
    blur_threshold: float = 20.0
    dedupe_threshold: float = 1.0
    test_fraction: float = 0.1
    split_by: str = "file"
    workers: int = 1
    image_format: str = "jpg"
    quality: int = 90

    def __post_init__(self) -> None:
        if self.every < 1:
            raise AnimatorError(f"--every {self.every}: must be at least 1")
        if not 0.0 <= self.test_fraction < 1.0:
            raise AnimatorError(f"--test-fraction {self.test_fraction}: must be in [0, 1)")
        if self.split_by not in SPLIT_KEYS:
            raise AnimatorError(f"--split-by {self.split_by!r}: expected one of {', '.join(SPLIT_KEYS)}")
        if self.image_format not in IMAGE_FORMATS:
            raise AnimatorError(f"--image-format {self.image_format!r}: expected one of "
                                f"{', '.join(IMAGE_FORMATS)}")
        if not 1 <= self.quality <= 100:
            raise AnimatorError(f"--quality {self.quality}: must be 1-100")
        if self.workers < 1:
            raise AnimatorError(f"--workers {self.workers}: must be at least 1")
        for name in ("min_face", "blur_threshold", "dedupe_threshold"):
            if getattr(self, name) < 0:
                raise AnimatorError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be >= 0")
        if self.openface is not None and not Path(self.openface).is_dir():
            raise AnimatorError(f"--openface {self.openface}: no such folder")

    def policy(self):
        from animator.faces.align import CropPolicy

        return CropPolicy(kind=self.crop, size=self.size, scale=self.crop_scale)

    def recorded(self) -> dict:
        values = asdict(self)
        values["openface"] = str(Path(self.openface).resolve()) if self.openface else None
        return {k: values[k] for k in RECORDED}


@dataclass(frozen=True)
class Source:
    path: Path
    rel: str     # path inside its input folder (posix), the file name for a file input
    name: str    # sample-name stem in the data set
    kind: str    # "image" | "video"
    split_key: str

    @property
    def key(self) -> str:
        """How the progress record knows this source across runs."""
        return str(self.path.resolve())


@dataclass
class SourceResult:
    source: str
    kind: str
    items: list[tuple[str, list[float]]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    problem: str | None = None  # why the source could not be read


# ---------------------------------------------------------------- sources

def collect_sources(inputs: Iterable[str | os.PathLike], split_by: str = "file") -> list[Source]:
    """Photos and videos under the inputs (folders are walked recursively, sorted)."""
    found: list[tuple[Path, str, str]] = []  # (path, rel, input label)
    for raw in inputs:
        root = Path(raw)
        if root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file() and not _hidden(p.relative_to(root)))
            found += [(p, p.relative_to(root).as_posix(), root.name) for p in files if _kind(p)]
        elif root.is_file():
            if not _kind(root):
                raise AnimatorError(f"{root}: neither a photo nor a video this tool reads")
            found.append((root, root.name, root.parent.name))
        else:
            raise AnimatorError(f"{root}: no such file or folder")
    if not found:
        raise AnimatorError("no photos or videos found in the inputs")
    names = [_sanitise(str(Path(rel).with_suffix(""))) for _, rel, _ in found]
    counts = Counter(names)
    sources = []
    for index, ((path, rel, label), name) in enumerate(zip(found, names)):
        if counts[name] > 1:  # same relative path under two inputs
            name = f"{_sanitise(label)}__{name}_{index}"
        parent = str(Path(rel).parent)
        key = rel if split_by == "file" else (label if parent == "." else f"{label}/{parent}")
        sources.append(Source(path, rel, name, _kind(path), key))
    return sources


def _kind(path: Path) -> str | None:
    if is_image(path):
        return "image"
    return "video" if path.suffix.lower() in VIDEO_SUFFIXES else None


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _sanitise(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.replace("/", "__").replace("\\", "__")).strip("_") or "face"


# ---------------------------------------------------------------- OpenFace CSVs

@dataclass
class OpenFaceTable:
    """AU rows of one OpenFace CSV: by frame number (1-based, as OpenFace writes it)."""

    path: Path
    frames: dict[int, np.ndarray]  # frame -> (17,) of the most confident successful face

    def first(self) -> np.ndarray | None:
        return self.frames[min(self.frames)] if self.frames else None


def read_openface_csv(path: str | os.PathLike) -> OpenFaceTable:
    """Read AU intensities by column NAME (``AU01_r`` ... ``AU45_r``); any column order, any
    extra columns, headers with OpenFace's leading spaces."""
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise AnimatorError(f"{path}: not a readable CSV ({exc})") from None
    if not rows:
        raise AnimatorError(f"{path}: empty CSV")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in OPENFACE_COLUMNS if c not in header]
    if missing:
        raise AnimatorError(f"{path}: no column(s) {', '.join(missing)} (OpenFace AU intensities)")
    au_cols = [header.index(c) for c in OPENFACE_COLUMNS]
    frame_col = header.index("frame") if "frame" in header else None
    success_col = header.index("success") if "success" in header else None
    confidence_col = header.index("confidence") if "confidence" in header else None
    best: dict[int, tuple[float, np.ndarray]] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            if success_col is not None and float(row[success_col]) == 0:
                continue
            values = np.array([float(row[c]) for c in au_cols], dtype=np.float32)
            frame = int(float(row[frame_col])) if frame_col is not None else line_no - 1
            confidence = float(row[confidence_col]) if confidence_col is not None else 0.0
        except (ValueError, IndexError):
            raise AnimatorError(f"{path}: line {line_no}: not a row of numbers") from None
        if not np.isfinite(values).all():
            raise AnimatorError(f"{path}: line {line_no}: AU values must be finite")
        if frame not in best or confidence > best[frame][0]:
            best[frame] = (confidence, np.clip(values, 0.0, AU_MAX))
    return OpenFaceTable(path, {frame: values for frame, (_, values) in best.items()})


def openface_csv_for(directory: Path, source: Source) -> Path | None:
    stem = source.path.stem
    candidates = [directory / Path(source.rel).parent / f"{stem}.csv", directory / f"{stem}.csv"]
    return next((c for c in candidates if c.is_file()), None)


# ---------------------------------------------------------------- per-source work

class _Models:
    """Detector, mesh and (when labelling) the estimator: one set per process."""

    def __init__(self, estimator: bool) -> None:
        from animator.faces.detect import FaceDetector
        from animator.faces.landmarks import MeshLandmarker

        self.detector = FaceDetector()
        self.landmarker = MeshLandmarker()
        self.estimator = None
        if estimator:
            try:
                from animator.estimate import AUEstimator
            except ImportError:
                raise AnimatorError("no AU labels: pass --openface DIR (this build has no AU estimator)") from None
            self.estimator = AUEstimator.default()


def blur_score(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the grey crop: low means little fine detail (blur)."""
    return float(cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def thumbnail(crop: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)


def _face_crop(rgb: np.ndarray, models: _Models, options: PrepareOptions, policy,
               ) -> tuple[np.ndarray, np.ndarray, int] | str:
    """(crop, mesh, faces found) of the largest face, or the reason it was dropped."""
    from animator.faces.align import crop_transform, warp_crop
    from animator.faces.landmarks import five_points

    detections = models.detector.detect(rgb)
    if not detections:
        return "no_face"
    face = detections[0]
    x0, y0, x1, y1 = face.box
    if min(x1 - x0, y1 - y0) < options.min_face:
        return "too_small"
    mesh = models.landmarker.landmarks(rgb, face)
    crop = warp_crop(rgb, crop_transform(policy, five_points(mesh), face.box), options.size)
    if options.blur_threshold and blur_score(crop) < options.blur_threshold:
        return "blurry"
    return crop, mesh, len(detections)


def process_source(source: Source, options: PrepareOptions, models: _Models, out: Path) -> SourceResult:
    """Crop, label and write one photo or video's faces into ``out/imgs``."""
    policy = options.policy()
    result = SourceResult(source.key, source.kind)
    dropped: Counter[str] = Counter()
    table = None
    if options.openface:
        csv_path = openface_csv_for(Path(options.openface), source)
        if csv_path is None:
            dropped["no_label"] += 1
            result.dropped = dict(dropped)
            return result
        table = read_openface_csv(csv_path)

    # a clip's crops wait for their labels: the estimator's video mode reads the whole clip
    pending: list[tuple[str, np.ndarray, np.ndarray]] = []
    most_faces = 0  # in any kept frame of the clip

    def write(name: str, crop: np.ndarray, label: np.ndarray | None) -> bool:
        if label is None or not np.isfinite(label).all():
            dropped["no_label"] += 1
            return False
        with atomic_output(out / IMAGES_DIR / f"{name}.{options.image_format}", overwrite=True) as tmp:
            write_image(tmp, crop, quality=options.quality)
        result.items.append((name, [round(float(v), 4) for v in np.clip(label, 0.0, AU_MAX)]))
        return True

    def keep(rgb: np.ndarray, name: str, frame: int | None, last: list) -> None:
        nonlocal most_faces
        found = _face_crop(rgb, models, options, policy)
        if isinstance(found, str):
            dropped[found] += 1
            return
        crop, mesh, faces = found
        if frame is not None and options.dedupe_threshold and last:
            thumb = thumbnail(crop)
            if np.abs(thumb - last[0]).mean() < options.dedupe_threshold:
                dropped["duplicate"] += 1
                return
        if table is not None:
            kept = write(name, crop, table.first() if frame is None else table.frames.get(frame + 1))
        elif frame is None:
            kept = write(name, crop, models.estimator.estimate(mesh))
        else:
            pending.append((name, crop, mesh))
            most_faces = max(most_faces, faces)
            kept = True
        if frame is not None and kept:
            last[:] = [thumbnail(crop)]

    if source.kind == "image":
        try:
            rgb = read_image(source.path)
        except AnimatorError as exc:
            dropped["unreadable"] += 1
            result.problem = str(exc)
        else:
            keep(rgb, source.name, None, [])
    else:
        from animator.media.decode import iter_frames

        last: list = []
        try:
            for frame in iter_frames(source.path):
                if frame.index % options.every == 0:
                    keep(frame.rgb, f"{source.name}_f{frame.index:06d}", frame.index, last)
        except OutputError:
            raise  # a full or read-only disk is not this video's fault: stop, say so
        except AnimatorError as exc:
            dropped["unreadable"] += 1
            result.problem = str(exc)
        if pending:
            # the largest face of each kept frame is one person's track only if it is the only
            # face (frames are sampled, not tracked); with several people, read frame by frame
            meshes = np.stack([mesh for _, _, mesh in pending])
            read = models.estimator.estimate_track if most_faces == 1 else models.estimator.estimate
            labels = read(meshes)
            for (name, crop, _), label in zip(pending, labels):
                write(name, crop, label)
    result.dropped = dict(dropped)
    return result


_WORKER: dict = {}


def _init_worker(options: PrepareOptions, out: Path) -> None:
    cv2.setNumThreads(1)
    # Pool.terminate (another worker failed, or a stop) sends SIGTERM: end as an exception
    # does, so a crop being written removes its temporary file instead of leaving it in imgs/
    signal.signal(signal.SIGTERM, _exit)
    _WORKER.update(options=options, out=out, models=_Models(options.openface is None))


def _exit(signum: int, frame) -> None:
    sys.exit(128 + signum)


def _work(source: Source) -> SourceResult:
    return process_source(source, _WORKER["options"], _WORKER["models"], _WORKER["out"])


# ---------------------------------------------------------------- the whole job

def prepare(inputs: list[str | os.PathLike], out: str | os.PathLike, options: PrepareOptions,
            overwrite: bool = False, quiet: bool = False) -> dict:
    """Build (or continue building) a GANimation set in ``out``; returns the manifest."""
    out = Path(out)
    sources = collect_sources(inputs, options.split_by)
    done = _open_output(out, options, overwrite, [s.path for s in sources])
    todo = [s for s in sources if s.key not in done]
    with progress(len(sources), "preparing", quiet, unit="file") as bar, \
            (out / PROGRESS).open("a") as record:
        bar.update(len(sources) - len(todo))
        for result in _run(todo, options, out):
            done[result.source] = result
            with writing(record.name):
                record.write(json.dumps(asdict(result)) + "\n")
                record.flush()
            bar.update(1)
    return _finish(out, sources, done, options)


def _run(todo: list[Source], options: PrepareOptions, out: Path) -> Iterator[SourceResult]:
    if not todo:
        return
    if options.workers == 1 or len(todo) == 1:
        models = _Models(options.openface is None)
        for source in todo:
            yield process_source(source, options, models, out)
        return
    context = multiprocessing.get_context("spawn")
    chunk = max(1, min(32, len(todo) // (options.workers * 8)))
    with context.Pool(options.workers, _init_worker, (options, out)) as pool:
        yield from pool.imap_unordered(_work, todo, chunksize=chunk)
        # all done: the workers exit on their own (leaving the block terminates them, which
        # is for failures and stops: SIGTERM then ends them mid-shutdown, with tracebacks)
        pool.close()
        pool.join()


def _open_output(out: Path, options: PrepareOptions, overwrite: bool,
                 inputs: list[Path]) -> dict[str, SourceResult]:
    """Create ``out`` or pick up its progress; returns the sources already done."""
    record = out / PROGRESS
    resolved = out.resolve()
    for source in inputs:
        if resolved == source.resolve() or resolved in source.resolve().parents:
            raise AnimatorError(f"{out}: refusing to write into a folder that holds the input {source}")
    if out.exists() and not out.is_dir():
        raise AnimatorError(f"{out}: exists and is not a folder")
    if out.is_dir() and not record.is_file() and any(out.iterdir()):
        raise AnimatorError(f"{out}: already exists and was not made by animator prepare (no "
                            f"{PROGRESS}); refusing to write into it, choose another folder")
    if out.exists() and overwrite:  # prepare's own folder: only its own files go
        for path in (out / IMAGES_DIR, out / AUS_FILE, out / TRAIN_IDS, out / TEST_IDS,
                     out / MANIFEST, record):
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    if not out.exists() and not out.parent.is_dir():
        raise AnimatorError(f"{out}: folder {out.parent} does not exist")
    done: dict[str, SourceResult] = {}
    with writing(out):
        (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        if not record.is_file():
            record.write_text(json.dumps({"options": options.recorded()}) + "\n")
            return done
    lines = record.read_text().splitlines()
    header = json.loads(lines[0]) if lines else {}
    if header.get("options") != options.recorded():
        saved = header.get("options", {})
        changed = [k for k in RECORDED if saved.get(k) != options.recorded()[k]]
        raise AnimatorError(f"{out}: was started with different {', '.join(changed) or 'options'}; "
                            f"use another folder or pass --overwrite")
    for line in lines[1:]:
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by an interruption: that source is redone
        done[data["source"]] = SourceResult(data["source"], data["kind"],
                                            [(n, v) for n, v in data["items"]], data["dropped"],
                                            data.get("problem"))
    return done


def _finish(out: Path, sources: list[Source], done: dict[str, SourceResult],
            options: PrepareOptions) -> dict:
    labels: dict[str, list[float]] = {}
    split: dict[str, list[str]] = {"train": [], "test": []}
    dropped: Counter[str] = Counter()
    listed = []
    for source in sources:
        result = done[source.key]
        side = split_of(source.split_key, options.test_fraction)
        for name, values in result.items:
            labels[name] = values
            split[side].append(name)
        dropped.update(result.dropped)
        entry = {"path": str(source.path), "kind": source.kind, "split": side, "kept": len(result.items)}
        if result.dropped:
            entry["dropped"] = result.dropped
        listed.append(entry)
    if not labels:
        problems = [done[s.key].problem for s in sources if done[s.key].problem]
        raise AnimatorError(f"no faces kept from {len(sources)} source(s) "
                            f"(dropped: {_counts_text(dropped)})"
                            + (f"; {problems[0]}" if problems else ""))
    with atomic_output(out / AUS_FILE, overwrite=True) as tmp:
        write_aus(tmp, {k: np.asarray(v, np.float32) for k, v in labels.items()})
    for side, name in (("train", TRAIN_IDS), ("test", TEST_IDS)):
        with atomic_output(out / name, overwrite=True) as tmp:
            write_ids(tmp, sorted(split[side]))
    manifest = {
        "format": "ganimation", "made_by": f"animator {__version__} (animator prepare)",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "size": options.size, "crop_policy": options.policy().to_dict(),
        "alignment_points": "face mesh (five_points), as the renderer's tracker",
        "label_source": (f"openface ({options.openface})" if options.openface
                         else "animator estimator (MediaPipe landmarks + blendshapes)"),
        "aus": list(AU_NAMES), "au_scale": [0.0, AU_MAX],
        "split": {"by": options.split_by, "test_fraction": options.test_fraction,
                  "method": "sha1 of the split key (source file path inside its input, or its folder)"},
        "options": asdict(options) | {"openface": options.recorded()["openface"]},
        "counts": {"train": len(split["train"]), "test": len(split["test"]), "total": len(labels),
                   "sources": len(sources)},
        "dropped": {reason: dropped.get(reason, 0) for reason in DROP_REASONS},
        "sources": listed,
    }
    with atomic_output(out / MANIFEST, overwrite=True) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _counts_text(counts: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "nothing"

