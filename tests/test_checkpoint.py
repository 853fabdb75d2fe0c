"""Checkpoints: animator's own format (also sharded), the three public GANimation layouts
(rebuilt here module by module with each project's key names), safety and the convert CLI."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file
from torch import nn

from animator.aus import N_AUS
from animator.cli import cli
from animator.errors import AnimatorError
from animator.model.checkpoint import (ModelConfig, load_config, load_generator, load_state,
                                       save_generator)
from animator.model.generator import Generator, GeneratorConfig
from animator.model.importers import import_state_dict
from animator.outputs import MARKER

SMALL = GeneratorConfig(image_size=32, conv_dim=8, repeat_num=2)


def _randomise(module: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():  # norm scales near 1, the rest near 0
            norm_scale = param.ndim == 1 and name.endswith("weight")
            param.copy_(torch.randn_like(param) * 0.2 + (1.0 if norm_scale else 0.0))
    return module


def _inputs(n: int = 2, size: int = 32):
    g = torch.Generator().manual_seed(7)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1, torch.rand(n, N_AUS, generator=g) * 5


def _run(generator: Generator, images, aus):
    with torch.no_grad():
        return generator.eval()(images, aus)


# ---- reference networks with the public projects' module layouts ----------------------------
# Written from the projects' published architecture descriptions: StarGAN's trunk as one
# nn.Sequential of (conv, norm, relu) triples, residual blocks, and two 7x7 heads.

def _trunk(n_aus, dim, blocks, block_factory, *, bias, norm):
    layers = [nn.Conv2d(3 + n_aus, dim, 7, 1, 3, bias=bias), norm(dim), nn.ReLU(True)]
    for _ in range(2):
        layers += [nn.Conv2d(dim, dim * 2, 4, 2, 1, bias=bias), norm(dim * 2), nn.ReLU(True)]
        dim *= 2
    layers += [block_factory(dim) for _ in range(blocks)]
    for _ in range(2):
        layers += [nn.ConvTranspose2d(dim, dim // 2, 4, 2, 1, bias=bias), norm(dim // 2), nn.ReLU(True)]
        dim //= 2
    return layers, dim


def _head(dim, channels, act):
    return nn.Sequential(nn.Conv2d(dim, channels, 7, 1, 3, bias=False), act)


class _Residual(nn.Module):
    def __init__(self, body: nn.Sequential, attr: str):
        super().__init__()
        setattr(self, attr, body)
        self.attr = attr

    def forward(self, x):
        return x + getattr(self, self.attr)(x)


def _condition(images, aus):
    return torch.cat([images, aus[:, :, None, None].expand(-1, -1, *images.shape[2:])], 1)


class OfficialG(nn.Module):
    """albertpumarola/GANimation networks/generator_wasserstein_gan.py layout."""

    def __init__(self, n_aus=17, dim=8, blocks=2):
        super().__init__()
        norm = lambda c: nn.InstanceNorm2d(c, affine=True)  # noqa: E731
        block = lambda c: _Residual(nn.Sequential(  # noqa: E731
            nn.Conv2d(c, c, 3, 1, 1, bias=False), norm(c), nn.ReLU(True),
            nn.Conv2d(c, c, 3, 1, 1, bias=False), norm(c)), "main")
        layers, dim = _trunk(n_aus, dim, blocks, block, bias=False, norm=norm)
        self.main = nn.Sequential(*layers)
        self.img_reg = _head(dim, 3, nn.Tanh())
        self.attetion_reg = _head(dim, 1, nn.Sigmoid())

    def forward(self, images, cond):  # returns (color, attention)
        features = self.main(_condition(images, cond))
        return self.img_reg(features), self.attetion_reg(features)


class ReplicateG(nn.Module):
    """donydchen/ganimation_replicate model/model_utils.py SplitGenerator layout."""

    def __init__(self, n_aus=17, dim=8, blocks=2, padding="zero", dropout=False):
        super().__init__()
        norm = lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)  # noqa: E731

        def block(c):
            pad = [nn.ReflectionPad2d(1)] if padding == "reflect" else []
            p = 0 if pad else 1
            body = [*pad, nn.Conv2d(c, c, 3, padding=p, bias=True), norm(c), nn.ReLU(True)]
            body += [nn.Dropout(0.5)] if dropout else []
            body += [*pad, nn.Conv2d(c, c, 3, padding=p, bias=True), norm(c)]
            return _Residual(nn.Sequential(*body), "conv_block")

        layers, dim = _trunk(n_aus, dim, blocks, block, bias=True, norm=norm)
        self.model = nn.Sequential(*layers)
        self.color_top = _head(dim, 3, nn.Tanh())
        self.au_top = _head(dim, 1, nn.Sigmoid())

    def forward(self, images, cond):  # returns (color, attention, features)
        features = self.model(_condition(images, cond))
        return self.color_top(features), self.au_top(features), features


class VipermuG(nn.Module):
    """vipermu/ganimation model.py layout: running-stat InstanceNorm, debug1..4 aliases."""

    def __init__(self, n_aus=17, dim=8, blocks=2):
        super().__init__()
        norm = lambda c: nn.InstanceNorm2d(c, affine=True, track_running_stats=True)  # noqa: E731
        block = lambda c: _Residual(nn.Sequential(  # noqa: E731
            nn.Conv2d(c, c, 3, 1, 1, bias=False), norm(c), nn.ReLU(True),
            nn.Conv2d(c, c, 3, 1, 1, bias=False), norm(c)), "main")
        layers, dim = _trunk(n_aus, dim, blocks, block, bias=False, norm=norm)
        self.debug1 = nn.Sequential(*layers[:3])
        self.debug2 = nn.Sequential(*layers[:9])
        self.debug3 = nn.Sequential(*layers[:9 + blocks])
        self.main = nn.Sequential(*layers)
        self.debug4 = nn.Sequential(*layers)
        self.im_reg = _head(dim, 3, nn.Tanh())
        self.im_att = _head(dim, 1, nn.Sigmoid())

    def forward(self, images, cond):  # returns (attention, color); ran in train mode
        features = self.main(_condition(images, cond))
        return self.im_att(features), self.im_reg(features)


def _reference_outputs(name: str, model: nn.Module, images, aus):
    """(attention, color) of a reference net given 0-5 AUs (the projects feed AUs / 5)."""
    with torch.no_grad():
        if name == "vipermu":
            model.train()  # vipermu's test() never calls eval(): instance statistics
            return model(images, aus / 5)
        model.eval()
        out = model(images, aus / 5)
        return out[1], out[0]


LAYOUT_CASES = {
    "official": lambda: OfficialG(),
    "replicate-zero": lambda: ReplicateG(padding="zero"),
    "replicate-reflect": lambda: ReplicateG(padding="reflect"),
    "replicate-zero-dropout": lambda: ReplicateG(padding="zero", dropout=True),
    "replicate-reflect-dropout": lambda: ReplicateG(padding="reflect", dropout=True),
    "vipermu": lambda: VipermuG(),
}


@pytest.mark.parametrize("case", list(LAYOUT_CASES))
def test_import_public_layouts_runs_exactly(case):
    reference = _randomise(LAYOUT_CASES[case](), seed=len(case))
    if case == "vipermu":  # running stats that must be ignored
        for module in reference.modules():
            if isinstance(module, nn.InstanceNorm2d):
                module.running_mean.fill_(5.0)
                module.running_var.fill_(9.0)
    state = reference.state_dict()
    imported = import_state_dict(state, case)
    assert imported.format == case.split("-")[0]
    config = imported.config
    assert (config.conv_dim, config.n_aus, config.repeat_num) == (8, 17, 2)
    assert config.conv_bias == case.startswith("replicate")
    assert config.norm_affine == (not case.startswith("replicate"))
    assert config.residual_padding == ("reflect" if "reflect" in case else "zeros")
    generator = Generator(config)
    generator.load_state_dict(imported.state)
    images, aus = _inputs()
    attention, color = _run(generator, images, aus)
    ref_attention, ref_color = _reference_outputs(case.split("-")[0], reference, images, aus)
    torch.testing.assert_close(attention, ref_attention, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(color, ref_color, atol=1e-5, rtol=1e-4)


def test_official_dataparallel_prefix_and_old_instance_norm_buffers(tmp_path):
    reference = _randomise(OfficialG(), seed=11)
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}
    for key in list(state):  # PyTorch 0.3 InstanceNorm kept running stats
        if key.endswith(".weight") and state[key].ndim == 1:
            stem = key[: -len("weight")]
            state[stem + "running_mean"] = torch.full_like(state[key], 3.0)
            state[stem + "running_var"] = torch.full_like(state[key], 7.0)
    path = tmp_path / "net_epoch_30_id_G.pth"
    torch.save(state, path)
    generator, config = load_generator(path)
    assert config.provenance["source_format"] == "official"
    assert config.crop_policy["kind"] == "box" and config.generator.image_size == 128
    images, aus = _inputs()
    ref_attention, ref_color = _reference_outputs("official", reference, images, aus)
    attention, color = _run(generator, images, aus)
    torch.testing.assert_close(attention, ref_attention, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(color, ref_color, atol=1e-5, rtol=1e-4)


def test_full_size_official_layout_imports():
    """The published 128 px / 64 channel / 6 block generator, keys and shapes as released."""
    state = OfficialG(dim=64, blocks=6).state_dict()
    assert "main.19.weight" in state and "main.14.main.4.bias" in state  # last norm, last block
    assert not any(k.startswith("main.20.") for k in state)
    imported = import_state_dict(state)
    assert imported.config == GeneratorConfig()
    assert imported.state["decoder.1.conv.weight"].shape == (128, 64, 4, 4)
    assert torch.equal(imported.state["attention_head.weight"], state["attetion_reg.0.weight"])


def test_import_errors_list_missing_and_unexpected_keys():
    state = OfficialG().state_dict()
    broken = dict(state)
    del broken["main.10.main.3.weight"]
    broken["main.10.main.9.weight"] = torch.zeros(1)
    with pytest.raises(AnimatorError, match=r"missing keys: main\.10\.main\.3\.weight.*"
                                            r"unexpected keys: main\.10\.main\.9\.weight"):
        import_state_dict(broken, "g.pth")
    wrong = dict(state, **{"img_reg.0.weight": torch.zeros(3, 16, 7, 7)})
    with pytest.raises(AnimatorError, match=r"img_reg\.0\.weight \(3, 16, 7, 7\)"):
        import_state_dict(wrong)
    critic = {"main.0.weight": torch.zeros(8, 3, 4, 4), "conv1.weight": torch.zeros(1, 8, 3, 3),
              "conv2.weight": torch.zeros(17, 8, 2, 2)}
    with pytest.raises(AnimatorError, match="critic"):
        import_state_dict(critic, "net_epoch_30_id_D.pth")


def test_loading_never_runs_pickled_code(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil_G.pth"
    path.write_bytes(pickle.dumps({"main.0.weight": Payload()}, protocol=2))
    with pytest.raises(AnimatorError, match="never pickled code"):
        load_generator(path)
    assert not marker.exists()


def test_unreadable_checkpoint_error_is_one_plain_line(tmp_path, recwarn):
    path = tmp_path / "photo_G.pth"
    path.write_bytes(b"\xff\xd8\xff\xe0 not a checkpoint at all")
    with pytest.raises(AnimatorError) as caught:
        load_generator(path)
    message = str(caught.value)
    assert "\n" not in message and "never pickled code" in message
    assert "weights_only" not in message  # not PyTorch's advice to run pickled code
    legacy = tmp_path / "legacy_G.pth"
    legacy.write_bytes(pickle.dumps({"main.0.weight": object}, protocol=4))
    with pytest.raises(AnimatorError, match="never pickled code"):
        load_generator(legacy)
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]


# ---- animator's own format -------------------------------------------------------------------

def _own(seed: int = 5) -> tuple[Generator, ModelConfig]:
    generator = _randomise(Generator(SMALL), seed)
    return generator, ModelConfig(generator.config, provenance={"trained_on": "test"})


def test_round_trip_single_file_folder(tmp_path):
    generator, config = _own()
    out = save_generator(generator, config, tmp_path / "model")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "config.json", "model.safetensors"]
    loaded, loaded_config = load_generator(out)
    assert loaded_config == config
    images, aus = _inputs()
    for a, b in zip(_run(generator, images, aus), _run(loaded, images, aus)):
        assert torch.equal(a, b)
    data = json.loads((out / "config.json").read_text())
    assert data["format"] == "animator-model" and data["generator"]["conv_dim"] == 8
    assert data["au_order"][0] == "AU01" and data["input_normalisation"]["mean"] == [0.5] * 3


def test_round_trip_sharded(tmp_path):
    generator, config = _own()
    largest = max(v.numel() * 4 for v in generator.state_dict().values())
    limit = largest + 4096  # a shard always holds whole tensors
    out = save_generator(generator, config, tmp_path / "model", max_shard_bytes=limit)
    shards = sorted(out.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2 and not (out / "model.safetensors").exists()
    assert all(p.stat().st_size <= limit for p in shards)
    assert shards[0].name == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(generator.state_dict())
    loaded, _ = load_generator(out)
    images, aus = _inputs()
    for a, b in zip(_run(generator, images, aus), _run(loaded, images, aus)):
        assert torch.equal(a, b)
    (shards[1]).unlink()
    with pytest.raises(AnimatorError, match="missing"):
        load_generator(out)


def test_saved_model_files_get_the_usual_mode(tmp_path):
    """safetensors writes private (0600) files; a saved model must be readable like any output."""
    from animator.outputs import usual_mode

    generator, config = _own()
    largest = max(v.numel() * 4 for v in generator.state_dict().values())
    folder = save_generator(generator, config, tmp_path / "model", max_shard_bytes=largest + 4096)
    single = save_generator(generator, config, tmp_path / "one.safetensors")
    for path in [single, *folder.iterdir()]:
        assert path.stat().st_mode & 0o777 == usual_mode(), path.name


def test_full_size_model_shards_under_15_mb(tmp_path):
    generator = Generator()
    out = save_generator(generator, ModelConfig(), tmp_path / "model")
    shards = sorted(out.glob("model-*.safetensors"))
    assert len(shards) == 3 and all(p.stat().st_size <= 15_000_000 for p in shards)
    assert load_config(out) == ModelConfig()


def test_single_safetensors_file_with_embedded_config(tmp_path):
    generator, config = _own()
    path = save_generator(generator, config, tmp_path / "g.safetensors")
    loaded, loaded_config = load_generator(path)
    assert loaded_config == config
    images, aus = _inputs()
    assert torch.equal(_run(generator, images, aus)[1], _run(loaded, images, aus)[1])
    # bare weights without a config: flags are read off the key names
    bare = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in generator.state_dict().items()}, bare)
    _, bare_config = load_state(bare)
    assert bare_config.generator == GeneratorConfig(**{**SMALL.to_dict(), "image_size": 128})
    assert bare_config.provenance["source_format"] == "animator"


def test_shipped_default_model_loads():
    generator, config = load_generator(None)
    assert config.generator.image_size == 128 and config.crop_policy["kind"] == "aligned"
    assert "UTKFace" in config.provenance["data"]["name"]
    assert sum(p.numel() for p in generator.parameters()) == 8_471_296


def test_default_model_and_bad_inputs(tmp_path, monkeypatch):
    import animator.model.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "DEFAULT_MODEL_DIR", tmp_path / "no_default_here")
    with pytest.raises(AnimatorError, match="default model is missing.*--checkpoint"):
        load_generator(None)
    with pytest.raises(AnimatorError, match="no such file"):
        load_generator(tmp_path / "nope")
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(AnimatorError, match="no config.json"):
        load_generator(folder)
    generator, config = _own()
    out = save_generator(generator, config, tmp_path / "model")
    (out / "config.json").write_text("{not json")
    with pytest.raises(AnimatorError, match=r"config\.json: invalid JSON"):
        load_generator(out)
    with pytest.raises(AnimatorError, match="unknown key"):
        ModelConfig.from_json({**config.to_json(), "extra": 1})
    with pytest.raises(AnimatorError, match="au_order"):
        ModelConfig(SMALL, au_order=("AU01", "AU02"))
    with pytest.raises(AnimatorError, match="already exists"):
        save_generator(generator, config, out)


def test_model_config_au_order_maps_inputs():
    order = ("AU12", "AU01") + tuple(f"AU{c:02d}" for c in (2, 4, 5, 6, 7, 9, 10, 14, 15, 17, 20, 23, 25, 26, 45))
    config = ModelConfig(au_order=order)
    assert list(config.au_indices()[:3]) == [8, 0, 1]
    assert ModelConfig.from_json(config.to_json()) == config


def test_editor_from_checkpoint_crop_policy(tmp_path):
    pytest.importorskip("animator.faces.align")
    from animator.faces.align import CropPolicy
    from animator.model.inference import FaceEditor

    generator, config = _own()
    config.crop_policy = {"kind": "box", "size": 32, "scale": 1.2}
    out = save_generator(generator, config, tmp_path / "model")
    editor = FaceEditor.from_checkpoint(out, device="cpu", precision="fp32")
    assert editor.crop_policy == CropPolicy(kind="box", size=32, scale=1.2)


# ---- animator convert ------------------------------------------------------------------------

def test_convert_cli(tmp_path):
    reference = _randomise(ReplicateG(), seed=3)
    ckpt = tmp_path / "30_net_gen.pth"
    torch.save(reference.state_dict(), ckpt)
    out = tmp_path / "converted"
    runner = CliRunner()
    result = runner.invoke(cli, ["convert", str(ckpt), "-o", str(out), "--max-shard-mb", "0.02"])
    assert result.exit_code == 0, result.output
    assert "replicate generator" in result.output
    assert (out / "model.safetensors.index.json").is_file()
    generator, config = load_generator(out)
    assert config.provenance == {"imported_from": ckpt.name, "source_format": "replicate",
                                 "source_project": "https://github.com/donydchen/ganimation_replicate"}
    images, aus = _inputs()
    ref_attention, ref_color = _reference_outputs("replicate", reference, images, aus)
    attention, color = _run(generator, images, aus)
    torch.testing.assert_close(attention, ref_attention, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(color, ref_color, atol=1e-5, rtol=1e-4)

    again = runner.invoke(cli, ["convert", str(ckpt), "-o", str(out)])
    assert again.exit_code == 1 and "already exists" in again.output
    replaced = runner.invoke(cli, ["convert", str(ckpt), "-o", str(out), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert (out / "model.safetensors").is_file() and not list(out.glob("model-*"))
    onto_input = runner.invoke(cli, ["convert", str(ckpt), "-o", str(ckpt), "--overwrite"])
    assert onto_input.exit_code == 1 and "input" in onto_input.output
    bad = runner.invoke(cli, ["convert", str(tmp_path / "missing.pth"), "-o", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "no such file" in bad.output
    assert not (tmp_path / "x").exists()
    pickle_out = runner.invoke(cli, ["convert", str(ckpt), "-o", str(tmp_path / "y.pth")])
    assert pickle_out.exit_code == 1 and "not a pickle" in pickle_out.output
    assert not (tmp_path / "y.pth").exists()
