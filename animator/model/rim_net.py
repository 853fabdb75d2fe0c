"""A small U-Net that finds spectacle rims in a face's eye-region crop.

Input: (N, 3, H, W) RGB in [-1, 1], the crop :func:`animator.motion.rims.eye_region` cuts (the
face's eye line level, a fixed number of pixels per inter-ocular distance). Output: (N, H, W)
logits, per pixel, of lying on a rim, bridge or temple of a pair of glasses. It is trained on
synthetic spectacles drawn over photos without glasses (``pipelines/train_rims.py``) and
travels as one safetensors file whose metadata holds the config that rebuilds it and the
provenance of its weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from animator.errors import AnimatorError

RIM_NET_PATH = Path(__file__).resolve().parents[1] / "assets" / "rim_net.safetensors"


@dataclass(frozen=True)
class RimNetConfig:
    """Channels per level (the first at full resolution, each next one at half)."""

    channels: tuple[int, ...] = (12, 24, 32, 48)

    def __post_init__(self) -> None:
        if len(self.channels) < 2 or any(int(c) < 1 for c in self.channels):
            raise AnimatorError(f"rim net: channels must be >= 2 positive numbers, not {self.channels}")


def _block(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, padding=1), nn.BatchNorm2d(outputs), nn.ReLU(inplace=True),
                         nn.Conv2d(outputs, outputs, 3, padding=1), nn.BatchNorm2d(outputs), nn.ReLU(inplace=True))


class RimNet(nn.Module):
    def __init__(self, config: RimNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or RimNetConfig()
        ch = self.config.channels
        self.down = nn.ModuleList([_block(3, ch[0])] + [_block(a, b) for a, b in zip(ch[:-1], ch[1:])])
        self.up = nn.ModuleList([_block(b + a, a) for a, b in zip(ch[-2::-1], ch[:0:-1])])
        self.out = nn.Conv2d(ch[0], 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        skips = []
        x = images
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, skips[-2::-1]):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.out(x)[:, 0]


def as_input(crops: np.ndarray) -> torch.Tensor:
    """(N, 3, H, W) float32 in [-1, 1]: the net's input from eye-region crops (N, H, W, 3) uint8 RGB."""
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1


def save_rim_net(net: RimNet, path: str | Path, provenance: dict) -> None:
    """Write the weights with their config and provenance (JSON in the file's metadata)."""
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    metadata = {"config": json.dumps(asdict(net.config)), "provenance": json.dumps(provenance)}
    save_file(state, str(path), metadata=metadata)


def load_rim_net(path: str | Path = RIM_NET_PATH) -> RimNet:
    """The net of a file written by :func:`save_rim_net`, in eval mode."""
    path = Path(path)
    try:
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
        config = RimNetConfig(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in json.loads(metadata["config"]).items()})
        state = load_file(str(path))
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as error:
        raise AnimatorError(f"{path}: not a rim net file ({error})") from error
    net = RimNet(config)
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        raise AnimatorError(f"{path}: weights do not fit the rim net's config ({error})") from error
    return net.eval()


def rim_provenance(path: str | Path = RIM_NET_PATH) -> dict:
    """The provenance a rim net file carries (what it was trained on, how, how it measured)."""
    with safe_open(str(path), "pt") as handle:
        return json.loads((handle.metadata() or {}).get("provenance", "{}"))
