"""The GANimation networks and batched inference: shapes, ranges, composition, precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from animator.aus import N_AUS
from animator.errors import AnimatorError
from animator.model.critic import Critic, CriticConfig
from animator.media.images import read_image
from animator.model.checkpoint import load_generator
from animator.model.generator import N_SAMPLING, Generator, GeneratorConfig, compose
from animator.model.inference import (FaceEditor, bf16_is_fast, instance_to_group_norm, resolve_device,
                                      resolve_precision)

SMALL = GeneratorConfig(image_size=32, conv_dim=8, repeat_num=2)


def _generator(config: GeneratorConfig = SMALL, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    generator = Generator(config)
    with torch.no_grad():  # non-trivial norm parameters, so a wrong mapping cannot hide
        for name, param in generator.named_parameters():
            if "norm" in name:
                param.add_(0.1 * torch.randn_like(param))
    return generator.eval()


def _inputs(n: int, size: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1, torch.rand(n, N_AUS, generator=g) * 5


def _saturated_attention(config: GeneratorConfig) -> Generator:
    """A generator whose attention head outputs exactly 1 everywhere."""
    generator = _generator(GeneratorConfig(**{**config.to_dict(), "head_bias": True}))
    with torch.no_grad():
        generator.attention_head.weight.zero_()
        generator.attention_head.bias.fill_(100.0)  # sigmoid(100) == 1.0 in fp32 and bf16
    return generator


def test_generator_shapes_and_ranges():
    images, aus = _inputs(3, 32)
    with torch.no_grad():
        attention, color = _generator()(images, aus)
    assert attention.shape == (3, 1, 32, 32) and color.shape == (3, 3, 32, 32)
    assert 0 <= attention.min() and attention.max() <= 1
    assert -1 <= color.min() and color.max() <= 1
    assert attention.std() > 0 and color.std() > 0


def test_generator_architecture_is_the_published_one():
    g = Generator()  # 128 px, 17 AUs, 64 channels, 6 residual blocks
    stem, down1, down2 = g.encoder
    assert (stem.conv.in_channels, stem.conv.out_channels, stem.conv.kernel_size) == (20, 64, (7, 7))
    assert stem.conv.bias is None and stem.norm.affine and not stem.norm.track_running_stats
    for layer, (cin, cout) in zip((down1, down2), ((64, 128), (128, 256))):
        assert (layer.conv.in_channels, layer.conv.out_channels) == (cin, cout)
        assert layer.conv.kernel_size == (4, 4) and layer.conv.stride == (2, 2)
    assert len(g.blocks) == 6
    for block in g.blocks:
        assert block.conv1.kernel_size == block.conv2.kernel_size == (3, 3)
        assert block.conv1.in_channels == block.conv2.out_channels == 256
    for layer, (cin, cout) in zip(g.decoder, ((256, 128), (128, 64))):
        assert isinstance(layer.conv, nn.ConvTranspose2d) and layer.conv.stride == (2, 2)
        assert (layer.conv.in_channels, layer.conv.out_channels, layer.conv.kernel_size) == (cin, cout, (4, 4))
    assert (g.color_head.out_channels, g.color_head.kernel_size) == (3, (7, 7))
    assert (g.attention_head.out_channels, g.attention_head.kernel_size) == (1, (7, 7))


def test_generator_divides_aus_by_au_scale():
    base = _generator()
    unscaled = Generator(GeneratorConfig(**{**SMALL.to_dict(), "au_scale": 1.0})).eval()
    unscaled.load_state_dict(base.state_dict())
    images, aus = _inputs(2, 32)
    with torch.no_grad():
        a1, c1 = base(images, aus)
        a2, c2 = unscaled(images, aus / 5)
        a3, _ = base(images, torch.zeros_like(aus))
    torch.testing.assert_close(a1, a2)
    torch.testing.assert_close(c1, c2)
    assert (a1 - a3).abs().max() > 1e-4, "the AU targets must change the output"


def test_generator_is_fully_convolutional_per_sample():
    """InstanceNorm: a sample's output does not depend on the rest of its batch."""
    g = _generator()
    images, aus = _inputs(4, 32)
    with torch.no_grad():
        together = g(images, aus)
        alone = g(images[2:3], aus[2:3])
    torch.testing.assert_close(together[0][2:3], alone[0], atol=1e-5, rtol=0)


def test_compose_formula_and_identity():
    images, _ = _inputs(2, 8)
    color = torch.rand(2, 3, 8, 8) * 2 - 1
    ones = torch.ones(2, 1, 8, 8)
    assert torch.equal(compose(images, ones, color), images)
    assert torch.equal(compose(images, torch.zeros_like(ones), color), color)
    half = torch.full_like(ones, 0.25)
    torch.testing.assert_close(Generator.compose(images, half, color), 0.25 * images + 0.75 * color)


def test_config_validation():
    with pytest.raises(AnimatorError, match="image_size"):
        GeneratorConfig(image_size=30)
    with pytest.raises(AnimatorError, match="residual_padding"):
        GeneratorConfig(residual_padding="circular")
    with pytest.raises(AnimatorError, match="unknown key"):
        GeneratorConfig.from_dict({"conv_dim": 8, "width": 3})
    assert GeneratorConfig.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(AnimatorError, match="multiple of"):
        CriticConfig(image_size=100)


def test_critic_shapes_and_au_scale():
    critic = Critic()
    assert [m.out_channels for m in critic.main if isinstance(m, nn.Conv2d)] == [64, 128, 256, 512, 1024, 2048]
    assert all(m.negative_slope == 0.01 for m in critic.main if isinstance(m, nn.LeakyReLU))
    assert critic.au_head.kernel_size == (2, 2) and critic.realism_head.kernel_size == (3, 3)
    small = Critic(CriticConfig(image_size=32, conv_dim=4, repeat_num=4))
    images, _ = _inputs(3, 32)
    with torch.no_grad():
        realism, aus = small(images)
        features = small.main(images)
        raw = small.au_head(features).flatten(1)
    assert realism.shape == (3, 1, 2, 2) and aus.shape == (3, N_AUS)
    torch.testing.assert_close(aus, raw * 5)


# ---- inference ------------------------------------------------------------------------------

def _crops(n: int, size: int, face: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    if face is not None:
        import cv2

        crop = cv2.resize(face[60:300, 140:380], (size, size), interpolation=cv2.INTER_AREA)
        return np.stack([np.roll(crop, 3 * i, axis=1) for i in range(n)])
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_editor_shapes_ranges_and_composition():
    editor = FaceEditor(_generator(), "cpu", "fp32", batch_size=4)
    crops = _crops(5, 32)
    aus = np.random.default_rng(1).uniform(0, 5, (5, N_AUS)).astype(np.float32)
    result = editor.edit(crops, aus)
    assert result.output.shape == (5, 32, 32, 3) and result.output.dtype == np.uint8
    assert result.attention.shape == (5, 32, 32) and result.attention.dtype == np.float32
    assert result.color.shape == (5, 32, 32, 3) and result.color.dtype == np.float32
    assert 0 <= result.attention.min() and result.attention.max() <= 1
    assert 0 <= result.color.min() and result.color.max() <= 255
    a = result.attention[..., None]
    expected = a * crops + (1 - a) * result.color
    assert np.abs(result.output - expected).max() <= 0.5 + 1e-3  # rounding only
    # the editor matches the bare network
    with torch.no_grad():
        att, col = editor.generator(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1,
                                    torch.from_numpy(aus))
    np.testing.assert_allclose(result.attention, att[:, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(result.color, (col.permute(0, 2, 3, 1).numpy() + 1) * 127.5, atol=1e-3)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_attention_one_reproduces_the_input_exactly(precision):
    editor = FaceEditor(_saturated_attention(SMALL), "cpu", precision)
    crops = _crops(3, 32)
    result = editor.edit(crops, np.full(N_AUS, 4.0, np.float32))
    assert (result.attention == 1).all()
    assert np.array_equal(result.output, crops)


def test_batching_does_not_change_results():
    generator = _generator()
    crops = _crops(7, 32)
    aus = np.random.default_rng(2).uniform(0, 5, (7, N_AUS)).astype(np.float32)
    one = FaceEditor(generator, "cpu", "fp32", batch_size=7).edit(crops, aus)
    many = FaceEditor(generator, "cpu", "fp32", batch_size=3).edit(crops, aus)
    assert np.abs(one.output.astype(int) - many.output).max() <= 1
    np.testing.assert_allclose(one.attention, many.attention, atol=1e-5)


def test_parallel_workers_give_the_same_results():
    """On a CPU the editor splits each batch among worker threads (one intra-op thread each);
    every face comes back in its place, as one worker computes it."""
    generator = _generator()
    crops = _crops(7, 32)
    aus = np.random.default_rng(4).uniform(0, 5, (7, N_AUS)).astype(np.float32)
    one = FaceEditor(generator, "cpu", "fp32", batch_size=4, workers=1).edit(crops, aus)
    editor = FaceEditor(generator, "cpu", "fp32", batch_size=4, workers=3)
    assert editor.workers == 3
    many = editor.edit(crops, aus)
    np.testing.assert_allclose(one.attention, many.attention, atol=1e-5)
    np.testing.assert_allclose(one.color, many.color, atol=1e-3)
    assert FaceEditor(generator, "cpu", "fp32").workers == torch.get_num_threads()
    with pytest.raises(AnimatorError, match="workers"):
        FaceEditor(generator, "cpu", "fp32", workers=0)


def test_bf16_agrees_with_fp32_on_cpu(face_image):
    """Full-size network on a real face. Stated tolerance for bf16 vs fp32: output pixels
    within 8/255 everywhere and 1/255 on average; attention within 0.05; colour within 2/255
    on average."""
    generator = _generator(GeneratorConfig(), seed=3)
    crops = _crops(2, 128, face_image)
    aus = np.random.default_rng(3).uniform(0, 5, (2, N_AUS)).astype(np.float32)
    fp32 = FaceEditor(generator, "cpu", "fp32").edit(crops, aus)
    bf16 = FaceEditor(generator, "cpu", "bf16").edit(crops, aus)
    diff = np.abs(fp32.output.astype(np.int16) - bf16.output)
    assert diff.max() <= 8 and diff.mean() <= 1.0
    assert np.abs(fp32.attention - bf16.attention).max() <= 0.05
    assert np.abs(fp32.color - bf16.color).mean() <= 2.0


def test_group_norm_form_is_the_same_function():
    """InstanceNorm -> GroupNorm(C, C) keeps every output, parameter name and value."""
    generator = _generator()
    images, aus = _inputs(3, 32)
    with torch.no_grad():
        before = generator(images, aus)
        names = dict(generator.state_dict())
        converted = instance_to_group_norm(generator)
        after = converted(images, aus)
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in converted.modules())
    assert sum(isinstance(m, nn.GroupNorm) for m in converted.modules()) == 1 + 2 * N_SAMPLING + 2 * SMALL.repeat_num
    assert all(torch.equal(names[k], v) for k, v in converted.state_dict().items())
    assert set(names) == set(converted.state_dict())
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, atol=2e-6, rtol=1e-5)


def test_shipped_model_outputs_are_unchanged_on_real_crops(shared_dir):
    """The fast path against the reference: the shipped generator as trained (InstanceNorm,
    NCHW, fp32, plain PyTorch) on 24 real face crops with random targets. Stated tolerance of
    the GroupNorm + channels_last path: fp32 within 1/255 per pixel (mean below 0.01/255);
    bf16 within 4/255 (mean below 0.1/255); attention within 1e-3 (fp32) and 0.03 (bf16)."""
    folder = shared_dir / "datasets" / "au-calibration" / "eric_andre"
    crops = np.stack([read_image(folder / f"{i}.jpg") for i in range(1, 25)])
    aus = np.random.default_rng(0).uniform(0, 5, (len(crops), N_AUS)).astype(np.float32)
    reference, _ = load_generator(None)
    pixels = torch.from_numpy(crops).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        attention, color = reference.eval()(pixels / 127.5 - 1, torch.from_numpy(aus))
        color = ((color + 1) * 127.5).clamp(0, 255)
        expected = (compose(pixels, attention, color).round().clamp(0, 255).byte()
                    .permute(0, 2, 3, 1).numpy())
    limits = {"fp32": (1, 0.01, 1e-3), "bf16": (4, 0.1, 0.03)}
    for precision, (max_diff, mean_diff, attention_diff) in limits.items():
        result = FaceEditor.from_checkpoint(None, "cpu", precision).edit(crops, aus)
        diff = np.abs(result.output.astype(np.int16) - expected)
        assert diff.max() <= max_diff and diff.mean() <= mean_diff, precision
        assert np.abs(result.attention - attention[:, 0].numpy()).max() <= attention_diff, precision


def test_editor_validates_inputs():
    editor = FaceEditor(_generator(), "cpu", "fp32")
    with pytest.raises(AnimatorError, match="uint8"):
        editor.edit(np.zeros((1, 32, 32, 3), np.float32), np.zeros((1, N_AUS)))
    with pytest.raises(AnimatorError, match="AU targets"):
        editor.edit(_crops(2, 32), np.zeros((3, N_AUS)))
    with pytest.raises(AnimatorError, match="multiples of 4"):
        editor.edit(np.zeros((1, 30, 30, 3), np.uint8), np.zeros(N_AUS))
    with pytest.raises(AnimatorError, match="NaN"):
        editor.edit(_crops(1, 32), np.full(N_AUS, np.nan))
    empty = editor.edit(np.zeros((0, 32, 32, 3), np.uint8), np.zeros((0, N_AUS)))
    assert empty.output.shape == (0, 32, 32, 3)


def test_device_and_precision_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(AnimatorError, match="--device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(AnimatorError, match="CUDA"):
            resolve_device("cuda")
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if bf16_is_fast(cpu) else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(AnimatorError, match="--precision"):
        resolve_precision("fp16", cpu)
