"""Read GANimation generator weights from the public projects' checkpoints.

All three public generators are the same network (StarGAN's encoder / 6 residual blocks /
decoder plus two 7x7 heads); they differ in module names and a few flags:

- official (albertpumarola/GANimation, ``net_epoch_N_id_G.pth``): ``main.*`` trunk,
  ``img_reg.0`` colour head, ``attetion_reg.0`` (sic) attention head; convs without bias,
  affine InstanceNorm, zero padding. DataParallel runs add ``module.``; PyTorch <= 0.3 stored
  InstanceNorm ``running_mean``/``running_var`` buffers that inference never used.
- replicate (donydchen/ganimation_replicate, ``N_net_gen.pth``): ``model.*`` trunk with
  residual blocks under ``conv_block``; convs with bias, InstanceNorm without affine;
  ``color_top.0`` / ``au_top.0`` heads. Blocks may carry reflection pads (shifting indices by 1)
  or a dropout layer (shifting the second conv by 1).
- vipermu (vipermu/ganimation, ``N-M-G.ckpt``): like official but with ``im_reg.0`` /
  ``im_att.0`` heads, InstanceNorm running-stat buffers (never used: it infers in train
  mode) and ``debug1..4`` aliases of the trunk that duplicate ``main.*``.

Instance statistics are always used at inference, so the running-stat buffers are dropped.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from animator.errors import AnimatorError
from animator.model.generator import N_SAMPLING, Generator, GeneratorConfig

# Trunk position of the first residual block: the stem and each down-sampling stage are
# (conv, norm, relu) triples in one nn.Sequential.
_FIRST_BLOCK = 3 * (1 + N_SAMPLING)
_IGNORED_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")
_PUBLIC_IMAGE_SIZE = 128  # all three projects train on 128x128 crops; weights do not say it


@dataclass(frozen=True)
class Layout:
    """Where one project keeps the generator's modules."""

    name: str
    project: str
    trunk: str
    block: str
    color: str
    attention: str
    ignore: str | None = None  # pattern of keys that alias other keys (dropped)


LAYOUTS: dict[str, Layout] = {
    "official": Layout("official", "https://github.com/albertpumarola/GANimation",
                       "main", "main", "img_reg", "attetion_reg"),
    "replicate": Layout("replicate", "https://github.com/donydchen/ganimation_replicate",
                        "model", "conv_block", "color_top", "au_top"),
    "vipermu": Layout("vipermu", "https://github.com/vipermu/ganimation",
                      "main", "main", "im_reg", "im_att", ignore=r"^debug\d+\."),
}
OWN_FORMAT = "animator"


@dataclass(frozen=True)
class Imported:
    state: dict[str, torch.Tensor]  # keys of animator's Generator
    config: GeneratorConfig
    format: str  # OWN_FORMAT or a LAYOUTS key
    project: str | None


def read_torch_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A ``.pth``/``.ckpt`` state dict, read without running pickled code."""
    path = Path(path)
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error says it
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (foreign bytes break torch.load in any number of ways)
        raise AnimatorError(f"{path}: cannot read as a plain PyTorch weights file "
                            f"(only tensors are loaded, never pickled code): {_load_failure(exc)}"
                            ) from None
    if isinstance(data, Mapping) and "state_dict" in data and isinstance(data["state_dict"], Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not data or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()):
        raise AnimatorError(f"{path}: does not hold a state dict of named tensors")
    return dict(data)


def _load_failure(exc: BaseException) -> str:
    """The cause in a ``torch.load`` error, in one line. A weights-only refusal wraps it in
    PyTorch's advice to retry with ``weights_only=False`` (that is, to run the pickled code)
    or to allowlist the global; the advice is dropped, the cause kept."""
    if not isinstance(exc, (pickle.UnpicklingError, RuntimeError, OSError)):
        return f"damaged or not a PyTorch file ({type(exc).__name__} while unpickling)"
    lines = [line.strip().removeprefix("WeightsUnpickler error:").strip()
             for line in str(exc).splitlines()]
    causes = [line for line in lines if line and "weights_only" not in line
              and not line.startswith(("Weights only load failed", "Check the documentation"))]
    if not causes:
        return type(exc).__name__
    return causes[0].split(". ")[0].rstrip(".")


def import_state_dict(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> Imported:
    """Detect the layout from the keys and rename the weights to animator's Generator."""
    state = _clean(state)
    if "encoder.0.conv.weight" in state:
        return _import_own(state, source)
    for layout in LAYOUTS.values():
        if f"{layout.color}.0.weight" in state or f"{layout.attention}.0.weight" in state:
            return _import_layout(state, layout, source)
    tops = sorted({k.split(".", 1)[0] for k in state})
    hint = ""
    if any(k in state for k in ("conv1.weight", "conv2.weight", "dis_top.weight", "aus_top.weight")):
        hint = " This looks like a critic (discriminator); pass the generator's checkpoint."
    raise AnimatorError(
        f"{source}: not a GANimation generator checkpoint (top-level modules: {', '.join(tops)}). "
        "Expected official (main, img_reg, attetion_reg), ganimation_replicate (model, color_top, "
        f"au_top), vipermu (main, im_reg, im_att) or animator's own layout.{hint}")


def _clean(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if not key.endswith(_IGNORED_SUFFIXES):
            out[key] = value
    return out


def _import_layout(state: dict[str, torch.Tensor], layout: Layout, source: str) -> Imported:
    if layout.ignore:
        state = {k: v for k, v in state.items() if not re.match(layout.ignore, k)}
    trunk, block = layout.trunk, layout.block
    stem = state.get(f"{trunk}.0.weight")
    if stem is None or stem.ndim != 4 or stem.shape[1] <= 3:
        raise AnimatorError(f"{source}: {layout.name} checkpoint has no usable stem convolution "
                            f"{trunk}.0.weight")
    blocks = sorted({int(m.group(1)) for k in state
                     if (m := re.match(rf"^{re.escape(trunk)}\.(\d+)\.{re.escape(block)}\.", k))})
    if blocks != list(range(_FIRST_BLOCK, _FIRST_BLOCK + len(blocks))):
        raise AnimatorError(f"{source}: {layout.name} checkpoint has residual blocks at "
                            f"{trunk} positions {blocks}; expected consecutive positions from "
                            f"{_FIRST_BLOCK}")
    convs = (0, 3) if not blocks else tuple(sorted(
        int(m.group(1)) for k, v in state.items() if v.ndim == 4 and
        (m := re.match(rf"^{re.escape(trunk)}\.{blocks[0]}\.{re.escape(block)}\.(\d+)\.weight$", k))))
    if convs not in ((0, 3), (0, 4), (1, 5), (1, 6)):
        raise AnimatorError(f"{source}: {layout.name} residual block {trunk}.{blocks[0]} has "
                            f"convolutions at {list(convs)}; expected 2 (optionally after "
                            "reflection pads / with dropout)")
    config = GeneratorConfig(
        image_size=_PUBLIC_IMAGE_SIZE, n_aus=int(stem.shape[1]) - 3, conv_dim=int(stem.shape[0]),
        repeat_num=len(blocks), conv_bias=f"{trunk}.0.bias" in state,
        norm_affine=f"{trunk}.1.weight" in state,
        residual_padding="reflect" if convs[0] == 1 else "zeros",
        head_bias=f"{layout.color}.0.bias" in state)
    names = {own: _source_key(own, layout, config.repeat_num, convs) for own in _own_keys(config)}
    _check_keys(set(names.values()), set(state), layout.name, source)
    renamed = {own: state[src] for own, src in names.items()}
    _check_shapes(renamed, config, source, names)
    return Imported(renamed, config, layout.name, layout.project)


def _import_own(state: dict[str, torch.Tensor], source: str) -> Imported:
    """Bare animator weights (no config.json): the shape flags are read off the keys."""
    stem = state["encoder.0.conv.weight"]
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"^blocks\.(\d+)\.", k))}
    config = GeneratorConfig(
        n_aus=int(stem.shape[1]) - 3, conv_dim=int(stem.shape[0]), repeat_num=len(blocks),
        conv_bias="encoder.0.conv.bias" in state, norm_affine="encoder.0.norm.weight" in state,
        head_bias="color_head.bias" in state)
    expected = set(_own_keys(config))
    _check_keys(expected, set(state), OWN_FORMAT, source)
    _check_shapes(state, config, source)
    return Imported(state, config, OWN_FORMAT, None)


def _own_keys(config: GeneratorConfig) -> list[str]:
    with torch.device("meta"):
        return list(Generator(config).state_dict())


_OWN_KEY = re.compile(r"^(encoder|decoder|blocks|color_head|attention_head)\.(?:(\d+)\.(\w+)\.)?(.+)$")


def _source_key(own: str, layout: Layout, repeat_num: int, convs: tuple[int, int]) -> str:
    group, index, part, rest = _OWN_KEY.match(own).groups()  # type: ignore[union-attr]
    if group == "color_head":
        return f"{layout.color}.0.{rest}"
    if group == "attention_head":
        return f"{layout.attention}.0.{rest}"
    i, offset = int(index), int(part == "norm")
    if group == "encoder":
        return f"{layout.trunk}.{3 * i + offset}.{rest}"
    if group == "decoder":
        return f"{layout.trunk}.{_FIRST_BLOCK + repeat_num + 3 * i + offset}.{rest}"
    position = {"conv1": convs[0], "norm1": convs[0] + 1, "conv2": convs[1], "norm2": convs[1] + 1}[part]
    return f"{layout.trunk}.{_FIRST_BLOCK + i}.{layout.block}.{position}.{rest}"


def _check_keys(expected: set[str], found: set[str], name: str, source: str) -> None:
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        parts = [f"{label} keys: {_listing(keys)}" for label, keys in
                 (("missing", missing), ("unexpected", unexpected)) if keys]
        raise AnimatorError(f"{source}: {name} generator checkpoint does not match the network; "
                            + "; ".join(parts))


def _check_shapes(state: dict[str, torch.Tensor], config: GeneratorConfig, source: str,
                  source_names: dict[str, str] | None = None) -> None:
    with torch.device("meta"):
        reference = Generator(config).state_dict()
    wrong = [f"{(source_names or {}).get(k, k)} {tuple(v.shape)} (expected {tuple(reference[k].shape)})"
             for k, v in state.items() if v.shape != reference[k].shape]
    if wrong:
        raise AnimatorError(f"{source}: tensor shapes do not match the network: {_listing(wrong)}")


def _listing(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")
