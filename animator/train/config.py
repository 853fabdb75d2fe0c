"""Training settings: every weight and schedule the paper fixes, with the paper's values.

Defaults follow GANimation (Pumarola et al., ECCV 2018) and its official code: Adam 1e-4 for
both networks with betas (0.5, 0.999), 5 critic steps per generator step, batch 25, 20 epochs
at a constant learning rate then 10 of linear decay to zero, 128 px faces.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from animator.errors import AnimatorError

PRECISIONS = ("auto", "fp32", "bf16")
CACHES = ("auto", "memory", "device", "none")
MOTIONS = ("none", "rig")

# Options that decide what is learned: they must not change when a run is resumed.
RUN_DEFINING = (
    "image_size", "g_conv_dim", "g_repeat_num", "d_conv_dim", "d_repeat_num", "batch_size",
    "lr_g", "lr_d", "beta1", "beta2", "critic_steps", "lambda_adv", "lambda_gp", "lambda_au",
    "lambda_cyc", "lambda_mask", "lambda_tv", "target_noise", "flip", "seed", "motion", "balance",
    "init_from", "distill_from", "lambda_distill",
)


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``steps`` counts iterations (one batch = one critic step; every
    ``critic_steps``-th iteration also steps the generator), as the official code does.

    ``lambda_au`` is divided by ``batch_size`` (4000 / 25 = 160) and multiplies the MSE of AUs
    on the network's /5 scale; ``lambda_tv`` multiplies the total variation of the attention
    *summed* over the batch and pixels, as the official code does (not a mean).
    ``target_noise`` is the half-width of the uniform noise added to another sample's AUs,
    on the /5 scale as in the official code (0.1 there = 0.5 on the 0-5 scale).
    ``distill_from``: a generator (model folder or checkpoint) whose A and C the trained one
    learns to reproduce, weighted ``lambda_distill``, on top of the GANimation objective.
    """

    # data and networks
    image_size: int = 128
    g_conv_dim: int = 64
    g_repeat_num: int = 6
    d_conv_dim: int = 64
    d_repeat_num: int = 6
    # optimisation
    batch_size: int = 25
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    critic_steps: int = 5
    epochs: int = 20
    decay_epochs: int = 10
    steps: int | None = None
    # objective
    lambda_adv: float = 1.0
    lambda_gp: float = 10.0
    lambda_au: float = 4000.0
    lambda_cyc: float = 10.0
    lambda_mask: float = 0.1
    lambda_tv: float = 1e-5
    # distillation from a teacher generator
    distill_from: str | None = None
    lambda_distill: float = 10.0
    # targets and augmentation
    target_noise: float = 0.1
    flip: bool = True
    seed: int = 0
    # what the generator learns from: "rig" warps each input towards its target with the set's
    # AU rig first (animator.train.motion); balance draws faces and targets by AU rarity
    # (animator.train.balance); init_from warm-starts the generator from a model folder
    motion: str = "none"
    balance: bool = False
    init_from: str | None = None
    # speed
    precision: str = "auto"
    channels_last: bool = True
    cache: str = "auto"
    cache_limit_gb: float = 16.0
    workers: int = 4
    compile: bool = False
    # bookkeeping
    log_every: int = 50
    sample_every: int = 1000
    eval_every: int = 1000
    eval_images: int = 500
    checkpoint_minutes: float = 15.0
    max_minutes: float | None = None

    def __post_init__(self) -> None:
        positive_ints = ("image_size", "g_conv_dim", "d_conv_dim", "d_repeat_num", "batch_size",
                         "critic_steps", "log_every", "sample_every", "eval_every")
        for name in positive_ints:
            _check_int(name, getattr(self, name), 1)
        for name in ("g_repeat_num", "epochs", "decay_epochs", "eval_images", "workers"):
            _check_int(name, getattr(self, name), 0)
        if self.steps is not None:
            _check_int("steps", self.steps, 1)
        if self.epochs + self.decay_epochs < 1 and self.steps is None:
            raise AnimatorError("epochs + decay_epochs must be at least 1 (or give steps)")
        for name in ("lr_g", "lr_d", "checkpoint_minutes", "cache_limit_gb"):
            if not _finite(getattr(self, name)) or getattr(self, name) <= 0:
                raise AnimatorError(f"{name}={getattr(self, name)!r} must be a number > 0")
        for name in ("beta1", "beta2"):
            if not _finite(getattr(self, name)) or not 0 <= getattr(self, name) < 1:
                raise AnimatorError(f"{name}={getattr(self, name)!r} must be in [0, 1)")
        for name in ("lambda_adv", "lambda_gp", "lambda_au", "lambda_cyc", "lambda_mask",
                     "lambda_tv", "target_noise", "lambda_distill"):
            if not _finite(getattr(self, name)) or getattr(self, name) < 0:
                raise AnimatorError(f"{name}={getattr(self, name)!r} must be a number >= 0")
        if self.max_minutes is not None and (not _finite(self.max_minutes) or self.max_minutes <= 0):
            raise AnimatorError(f"max_minutes={self.max_minutes!r} must be a number > 0")
        if self.image_size % (2 ** self.d_repeat_num) or self.image_size % 4:
            raise AnimatorError(f"image_size={self.image_size} must be a multiple of 4 and of "
                                f"2**d_repeat_num={2 ** self.d_repeat_num}")
        if self.distill_from is not None and (not isinstance(self.distill_from, str) or not self.distill_from):
            raise AnimatorError(f"distill_from={self.distill_from!r} must be a path")
        if self.precision not in PRECISIONS:
            raise AnimatorError(f"precision={self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.motion not in MOTIONS:
            raise AnimatorError(f"motion={self.motion!r}: expected one of {', '.join(MOTIONS)}")
        if self.cache not in CACHES:
            raise AnimatorError(f"cache={self.cache!r}: expected one of {', '.join(CACHES)}")

    @property
    def au_weight(self) -> float:
        """The AU regression weight the losses use: lambda_au / batch (160 at batch 25)."""
        return self.lambda_au / self.batch_size

    def total_iterations(self, iterations_per_epoch: int) -> int:
        if self.steps is not None:
            return self.steps
        return max(1, (self.epochs + self.decay_epochs) * iterations_per_epoch)

    def decay_start(self, iterations_per_epoch: int) -> int:
        """Iteration where the linear decay to zero starts (same share of ``steps`` if given)."""
        total = self.total_iterations(iterations_per_epoch)
        epochs = self.epochs + self.decay_epochs
        share = self.epochs / epochs if epochs else 1.0
        return int(round(total * share))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "train config") -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AnimatorError(f"{where}: unknown option(s) {', '.join(unknown)}")
        return cls(**data)

    def with_changes(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)


def learning_rate(base: float, iteration: int, total: int, decay_start: int) -> float:
    """Constant until ``decay_start``, then linear to zero at ``total``."""
    if iteration < decay_start:
        return base
    span = max(1, total - decay_start)
    return base * max(0.0, 1.0 - (iteration - decay_start) / span)


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise AnimatorError(f"{name}={value!r} must be an integer >= {minimum}")


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
