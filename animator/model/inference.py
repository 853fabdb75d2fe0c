"""Batched generator inference: uint8 face crops + AU targets -> edited crops, A and C masks.

Fast paths: the generator's InstanceNorms become GroupNorm(C, C) at load time (the same
function with the same weights; PyTorch's CPU kernel for it is faster and needs no layout
copies), bf16 autocast where the hardware does bf16 natively (CUDA with bf16, CPUs with AMX or
AVX512-BF16), channels_last memory (the NHWC uint8 crops already are, once permuted; it used
to slow bf16 on CPU only through InstanceNorm's layout copies, which GroupNorm avoids), optional
``torch.compile`` (off by default: on CPU its start-up outweighs its ~3 % gain for any clip
shorter than tens of thousands of faces), ``torch.inference_mode`` and pinned-memory
non-blocking copies on CUDA. On a CPU a batch is split among ``workers`` threads, one per
core, each running its part with one intra-op thread: a forward spread over the cores by
OpenMP waits at every layer for its slowest thread, so whenever decoding, compositing or the
encoder takes a core the others spin (~10 % more CPU per face on an idle 2-core machine, far
more while a video is being rendered); separate forwards do not wait for one another. Only A and C leave the device: the renderer pastes those at full
resolution, and the 128 px composite ``A * input + (1 - A) * C`` is computed on demand
(:attr:`EditResult.output`) in fp32 on the uint8 pixel values, so A = 1 returns the input pixel
exactly whatever the precision.
"""

from __future__ import annotations

import math
import platform
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from animator.aus import N_AUS
from animator.errors import AnimatorError
from animator.model.checkpoint import ModelConfig, load_generator
from animator.model.generator import Generator

if TYPE_CHECKING:
    from animator.faces.align import CropPolicy

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; others must be available."""
    if isinstance(name, torch.device):
        return name
    kind = name.split(":", 1)[0]
    if kind not in DEVICES or (kind in ("auto", "cpu", "mps") and ":" in name):
        raise AnimatorError(f"--device: {name!r} is not one of {', '.join(DEVICES)} (or cuda:N)")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise AnimatorError("--device cuda: no CUDA GPU is available to this PyTorch build")
    if kind == "mps" and not _mps_available():
        raise AnimatorError("--device mps: Apple's Metal backend is not available here")
    return torch.device(name)


def bf16_is_fast(device: torch.device) -> bool:
    """Whether the device computes bf16 natively (emulated bf16 is slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


def device_name(device: torch.device) -> str:
    """The GPU's or the CPU's model name, for benchmark reports."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or platform.machine()


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise AnimatorError(f"--precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    if precision == "bf16" and device.type not in ("cpu", "cuda"):
        raise AnimatorError(f"--precision bf16 is not supported on {device.type}; use fp32")
    return precision


@dataclass
class EditResult:
    crops: np.ndarray  # (N, s, s, 3) uint8: the input crops
    attention: np.ndarray  # (N, s, s) float32 in [0, 1]; 1 keeps the input pixel
    color: np.ndarray  # (N, s, s, 3) float32 in [0, 255]

    @property
    def output(self) -> np.ndarray:
        """(N, s, s, 3) uint8 edited crops ``A * crop + (1 - A) * C``, computed on each call."""
        attention = self.attention[..., None]
        edited = attention * self.crops.astype(np.float32) + (1 - attention) * self.color
        return np.clip(np.rint(edited), 0, 255).astype(np.uint8)


def instance_to_group_norm(module: nn.Module) -> nn.Module:
    """Replace every InstanceNorm2d in ``module`` by GroupNorm(C, C), in place; returns it.

    Both normalise each channel of each sample over H x W with the same eps, and GroupNorm's
    per-channel scale and shift are InstanceNorm's affine weights, so the function and the
    weights (and their state_dict names) are unchanged; only the kernel differs. The new
    modules live on the CPU: move ``module`` to its device afterwards.
    """
    for name, child in module.named_children():
        if isinstance(child, nn.InstanceNorm2d) and not child.track_running_stats:
            norm = nn.GroupNorm(child.num_features, child.num_features, child.eps, child.affine)
            if child.affine:
                norm.load_state_dict(child.state_dict())  # copies onto the new (CPU) parameters
            setattr(module, name, norm)
        else:
            instance_to_group_norm(child)
    return module


class FaceEditor:
    """Runs a generator over face crops in batches on one device.

    The generator is converted to the GroupNorm form and moved to the device in place.
    ``workers``: batches run at once (default: on a CPU, one per intra-op thread, each
    single-threaded; elsewhere, and with ``compile``, one).
    """

    def __init__(self, generator: Generator, device: str | torch.device = "auto",
                 precision: str = "auto", batch_size: int = 16, compile: bool = False,
                 config: ModelConfig | None = None, workers: int | None = None) -> None:
        if batch_size < 1:
            raise AnimatorError(f"--batch-size {batch_size} must be at least 1")
        if workers is not None and workers < 1:
            raise AnimatorError(f"FaceEditor: workers={workers} must be at least 1")
        self.config = config or ModelConfig(generator.config)
        if self.config.generator != generator.config:
            raise AnimatorError("FaceEditor: config.generator differs from the generator's config")
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.batch_size = batch_size
        self.generator = instance_to_group_norm(generator).to(self.device, memory_format=torch.channels_last).eval()
        self.generator.requires_grad_(False)
        self._forward = torch.compile(self.generator, dynamic=False) if compile else self.generator
        norm = self.config.input_normalisation
        self._mean = torch.tensor(norm["mean"], device=self.device).reshape(1, 3, 1, 1) * 255
        self._std = torch.tensor(norm["std"], device=self.device).reshape(1, 3, 1, 1) * 255
        self._au_index = torch.as_tensor(self.config.au_indices(), device=self.device)
        self._pinned = self.device.type == "cuda"
        if self._pinned:  # crops have one size per model: let cuDNN pick its fastest kernels
            torch.backends.cudnn.benchmark = True
        self.workers = workers or (torch.get_num_threads() if self.device.type == "cpu" and not compile else 1)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, device: str | torch.device = "auto",
                        precision: str = "auto", batch_size: int = 16,
                        compile: bool = False, workers: int | None = None) -> FaceEditor:
        """``path`` as for :func:`load_generator`; ``None`` is the shipped default model."""
        generator, config = load_generator(path)
        return cls(generator, device, precision, batch_size, compile, config, workers)

    @property
    def image_size(self) -> int:
        return self.config.generator.image_size

    @property
    def crop_policy(self) -> CropPolicy:
        """How faces must be cropped for this model (from its config)."""
        from animator.faces.align import CropPolicy

        return CropPolicy.from_dict(dict(self.config.crop_policy))

    def edit(self, crops: np.ndarray, aus: np.ndarray) -> EditResult:
        """``crops`` (N, H, W, 3) uint8 RGB, ``aus`` (N, 17) or (17,) on 0-5 in AU_CODES order."""
        crops, aus = self._validate(crops, aus)
        n, h, w, _ = crops.shape
        result = EditResult(crops, np.empty((n, h, w), np.float32), np.empty((n, h, w, 3), np.float32))
        step = max(1, math.ceil(min(n, self.batch_size) / self.workers))  # every worker gets a part
        starts = range(0, n, step)

        def run(start: int) -> None:
            stop = min(start + step, n)
            result.attention[start:stop], result.color[start:stop] = self._batch(
                crops[start:stop], aus[start:stop])

        if self.workers == 1:
            for start in starts:
                run(start)
            return result
        # threads live for one call (starting them costs ~0.1 ms), so none outlives the editor;
        # each runs its forwards on its share of the intra-op threads
        threads = max(1, torch.get_num_threads() // self.workers)
        with ThreadPoolExecutor(self.workers, "animator-generator", torch.set_num_threads, (threads,)) as pool:
            for _ in pool.map(run, starts):
                pass  # re-raises a worker's error here
        return result

    def _validate(self, crops: np.ndarray, aus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        crops = np.asarray(crops)
        if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
            raise AnimatorError(f"face crops must be uint8 (N, H, W, 3), got {crops.dtype} {crops.shape}")
        if crops.shape[1] % 4 or crops.shape[2] % 4:
            raise AnimatorError(f"face crops {crops.shape[1]}x{crops.shape[2]}: sides must be multiples of 4")
        aus = np.asarray(aus, dtype=np.float32)
        if aus.shape == (N_AUS,):
            aus = np.repeat(aus[None], len(crops), axis=0)
        if aus.shape != (len(crops), N_AUS):
            raise AnimatorError(f"AU targets must be ({len(crops)}, {N_AUS}), got {aus.shape}")
        if not np.isfinite(aus).all():
            raise AnimatorError("AU targets contain NaN or infinity")
        return crops, aus

    @torch.inference_mode()
    def _batch(self, crops: np.ndarray, aus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pixels = self._to_device(crops).permute(0, 3, 1, 2).float()  # NCHW view, NHWC memory
        targets = self._to_device(aus)[:, self._au_index]
        images = (pixels - self._mean) / self._std
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
            attention, color = self._forward(images, targets)
        color = (color.float() * self._std + self._mean).clamp_(0, 255)
        host = [t.to("cpu", non_blocking=self._pinned) for t in
                (attention[:, 0].float(), color.permute(0, 2, 3, 1))]
        if self._pinned:
            torch.cuda.current_stream(self.device).synchronize()
        return tuple(t.numpy() for t in host)  # type: ignore[return-value]

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if self._pinned:
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
