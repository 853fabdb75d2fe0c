"""GANimation's generator (Pumarola et al., ECCV 2018): an image + AU-conditioned encoder /
residual / decoder network with two heads, a colour mask C and an attention mask A.

The edited face is ``A * input + (1 - A) * C``: where A is 1 the input pixel is kept exactly.
The flags that differ between public implementations (conv biases, affine InstanceNorm,
reflection padding in the residual blocks) are config values, so imported weights run exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from animator.errors import AnimatorError

N_SAMPLING = 2  # stride-2 down- and up-sampling stages, as published
PADDING_MODES = ("zeros", "reflect")
# Far above any published GANimation (128 px, width 64, 6 blocks), far below what would only
# exhaust memory: a config outside them is damaged or hostile, not a model.
LIMITS = {"image_size": 1024, "n_aus": 64, "conv_dim": 1024, "repeat_num": 64}
MAX_AU_SCALE = 100.0


@dataclass(frozen=True)
class GeneratorConfig:
    """Network shape; travels with the weights in ``config.json``.

    ``conv_bias``: biases on the trunk convolutions (ganimation_replicate has them).
    ``norm_affine``: learnable InstanceNorm scale/shift (official GANimation has them).
    ``residual_padding``: ``"zeros"`` (official) or ``"reflect"`` (replicate) in residual blocks.
    ``head_bias``: biases on the two 7x7 output heads (none of the public models have them).
    """

    image_size: int = 128
    n_aus: int = 17
    conv_dim: int = 64
    repeat_num: int = 6
    au_scale: float = 5.0
    conv_bias: bool = False
    norm_affine: bool = True
    residual_padding: str = "zeros"
    head_bias: bool = False

    def __post_init__(self) -> None:
        for name in ("image_size", "n_aus", "conv_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise AnimatorError(f"generator config: {name}={value!r} must be a positive integer")
        if isinstance(self.repeat_num, bool) or not isinstance(self.repeat_num, int) or self.repeat_num < 0:
            raise AnimatorError(f"generator config: repeat_num={self.repeat_num!r} must be an integer >= 0")
        for name, limit in LIMITS.items():
            if getattr(self, name) > limit:
                raise AnimatorError(f"generator config: {name}={getattr(self, name)} is beyond "
                                    f"the largest supported ({limit})")
        if self.image_size % (2 ** N_SAMPLING):
            raise AnimatorError(f"generator config: image_size={self.image_size} must be a multiple of 4")
        if (not isinstance(self.au_scale, (int, float)) or isinstance(self.au_scale, bool)
                or not 0 < self.au_scale <= MAX_AU_SCALE):
            raise AnimatorError(f"generator config: au_scale={self.au_scale!r} must be a number "
                                f"in (0, {MAX_AU_SCALE:g}]")
        if self.residual_padding not in PADDING_MODES:
            raise AnimatorError(f"generator config: residual_padding={self.residual_padding!r} must be "
                                f"one of {', '.join(PADDING_MODES)}")
        for name in ("conv_bias", "norm_affine", "head_bias"):
            if not isinstance(getattr(self, name), bool):
                raise AnimatorError(f"generator config: {name}={getattr(self, name)!r} must be true or false")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "generator") -> GeneratorConfig:
        if not isinstance(data, dict):
            raise AnimatorError(f"{where}: expected an object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AnimatorError(f"{where}: unknown key(s) {', '.join(unknown)}")
        try:
            return cls(**{k: _float_or_inf(v) if k == "au_scale" and type(v) is int else v
                          for k, v in data.items()})
        except AnimatorError as exc:
            raise AnimatorError(f"{where}: {exc}") from None


def _float_or_inf(value: int) -> float:
    """A JSON integer as a float; one too large for a float is infinite (and then refused)."""
    try:
        return float(value)
    except OverflowError:
        return float("inf")


class ConvNormReLU(nn.Module):
    """Conv (or transposed conv) -> InstanceNorm -> ReLU: one trunk stage."""

    def __init__(self, conv: nn.Module, channels: int, affine: bool) -> None:
        super().__init__()
        self.conv = conv
        self.norm = nn.InstanceNorm2d(channels, affine=affine, track_running_stats=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ResidualBlock(nn.Module):
    """x + IN(conv(ReLU(IN(conv(x))))) with 3x3 convolutions."""

    def __init__(self, dim: int, bias: bool, affine: bool, padding_mode: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, 1, 1, bias=bias, padding_mode=padding_mode)
        self.norm1 = nn.InstanceNorm2d(dim, affine=affine, track_running_stats=False)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(dim, dim, 3, 1, 1, bias=bias, padding_mode=padding_mode)
        self.norm2 = nn.InstanceNorm2d(dim, affine=affine, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))


class Generator(nn.Module):
    """``forward(images [-1,1] (N,3,H,W), aus (N,n_aus) on 0-au_scale) -> (A, C)``.

    A: attention (N,1,H,W) in [0,1]; C: colour (N,3,H,W) in [-1,1].
    """

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or GeneratorConfig()
        dim, bias, affine = config.conv_dim, config.conv_bias, config.norm_affine
        encoder = [ConvNormReLU(nn.Conv2d(3 + config.n_aus, dim, 7, 1, 3, bias=bias), dim, affine)]
        for _ in range(N_SAMPLING):
            encoder.append(ConvNormReLU(nn.Conv2d(dim, dim * 2, 4, 2, 1, bias=bias), dim * 2, affine))
            dim *= 2
        self.encoder = nn.Sequential(*encoder)
        self.blocks = nn.Sequential(*(ResidualBlock(dim, bias, affine, config.residual_padding)
                                      for _ in range(config.repeat_num)))
        decoder = []
        for _ in range(N_SAMPLING):
            decoder.append(ConvNormReLU(nn.ConvTranspose2d(dim, dim // 2, 4, 2, 1, bias=bias),
                                        dim // 2, affine))
            dim //= 2
        self.decoder = nn.Sequential(*decoder)
        self.color_head = nn.Conv2d(dim, 3, 7, 1, 3, bias=config.head_bias)
        self.attention_head = nn.Conv2d(dim, 1, 7, 1, 3, bias=config.head_bias)

    def forward(self, images: torch.Tensor, aus: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = images.shape
        cond = (aus.to(images.dtype) / self.config.au_scale).reshape(n, -1, 1, 1).expand(n, -1, h, w)
        x = torch.cat([images, cond], dim=1)
        features = self.decoder(self.blocks(self.encoder(x)))
        attention = torch.sigmoid(self.attention_head(features))
        color = torch.tanh(self.color_head(features))
        return attention, color

    @staticmethod
    def compose(images: torch.Tensor, attention: torch.Tensor, color: torch.Tensor) -> torch.Tensor:
        return compose(images, attention, color)


def compose(images: torch.Tensor, attention: torch.Tensor, color: torch.Tensor) -> torch.Tensor:
    """``A * images + (1 - A) * C``: A = 1 keeps the input pixel exactly."""
    return attention * images + (1 - attention) * color
