"""``python -m pipelines.build_trainset``: the training set of the default generator.

UTKFace photos (a seeded sample from the tar) plus expressive video clips, each group made by
``animator prepare`` (the renderer's crop policy, labels from animator's estimator, WebP),
then merged into one GANimation-layout set with what motion training needs:

- ``landmarks.npz``: per face, a fixed subset of the face-mesh points in crop pixels (farthest
  point sampling of the mean shape: even cover of brows, lids, mouth and jaw, small enough to
  travel), read on the 128 px crop (upscaled 2x) as the evaluation does;
- ``motion_rig.npz``: the renderer's AU rig (animator/assets/au_rig.json) as per-AU crop-pixel
  displacements of those points on the training faces' mean shape
  (animator.train.motion.rig_in_crop), for ``animator train --motion rig``;
- ``label_distribution.json`` / ``.png``: per AU, the label distribution as stored and as drawn
  by ``--balance`` (animator.train.balance).

Held-out split: UTKFace by prepare's per-photo hash; clips by name (``--heldout-clips``), so
no clip and no photo is on both sides. Intermediate files (the extracted photos, each
group's prepare folder, which makes a rerun resume) go to OUT.work beside OUT, so OUT holds
only what travels.
"""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from animator import __version__
from animator.aus import AU_NAMES
from animator.errors import AnimatorError
from animator.estimate.geometry import MESH
from animator.motion.rig import AURig
from animator.outputs import atomic_output
from animator.progress import progress
from animator.train.balance import balance_weights, label_distribution
from animator.train.data import (AUS_FILE, IMAGES_DIR, MANIFEST, TEST_IDS, TRAIN_IDS, image_file,
                                 read_aus, read_ids, write_aus, write_ids)
from animator.train.motion import LANDMARKS_FILE, RIG_FILE, rig_in_crop, save_landmarks, save_rig

WORK_SUFFIX = ".work"
DISTRIBUTION = "label_distribution"
NOSE_TIP = 1


@dataclass(frozen=True)
class BuildOptions:
    utkface_tar: Path
    clips: tuple[Path, ...] = ()
    heldout_clips: tuple[str, ...] = ()
    utkface_count: int = 8000
    every: int = 2
    test_fraction: float = 0.05
    points: int = 128
    quality: int = 80
    workers: int = 1
    seed: int = 0
    quiet: bool = False

    def __post_init__(self) -> None:
        if not self.utkface_tar.is_file():
            raise AnimatorError(f"{self.utkface_tar}: no such file (UTKFace-aligned-200.tar)")
        for clip in self.clips:
            if not clip.exists():
                raise AnimatorError(f"{clip}: no such file or folder")
        stems = {Path(c).stem for c in self.clips}
        unknown = [h for h in self.heldout_clips if h not in stems]
        if unknown:
            raise AnimatorError(f"--heldout-clips {', '.join(unknown)}: not among the clips "
                                f"({', '.join(sorted(stems)) or 'none given'})")
        if self.utkface_count < 1 or self.every < 1 or self.points < 8:
            raise AnimatorError("--utkface-count and --every must be >= 1, --points >= 8")


# ---------------------------------------------------------------- pure helpers

def sample_members(names: list[str], count: int, seed: int) -> list[str]:
    """A seeded sample of ``count`` image names (all when fewer), in sorted order."""
    names = sorted(n for n in names if n.lower().endswith((".jpg", ".jpeg", ".png")))
    if count >= len(names):
        return names
    rows = np.random.default_rng(seed).choice(len(names), count, replace=False)
    return [names[i] for i in sorted(rows)]


def farthest_points(shape: np.ndarray, count: int, first: int = NOSE_TIP) -> np.ndarray:
    """Indices of ``count`` points of ``shape`` (P,2) spread evenly (farthest point sampling
    from ``first``), sorted."""
    count = min(count, len(shape))
    chosen = [first]
    distance = np.linalg.norm(shape - shape[first], axis=1)
    for _ in range(count - 1):
        nxt = int(distance.argmax())
        chosen.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(shape - shape[nxt], axis=1))
    return np.array(sorted(chosen))


def held_out_name(name: str, heldout_clips: tuple[str, ...]) -> bool:
    """A clip frame ``clip__STEM_fNNNNNN`` is held out when its clip STEM is listed."""
    stem = name.split("__", 1)[1].rsplit("_f", 1)[0] if "__" in name else name
    return stem in heldout_clips


# ---------------------------------------------------------------- the job

def build(out: Path, options: BuildOptions) -> dict:
    """Make (or finish) the set in ``out``; returns its manifest."""
    from pipelines.prepare import PrepareOptions, prepare

    out.mkdir(parents=True, exist_ok=True)
    work = out.with_name(out.name + WORK_SUFFIX)
    work.mkdir(exist_ok=True)
    groups = {"utk": _extract_utkface(options, work / "utkface_photos")}
    if options.clips:
        groups["clip"] = list(options.clips)
    made = {}
    for group, inputs in groups.items():
        prep = PrepareOptions(every=options.every, image_format="webp", quality=options.quality,
                              test_fraction=options.test_fraction if group == "utk" else 0.0,
                              workers=options.workers)
        made[group] = prepare(inputs, work / f"{group}_set", prep, quiet=options.quiet)
    faces = _merge(work, out, options)
    landmarks, found = _crop_landmarks(out, faces["names"], options.quiet)
    return _finish(out, faces, landmarks, found, made, options)


def _extract_utkface(options: BuildOptions, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(options.utkface_tar) as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        chosen = sample_members(list(members), options.utkface_count, options.seed)
        for name in chosen:
            target = folder / Path(name).name
            if not target.is_file():
                with tar.extractfile(members[name]) as src, atomic_output(target, overwrite=True) as tmp:
                    tmp.write_bytes(src.read())
    return [folder]


def _merge(work: Path, out: Path, options: BuildOptions) -> dict:
    """Every group's crops and labels under one name space ``GROUP__NAME``, split decided."""
    (out / IMAGES_DIR).mkdir(exist_ok=True)
    names, labels, test = [], {}, set()
    for group_set in sorted(work.glob("*_set")):
        group = group_set.name[: -len("_set")]
        group_labels = read_aus(group_set / AUS_FILE)
        group_test = set(read_ids(group_set / TEST_IDS))
        for name, values in sorted(group_labels.items()):
            merged = f"{group}__{name}"
            source = image_file(group_set, name)
            target = out / IMAGES_DIR / f"{merged}{source.suffix}"
            if not target.is_file():
                shutil.copyfile(source, target)
            names.append(merged)
            labels[merged] = values
            if name in group_test or (group == "clip" and held_out_name(merged, options.heldout_clips)):
                test.add(merged)
    return {"names": names, "labels": labels, "test": test}


def _crop_landmarks(out: Path, names: list[str], quiet: bool) -> tuple[np.ndarray, np.ndarray]:
    """(N,K,3) landmarks on each stored crop (NaN where none) and (N,) whether a face was found."""
    from animator.media.images import read_image
    from pipelines.evaluate import AUReader

    reader = AUReader()
    meshes = []
    with progress(len(names), "crop landmarks", quiet, unit="face") as bar:
        for name in names:
            located = reader.locate(read_image(image_file(out, name)))
            meshes.append(None if located is None else located[0])
            bar.update(1)
    found = np.array([m is not None for m in meshes], bool)
    if not found.any():
        raise AnimatorError(f"{out}: the landmarker found no face in any stored crop")
    shape = next(m for m in meshes if m is not None).shape
    points = np.stack([m if m is not None else np.full(shape, np.nan) for m in meshes])
    return points.astype(np.float32), found


def _finish(out: Path, faces: dict, landmarks: np.ndarray, found: np.ndarray, made: dict,
            options: BuildOptions) -> dict:
    names = [n for n, ok in zip(faces["names"], found) if ok]
    for name, ok in zip(faces["names"], found):
        if not ok:
            image_file(out, name).unlink(missing_ok=True)
    landmarks = landmarks[found]
    labels = {n: faces["labels"][n] for n in names}
    train = [n for n in names if n not in faces["test"]]
    test = [n for n in names if n in faces["test"]]
    train_rows = np.array([n not in faces["test"] for n in names])
    rig_model = AURig.default()
    mean_face = landmarks[train_rows].mean(0)
    rigged = rig_model.template.shape[0]  # points the rig moves (the mesh, not the irises)
    indices = farthest_points(mean_face[:rigged, :2], options.points)
    subset = landmarks[:, indices, :2]
    train_aus = np.stack([labels[n] for n in train])
    rig = rig_in_crop(rig_model.basis, rig_model.template, mean_face, list(MESH.stable), indices)
    weights = balance_weights(train_aus)
    first = next(iter(made.values()))
    distribution = {
        "aus": list(AU_NAMES),
        "train_faces": len(train), "test_faces": len(test),
        "as_stored": label_distribution(train_aus),
        "as_drawn_balanced": label_distribution(train_aus, weights),
        "held_out": label_distribution(np.stack([labels[n] for n in test])) if test else None,
        "largest_weight": round(float(weights.max()), 3),
    }
    with atomic_output(out / AUS_FILE, overwrite=True) as tmp:
        write_aus(tmp, labels)
    for path, ids in ((out / TRAIN_IDS, train), (out / TEST_IDS, test)):
        with atomic_output(path, overwrite=True) as tmp:
            write_ids(tmp, ids)
    with atomic_output(out / LANDMARKS_FILE, overwrite=True) as tmp:
        with tmp.open("wb") as handle:
            save_landmarks(handle, names, subset, indices)
    with atomic_output(out / RIG_FILE, overwrite=True) as tmp:
        with tmp.open("wb") as handle:
            save_rig(handle, rig, int(first["size"]), "animator/assets/au_rig.json on the training "
                     "faces' mean crop shape (pipelines.build_trainset)")
    with atomic_output(out / f"{DISTRIBUTION}.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(distribution, indent=1) + "\n")
    plot_distribution(distribution, out / f"{DISTRIBUTION}.png")
    manifest = {
        "format": "ganimation", "made_by": f"animator {__version__} (pipelines.build_trainset)",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "size": first["size"], "crop_policy": first["crop_policy"],
        "label_source": first["label_source"],
        "groups": {g: {"counts": m["counts"], "dropped": m["dropped"],
                       "sources": [s["path"] for s in m["sources"]]} for g, m in made.items()},
        "utkface_sample": {"tar": str(options.utkface_tar), "count": options.utkface_count,
                           "seed": options.seed},
        "split": {"utkface": f"prepare's sha1 per photo, test_fraction {options.test_fraction}",
                  "clips": {"held_out": list(options.heldout_clips)}},
        "no_crop_landmarks": int((~found).sum()),
        "landmarks": {"file": LANDMARKS_FILE, "points": len(indices), "of": landmarks.shape[1],
                      "chosen_by": "farthest point sampling of the training faces' mean shape"},
        "rig": {"file": RIG_FILE, "from": "animator/assets/au_rig.json",
                "provenance": rig_model.provenance},
        "counts": {"train": len(train), "test": len(test), "total": len(names)},
        "size_bytes": _folder_bytes(out),
    }
    with atomic_output(out / MANIFEST, overwrite=True) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _folder_bytes(out: Path) -> int:
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def plot_distribution(distribution: dict, path: Path) -> None:
    """Per AU: share of training faces at >= 1 and >= 2, as stored and as drawn balanced."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = distribution["aus"]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(11, 4), dpi=100)
    for offset, key, label, colour in ((-0.2, "as_stored", "as stored", "#888888"),
                                       (0.2, "as_drawn_balanced", "drawn with --balance", "#2a6fc9")):
        rows = distribution[key]
        ax.bar(x + offset, [rows[n]["at_least_1"] for n in names], 0.38, color=colour, alpha=0.45,
               label=f"{label}: AU >= 1")
        ax.bar(x + offset, [rows[n]["at_least_2"] for n in names], 0.38, color=colour,
               label=f"{label}: AU >= 2")
    ax.set_xticks(x, names, rotation=45)
    ax.set_ylabel("share of training faces")
    ax.set_title(f"AU labels of {distribution['train_faces']} training faces")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


# ---------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> None:
    import click

    @click.command("build_trainset", context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Set folder.")
    @click.option("--utkface", "utkface_tar", required=True, type=click.Path(path_type=Path),
                  help="UTKFace-aligned-200.tar.")
    @click.option("--clips", multiple=True, type=click.Path(path_type=Path),
                  help="Expressive clips or folders of them (repeat the option).")
    @click.option("--heldout-clips", default="", help="Comma-separated clip names (stems) held out.")
    @click.option("--utkface-count", default=8000, show_default=True)
    @click.option("--every", default=2, show_default=True, help="Use every K-th clip frame.")
    @click.option("--test-fraction", default=0.05, show_default=True, help="UTKFace photos held out.")
    @click.option("--points", default=128, show_default=True, help="Landmarks kept per face.")
    @click.option("--quality", default=80, show_default=True, help="WebP quality.")
    @click.option("--workers", default=1, show_default=True)
    @click.option("--seed", default=0, show_default=True)
    @click.option("--quiet", "-q", is_flag=True)
    def command(out: Path, heldout_clips: str, clips: tuple[Path, ...], **kwargs) -> None:
        """Build the default generator's training set (see the module docstring)."""
        clip_files = tuple(sorted(p for c in clips for p in ([c] if c.is_file() else c.glob("*.mp4"))))
        try:
            options = BuildOptions(clips=clip_files, heldout_clips=tuple(h for h in heldout_clips.split(",") if h),
                                   **kwargs)
            manifest = build(out, options)
        except AnimatorError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{out}: {manifest['counts']['train']} training and {manifest['counts']['test']} "
                   f"held-out faces, {manifest['size_bytes'] / 2 ** 20:.1f} MiB", err=True)

    command.main(args=argv, prog_name="python -m pipelines.build_trainset")


if __name__ == "__main__":
    main(sys.argv[1:])
