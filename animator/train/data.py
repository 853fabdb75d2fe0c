"""Training data in GANimation's folder layout, and the batches the training loop eats.

Layout (the official code's, so sets move both ways)::

    DATA/imgs/NAME.jpg         aligned face crops
    DATA/aus_openface.pkl      pickle {NAME: array of 17 floats, OpenFace 0-5 scale}, read
                               by an unpickler that builds nothing but numbers and arrays
    DATA/train_ids.csv         one "NAME.jpg" per line, no header
    DATA/test_ids.csv          same, held-out faces
    DATA/manifest.json         animator's record of how the set was made (optional on read)

Sets that fit (``cache_limit_gb``) are decoded once into one uint8 tensor, on the GPU when
training there, and every augmentation (flips) and target draw happens on the device: no
per-step host work at all. Larger sets stream from disk through DataLoader workers.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from animator.aus import AU_MAX, N_AUS
from animator.errors import AnimatorError
from animator.media.images import IMAGE_SUFFIXES, read_image

IMAGES_DIR = "imgs"
AUS_FILE = "aus_openface.pkl"
TRAIN_IDS = "train_ids.csv"
TEST_IDS = "test_ids.csv"
MANIFEST = "manifest.json"
IMAGE_SUFFIX = ".jpg"


# ---------------------------------------------------------------- the folder layout

def read_ids(path: str | os.PathLike) -> list[str]:
    """Names from an ids CSV (``NAME.jpg`` per line; the suffix is dropped, as the official
    reader does). Blank lines are skipped; only the first tab/comma field counts."""
    path = Path(path)
    if not path.is_file():
        raise AnimatorError(f"{path}: no such file (a GANimation set needs {TRAIN_IDS} and {TEST_IDS})")
    names = []
    for line in path.read_text().splitlines():
        field = line.split("\t")[0].split(",")[0].strip()
        if field:
            names.append(field[: -len(IMAGE_SUFFIX)] if field.lower().endswith(IMAGE_SUFFIX) else field)
    return names


def write_ids(path: str | os.PathLike, names: list[str]) -> None:
    Path(path).write_text("".join(f"{name}{IMAGE_SUFFIX}\n" for name in names))


class _LabelUnpickler(pickle.Unpickler):
    """Unpickles containers, strings, numbers and numeric numpy arrays, nothing else: a
    pickle names functions to call, and a data set from elsewhere must not run code."""

    def find_class(self, module: str, name: str):
        allowed = _ARRAY_GLOBALS.get((module.replace("numpy._core.", "numpy.core."), name))
        if allowed is None:
            raise pickle.UnpicklingError(f"refused to load {module}.{name} (only numbers and "
                                         "numeric arrays are read)")
        return allowed


def _numeric_dtype(*args) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.kind not in "biuf":
        raise pickle.UnpicklingError(f"refused dtype {dtype} (only numeric arrays are read)")
    return dtype


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """How protocol 2 spells ``bytes`` (an array's raw data): ``_codecs.encode(str, 'latin1')``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refused _codecs.encode other than str -> latin1 bytes")
    return text.encode("latin1")


# What numpy 1.x and 2.x name in the pickles of arrays and scalars (protocols 2-5).
_ARRAY_GLOBALS = {
    ("_codecs", "encode"): _latin1_bytes,
    ("numpy.core.multiarray", "_reconstruct"): np.empty(0).__reduce__()[0],
    ("numpy.core.multiarray", "scalar"): np.float32(0).__reduce__()[0],
    ("numpy.core.numeric", "_frombuffer"): np.empty(0).__reduce_ex__(5)[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _numeric_dtype,
    ("collections", "OrderedDict"): OrderedDict,
}


def read_aus(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``aus_openface.pkl`` -> {NAME: (17,) float32 on 0-5}; rejects other shapes."""
    path = Path(path)
    if not path.is_file():
        raise AnimatorError(f"{path}: no such file (the AU labels of a GANimation set)")
    try:
        with path.open("rb") as handle:
            # latin1: Python 2 pickles (the official set's) keep numpy's raw bytes intact
            data = _LabelUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, MemoryError) as exc:
        raise AnimatorError(f"{path}: not a readable AU pickle ({exc})") from None
    if not isinstance(data, Mapping):
        raise AnimatorError(f"{path}: expected a dict of NAME -> 17 AU values, got {type(data).__name__}")
    labels = {}
    for name, values in data.items():
        try:
            vector = np.asarray(values, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):  # e.g. an empty object array: no numbers at all
            vector = np.empty(0, np.float32)
        if vector.shape != (N_AUS,) or not np.isfinite(vector).all():
            raise AnimatorError(f"{path}: {name}: expected {N_AUS} finite AU values, got shape "
                                f"{np.shape(values)}")
        labels[str(name)] = vector
    return labels


def write_aus(path: str | os.PathLike, labels: Mapping[str, np.ndarray]) -> None:
    data = {name: np.asarray(v, dtype=np.float32).reshape(N_AUS) for name, v in labels.items()}
    with Path(path).open("wb") as handle:
        pickle.dump(data, handle, protocol=4)


def read_manifest(root: str | os.PathLike) -> dict | None:
    path = Path(root) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise AnimatorError(f"{path}: invalid JSON: {exc.msg} at line {exc.lineno}") from None


def image_file(root: Path, name: str) -> Path:
    """``imgs/NAME.jpg`` as GANimation writes it, else ``imgs/NAME`` with any image suffix
    (sets re-encoded as WebP or PNG, e.g. to travel to a GPU machine, load the same way)."""
    default = root / IMAGES_DIR / f"{name}{IMAGE_SUFFIX}"
    if default.is_file():
        return default
    for suffix in IMAGE_SUFFIXES:
        for candidate in (root / IMAGES_DIR / f"{name}{suffix}", root / IMAGES_DIR / f"{name}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return default


def split_of(key: str, test_fraction: float) -> str:
    """"test" or "train" from a stable hash of ``key`` (same answer on every run and machine)."""
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2 ** 64 < test_fraction else "train"


# ---------------------------------------------------------------- loading a split

@dataclass
class FaceSet:
    """One split: names, their image files and AU labels (N,17) float32 on 0-5."""

    root: Path
    names: list[str]
    aus: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    def path(self, i: int) -> Path:
        return image_file(self.root, self.names[i])

    def image(self, i: int, size: int) -> np.ndarray:
        return _resized(read_image(self.path(i)), size)

    def decode_all(self, size: int, threads: int = 8) -> np.ndarray:
        """All images as one (N, size, size, 3) uint8 array (OpenCV decodes in parallel)."""
        out = np.empty((len(self), size, size, 3), dtype=np.uint8)

        def load(i: int) -> None:
            out[i] = self.image(i, size)

        with ThreadPoolExecutor(max(1, threads)) as pool:
            list(pool.map(load, range(len(self))))
        return out


def load_split(root: str | os.PathLike, split: str) -> FaceSet:
    """The ``train`` or ``test`` ids that have labels, sorted by name (deterministic order)."""
    root = Path(root)
    if not root.is_dir():
        raise AnimatorError(f"{root}: no such folder (expected a GANimation training set)")
    labels = read_aus(root / AUS_FILE)
    names = sorted(set(read_ids(root / (TRAIN_IDS if split == "train" else TEST_IDS))) & set(labels))
    aus = np.stack([labels[n] for n in names]) if names else np.zeros((0, N_AUS), np.float32)
    return FaceSet(root, names, np.clip(aus, 0.0, AU_MAX).astype(np.float32))


def _resized(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[:2] == (size, size):
        return image
    interpolation = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interpolation)


# ---------------------------------------------------------------- batches

def epoch_order(n: int, seed: int, epoch: int, rank: int = 0, world: int = 1,
                weights: torch.Tensor | None = None) -> torch.Tensor:
    """This rank's share of a seeded permutation of ``n`` samples for ``epoch`` (like
    DistributedSampler: the same permutation on every rank, strided by rank); with
    ``weights``, ``n`` seeded draws with replacement by weight instead."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if weights is not None:
        return torch.multinomial(weights, n, replacement=True, generator=generator)[rank::world]
    return torch.randperm(n, generator=generator)[rank::world]


class _FileFaces(Dataset):
    def __init__(self, faces: FaceSet, size: int) -> None:
        self.faces, self.size = faces, size

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.faces.image(i, self.size)), i


class Batches:
    """Yields (images uint8 (B,H,W,3) on the device, sample indices (B,) on the device).

    ``batch_size`` is this rank's share; each epoch is a seeded permutation, so an epoch can
    be resumed exactly from any batch.
    """

    def __init__(self, faces: FaceSet, size: int, batch_size: int, device: torch.device,
                 seed: int, cache: str = "auto", cache_limit_gb: float = 16.0, workers: int = 4,
                 rank: int = 0, world: int = 1, weights: np.ndarray | None = None) -> None:
        if len(faces) // world < batch_size:
            raise AnimatorError(f"{faces.root}: {len(faces)} training faces are fewer than one "
                                f"batch of {batch_size} per process")
        self.faces, self.size, self.batch_size = faces, size, batch_size
        self.device, self.seed, self.rank, self.world = device, seed, rank, world
        self.workers = workers
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.mode = resolve_cache(cache, len(faces) * size * size * 3, cache_limit_gb, device)
        self.images: torch.Tensor | None = None
        if self.mode != "none":
            images = torch.from_numpy(faces.decode_all(size, threads=max(4, workers)))
            self.images = images.to(device) if self.mode == "device" else images
        self.aus = torch.from_numpy(faces.aus).to(device)

    @property
    def per_epoch(self) -> int:
        return (len(self.faces) // self.world) // self.batch_size

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = epoch_order(len(self.faces), self.seed, epoch, self.rank, self.world, self.weights)
        order = order[: self.per_epoch * self.batch_size].view(self.per_epoch, self.batch_size)[start:]
        if self.images is None:
            yield from self._streamed(order)
            return
        if self.mode == "device":
            for rows in order.to(self.device):
                yield self.images.index_select(0, rows), rows
            return
        pin = self.device.type == "cuda"
        for rows in order:
            batch = self.images.index_select(0, rows)
            if pin:
                batch = batch.pin_memory()
            yield batch.to(self.device, non_blocking=True), rows.to(self.device, non_blocking=True)

    def _streamed(self, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = DataLoader(_FileFaces(self.faces, self.size), batch_sampler=order.tolist(),
                            num_workers=self.workers, pin_memory=self.device.type == "cuda",
                            persistent_workers=False)
        for images, rows in loader:
            yield images.to(self.device, non_blocking=True), rows.to(self.device, non_blocking=True)


def resolve_cache(cache: str, nbytes: int, limit_gb: float, device: torch.device) -> str:
    """"auto": decoded in GPU memory when training there and it fits, else host memory when it
    fits under ``limit_gb``, else streamed from disk."""
    if cache != "auto":
        return cache
    if nbytes > limit_gb * 2 ** 30:
        return "none"
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return "device" if nbytes < free / 4 else "memory"
    return "memory"


def to_network(images: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (B,H,W,3) -> float (B,3,H,W) in [-1,1] laid out channels-last, optionally
    mirrored left-right where ``flip`` (B,) is true."""
    x = images.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return flip_where(x, flip).contiguous(memory_format=torch.channels_last)


def flip_where(x: torch.Tensor, flip: torch.Tensor | None) -> torch.Tensor:
    """(B,C,H,W) images mirrored left-right where ``flip`` (B,) is true (None: unchanged)."""
    return x if flip is None else torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def sample_targets(aus: torch.Tensor, count: int, noise: float, generator: torch.Generator,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """Target AUs: other training samples' AUs (drawn by ``weights`` when given) plus
    U(-noise, noise) on the /5 scale, 0-5."""
    if weights is None:
        rows = torch.randint(0, aus.shape[0], (count,), device=aus.device, generator=generator)
    else:
        rows = torch.multinomial(weights, count, replacement=True, generator=generator)
    jitter = (torch.rand(count, aus.shape[1], device=aus.device, generator=generator) * 2 - 1)
    return (aus[rows] + jitter * (noise * AU_MAX)).clamp_(0.0, AU_MAX)


def dataset_summary(root: Path) -> dict:
    """What a trained model records about its data (from the manifest when there is one)."""
    manifest = read_manifest(root) or {}
    keep = ("label_source", "counts", "size", "split", "crop_policy", "created")
    return {"path": str(root), **{k: manifest[k] for k in keep if k in manifest}}

