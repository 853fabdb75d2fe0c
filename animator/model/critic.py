"""GANimation's critic: a PatchGAN-style WGAN-GP discriminator with an AU regression head."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from animator.errors import AnimatorError


@dataclass(frozen=True)
class CriticConfig:
    """Six stride-2 convs take 128 px to a 2x2 map; the AU head's kernel covers that map."""

    image_size: int = 128
    n_aus: int = 17
    conv_dim: int = 64
    repeat_num: int = 6
    au_scale: float = 5.0

    def __post_init__(self) -> None:
        for name in ("image_size", "n_aus", "conv_dim", "repeat_num"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise AnimatorError(f"critic config: {name}={value!r} must be a positive integer")
        if self.image_size % (2 ** self.repeat_num):
            raise AnimatorError(f"critic config: image_size={self.image_size} must be a multiple of "
                                f"2**repeat_num={2 ** self.repeat_num}")
        if not self.au_scale > 0:
            raise AnimatorError(f"critic config: au_scale={self.au_scale!r} must be > 0")

    @property
    def feature_size(self) -> int:
        return self.image_size // 2 ** self.repeat_num

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Critic(nn.Module):
    """``forward(images [-1,1] (N,3,H,W)) -> (realism (N,1,h,w), aus (N,n_aus) on 0-au_scale)``."""

    def __init__(self, config: CriticConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or CriticConfig()
        layers: list[nn.Module] = []
        dim_in, dim = 3, config.conv_dim
        for _ in range(config.repeat_num):
            layers += [nn.Conv2d(dim_in, dim, 4, 2, 1), nn.LeakyReLU(0.01, inplace=True)]
            dim_in, dim = dim, dim * 2
        self.main = nn.Sequential(*layers)
        self.realism_head = nn.Conv2d(dim_in, 1, 3, 1, 1, bias=False)
        self.au_head = nn.Conv2d(dim_in, config.n_aus, config.feature_size, bias=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.main(images)
        realism = self.realism_head(features)
        aus = self.au_head(features).flatten(1) * self.config.au_scale
        return realism, aus
