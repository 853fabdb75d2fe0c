"""animator's model format: a folder with ``config.json`` and safetensors weights.

```
model/
  config.json                          ModelConfig (see ModelConfig.to_json)
  model.safetensors                    all weights, or when larger than the shard limit:
  model-00001-of-00003.safetensors     ... shards of at most max_shard_bytes each, and
  model.safetensors.index.json         {"metadata": {"total_size": N}, "weight_map": {key: file}}
```
(the Hugging Face sharding convention). A single ``.safetensors`` file that carries the config in
its metadata also loads, and so does any public GANimation ``.pth``/``.ckpt`` (see importers).
Nothing is ever unpickled beyond plain tensors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from animator.aus import AU_NAMES, canonical_au_name
from animator.errors import AnimatorError
from animator.model.generator import Generator, GeneratorConfig
from animator.motion import MOTION_MODES
from animator.model.importers import import_state_dict, read_torch_checkpoint
from animator.outputs import atomic_output, usual_mode

FORMAT = "animator-model"
FORMAT_VERSION = 1
KIND = "ganimation-generator"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
METADATA_KEY = "animator_config"  # safetensors metadata entry holding config.json's text
MAX_SHARD_BYTES = 15_000_000
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "default_model"
# pixels p in 0-255 enter the network as (p / 255 - mean) / std, i.e. [-1, 1]
DEFAULT_INPUT = {"color_order": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
# The public projects fed face-detector boxes resized to 128 px (no rotation alignment).
IMPORTED_CROP_POLICY = {"kind": "box", "size": 128, "scale": 1.0}


@dataclass
class ModelConfig:
    """Everything needed to use a generator's weights the way they were trained."""

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    crop_policy: dict[str, Any] | None = None  # CropPolicy.to_dict(); None: aligned at image_size
    au_order: tuple[str, ...] = AU_NAMES
    input_normalisation: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_INPUT))
    provenance: dict[str, Any] = field(default_factory=dict)
    # "warp": the AU rig moves the face before the generator paints (animator.motion);
    # "none": the generator alone, as the paper (imported checkpoints)
    motion: str = "warp"

    def __post_init__(self) -> None:
        if self.crop_policy is None:
            self.crop_policy = {"kind": "aligned", "size": self.generator.image_size, "scale": 1.0}
        self.au_order = tuple(self.au_order)
        if len(self.au_order) != self.generator.n_aus:
            raise AnimatorError(f"model config: au_order lists {len(self.au_order)} AUs but the "
                                f"generator takes {self.generator.n_aus}")
        names = [canonical_au_name(n) for n in self.au_order]
        if len(set(names)) != len(names):
            raise AnimatorError("model config: au_order repeats an AU")
        self.au_order = tuple(names)
        norm = self.input_normalisation
        if (not isinstance(norm, dict) or norm.get("color_order") != "RGB"
                or not all(_three_numbers(norm.get(k)) for k in ("mean", "std"))
                or min(norm["std"]) <= 0):
            raise AnimatorError("model config: input_normalisation must be {\"color_order\": \"RGB\", "
                                "\"mean\": [3 numbers], \"std\": [3 numbers > 0]}")
        if not isinstance(self.provenance, dict) or not isinstance(self.crop_policy, dict):
            raise AnimatorError("model config: provenance and crop_policy must be JSON objects")
        if self.motion not in MOTION_MODES:
            raise AnimatorError(f"model config: motion {self.motion!r} is not one of {', '.join(MOTION_MODES)}")

    def au_indices(self) -> np.ndarray:
        """Indices into animator's AU vector, in the order the generator expects its inputs."""
        return np.array([AU_NAMES.index(n) for n in self.au_order], dtype=np.int64)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": KIND,
                "generator": self.generator.to_dict(), "au_order": list(self.au_order),
                "input_normalisation": self.input_normalisation, "crop_policy": self.crop_policy,
                "provenance": self.provenance, "motion": self.motion}

    @classmethod
    def from_json(cls, data: Any, source: str = "config.json") -> ModelConfig:
        if not isinstance(data, dict):
            raise AnimatorError(f"{source}: expected a JSON object")
        if data.get("format") != FORMAT or data.get("kind") != KIND:
            raise AnimatorError(f"{source}: not an animator model config (format {FORMAT!r}, "
                                f"kind {KIND!r} expected)")
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise AnimatorError(f"{source}: format_version {version!r} is newer than this animator "
                                f"reads ({FORMAT_VERSION}); upgrade animator")
        unknown = sorted(set(data) - {"format", "format_version", "kind", "generator", "au_order",
                                      "input_normalisation", "crop_policy", "provenance", "motion"})
        if unknown:
            raise AnimatorError(f"{source}: unknown key(s) {', '.join(unknown)}")
        try:
            generator = GeneratorConfig.from_dict(data.get("generator"), f"{source}: generator")
            return cls(generator=generator, crop_policy=data.get("crop_policy"),
                       au_order=tuple(data.get("au_order", AU_NAMES)),
                       input_normalisation=data.get("input_normalisation", dict(DEFAULT_INPUT)),
                       provenance=data.get("provenance", {}), motion=data.get("motion", "warp"))
        except AnimatorError as exc:
            message = str(exc)
            raise AnimatorError(message if message.startswith(source) else f"{source}: {message}") from None


def save_generator(generator: Generator, config: ModelConfig, path: str | Path,
                   max_shard_bytes: int = MAX_SHARD_BYTES, *, overwrite: bool = False,
                   inputs: tuple[str | Path, ...] = ()) -> Path:
    """Write a model folder (or one ``.safetensors`` file when ``path`` ends so), atomically.

    Shards hold whole tensors, packed in order; each file is at most ``max_shard_bytes``
    (header included) unless a single tensor is larger.
    """
    generator = getattr(generator, "_orig_mod", generator)  # torch.compile's wrapper
    generator = getattr(generator, "module", generator)  # (Distributed)DataParallel's wrapper
    if config.generator != generator.config:
        raise AnimatorError("save_generator: config.generator differs from the generator's own config")
    if max_shard_bytes < 1:
        raise AnimatorError(f"max shard size {max_shard_bytes} bytes must be positive")
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in generator.state_dict().items()}
    text = json.dumps(config.to_json(), indent=2)
    metadata = {"format": "pt", METADATA_KEY: text}
    path = Path(path)
    if path.suffix in (".pth", ".pt", ".ckpt", ".bin"):
        raise AnimatorError(f"{path}: animator writes a model folder or one .safetensors file, "
                            "not a pickle; drop the suffix or use .safetensors")
    if path.suffix == ".safetensors":
        with atomic_output(path, inputs, overwrite) as tmp:
            _save_file(state, tmp, metadata)
        return path
    shards = _pack(state, max_shard_bytes, metadata)
    with atomic_output(path, inputs, overwrite, directory=True) as tmp:
        (tmp / CONFIG_NAME).write_text(text + "\n")
        if len(shards) == 1:
            _save_file(state, tmp / WEIGHTS_NAME, metadata)
        else:
            weight_map = {}
            for i, keys in enumerate(shards, 1):
                name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
                _save_file({k: state[k] for k in keys}, tmp / name, metadata)
                weight_map.update(dict.fromkeys(keys, name))
            index = {"metadata": {"total_size": sum(_nbytes(v) for v in state.values())},
                     "weight_map": weight_map}
            (tmp / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
    return path


def _save_file(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """``safetensors.torch.save_file``, then the usual file mode: safetensors writes its files
    private (0600), which would keep a shared model from its other users."""
    save_file(state, path, metadata=metadata)
    path.chmod(usual_mode())


def load_generator(path: str | Path | None, map_location: str | torch.device = "cpu"
                   ) -> tuple[Generator, ModelConfig]:
    """Load a model folder, a ``.safetensors`` file or a public GANimation checkpoint.

    ``None`` is the model shipped in ``animator/assets/default_model``. The generator comes
    back in eval mode on ``map_location``.
    """
    state, config = load_state(path)
    generator = Generator(config.generator)
    generator.load_state_dict(state)  # load_state has checked names and shapes
    return generator.to(map_location).eval(), config


def load_config(path: str | Path | None) -> ModelConfig:
    """Just the config (no weights read) of a model folder or ``.safetensors`` file."""
    path = _resolve(path)
    if path.is_dir():
        return _read_config(path / CONFIG_NAME)
    if path.suffix == ".safetensors":
        config = _embedded_config(path)
        if config is not None:
            return config
    return load_state(path)[1]


def load_state(path: str | Path | None) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """Weights (animator's key names, on CPU) and config from any supported checkpoint."""
    path = _resolve(path)
    if path.is_dir():
        config = _read_config(path / CONFIG_NAME)
        return _read_folder_weights(path, config), config
    if path.suffix == ".safetensors":
        state = _read_safetensors(path)
        config = _embedded_config(path)
        if config is None and (path.parent / CONFIG_NAME).is_file():
            config = _read_config(path.parent / CONFIG_NAME)
        if config is not None:
            _check_shapes(state, config, path)
            return state, config
    else:
        state = read_torch_checkpoint(path)
    imported = import_state_dict(state, str(path))
    provenance = {"imported_from": path.name, "source_format": imported.format}
    if imported.project:
        provenance["source_project"] = imported.project
    crop = dict(IMPORTED_CROP_POLICY) if imported.project else None
    return imported.state, ModelConfig(generator=imported.config, crop_policy=crop,
                                       provenance=provenance, motion="none")


def _resolve(path: str | Path | None) -> Path:
    if path is None:
        if not (DEFAULT_MODEL_DIR / CONFIG_NAME).is_file():
            raise AnimatorError(f"{DEFAULT_MODEL_DIR}: the default model is missing from this "
                                "installation; reinstall animator or pass --checkpoint PATH (an "
                                "animator model folder or .safetensors, or a GANimation .pth/.ckpt)")
        return DEFAULT_MODEL_DIR
    path = Path(path)
    if not path.exists():
        raise AnimatorError(f"{path}: no such file or folder")
    return path


def _read_config(path: Path) -> ModelConfig:
    if not path.is_file():
        raise AnimatorError(f"{path.parent}: not a model folder (no {CONFIG_NAME})")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise AnimatorError(f"{path}: invalid JSON: {exc.msg} at line {exc.lineno}") from None
    return ModelConfig.from_json(data, str(path))


def _embedded_config(path: Path) -> ModelConfig | None:
    try:
        with safe_open(path, "pt") as handle:
            text = (handle.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError) as exc:
        raise AnimatorError(f"{path}: not a readable safetensors file: {exc}") from None
    if text is None:
        return None
    try:
        return ModelConfig.from_json(json.loads(text), f"{path} (embedded config)")
    except json.JSONDecodeError as exc:
        raise AnimatorError(f"{path}: embedded config is invalid JSON: {exc.msg}") from None


def _read_folder_weights(folder: Path, config: ModelConfig) -> dict[str, torch.Tensor]:
    index_path = folder / INDEX_NAME
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise AnimatorError(f"{index_path}: not a safetensors index (no weight_map)") from None
        state: dict[str, torch.Tensor] = {}
        for name in sorted(set(weight_map.values())):
            shard = folder / name
            if Path(name).name != name or not shard.is_file():
                raise AnimatorError(f"{index_path}: shard {name!r} is missing")
            part = _read_safetensors(shard)
            listed = {k for k, v in weight_map.items() if v == name}
            if set(part) != listed:
                raise AnimatorError(f"{shard}: holds different tensors than {INDEX_NAME} lists")
            state.update(part)
    elif (folder / WEIGHTS_NAME).is_file():
        state = _read_safetensors(folder / WEIGHTS_NAME)
    else:
        raise AnimatorError(f"{folder}: no {WEIGHTS_NAME} or {INDEX_NAME}")
    _check_shapes(state, config, folder)
    return state


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError) as exc:
        raise AnimatorError(f"{path}: not a readable safetensors file: {exc}") from None


def _check_shapes(state: dict[str, torch.Tensor], config: ModelConfig, source: Path) -> None:
    with torch.device("meta"):
        reference = Generator(config.generator).state_dict()
    missing = sorted(set(reference) - set(state))
    unexpected = sorted(set(state) - set(reference))
    wrong = [k for k in set(reference) & set(state) if reference[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        raise AnimatorError(f"{source}: weights do not match its config: missing "
                            f"{', '.join(missing[:8]) or 'none'}; unexpected "
                            f"{', '.join(unexpected[:8]) or 'none'}; wrong shape "
                            f"{', '.join(sorted(wrong)[:8]) or 'none'}")


def _pack(state: dict[str, torch.Tensor], limit: int, metadata: dict[str, str]) -> list[list[str]]:
    """Group keys into shards whose files (header included) stay within ``limit`` bytes."""
    base = 64 + len(json.dumps({"__metadata__": metadata}))
    shards: list[list[str]] = [[]]
    size = base
    for key, value in state.items():
        # a header entry: "key":{"dtype":"F32","shape":[...],"data_offsets":[a,b]}, at most
        entry = _nbytes(value) + len(json.dumps(key)) + 64 + 12 * value.ndim
        if shards[-1] and size + entry > limit:
            shards.append([])
            size = base
        shards[-1].append(key)
        size += entry
    return shards


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _three_numbers(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
