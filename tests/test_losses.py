"""The GANimation objective, term by term, against values computed by hand."""

from __future__ import annotations

import pytest
import torch

from animator.train.config import TrainConfig
from animator.train.losses import (LossWeights, attention_mean, au_regression, critic_adversarial,
                                   critic_objective, cycle_l1, generator_adversarial,
                                   generator_objective, gradient_penalty, total_variation)


class LinearCritic(torch.nn.Module):
    """D(x) = <w, x> per sample (one realism value), AUs = a constant."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(*shape, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        scores = (x * self.w).flatten(1).sum(1).view(-1, 1, 1, 1)
        return scores, torch.full((x.shape[0], 17), 2.0)


def test_gradient_penalty_of_a_linear_critic_is_the_weight_norm():
    critic = LinearCritic((3, 4, 4))
    real, fake = torch.rand(5, 3, 4, 4), torch.rand(5, 3, 4, 4)
    alpha = torch.rand(5, 1, 1, 1)
    expected = (critic.w.detach().norm() - 1) ** 2  # the gradient is w at every interpolate
    assert torch.allclose(gradient_penalty(critic, real, fake, alpha), expected, rtol=1e-5)


def test_gradient_penalty_matches_its_definition_on_a_tiny_conv_critic():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(3, 2, 3, padding=1)

    def critic(x):  # a non-linear patch critic: (N,2,H,W) -> (N,1,H,W)
        return torch.tanh(conv(x)).sum(1, keepdim=True) ** 2, None

    real, fake = torch.rand(3, 3, 5, 5), torch.rand(3, 3, 5, 5)
    alpha = torch.rand(3, 1, 1, 1)
    by_hand = []
    for i in range(3):  # one sample at a time, gradient of the summed patch scores
        x = (alpha[i] * real[i] + (1 - alpha[i]) * fake[i]).unsqueeze(0).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x)[0].sum(), x)
        by_hand.append((grad.flatten().norm() - 1) ** 2)
    penalty = gradient_penalty(critic, real, fake, alpha)
    assert torch.allclose(penalty, torch.stack(by_hand).mean(), rtol=1e-5)
    penalty.backward()  # the graph is kept: the penalty trains the critic
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_total_variation_and_attention_mean_on_a_known_mask():
    mask = torch.zeros(2, 1, 4, 4)
    mask[:, :, 1:3, 1:3] = 1.0  # a 2x2 block: 4 horizontal + 4 vertical unit steps per image
    assert total_variation(mask).item() == pytest.approx(16.0)  # summed over the batch, no mean
    assert attention_mean(mask).item() == pytest.approx(0.25)
    ramp = torch.linspace(0, 1, 5).view(1, 1, 1, 5).expand(1, 1, 3, 5)
    assert total_variation(ramp).item() == pytest.approx(3.0)  # 3 rows rising by 1, flat columns
    assert total_variation(torch.full((3, 1, 8, 8), 0.7)).item() == 0.0


def test_adversarial_au_and_cycle_terms():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([0.5, -0.5])
    assert critic_adversarial(real, fake).item() == pytest.approx(0.0 - 2.0)
    assert generator_adversarial(fake).item() == pytest.approx(0.0)
    pred, target = torch.zeros(2, 17), torch.full((2, 17), 5.0)
    assert au_regression(pred, target).item() == pytest.approx(1.0)  # MSE on the /5 scale
    assert cycle_l1(torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)).item() == pytest.approx(1.0)
    assert TrainConfig().au_weight == pytest.approx(160.0)


class RecordingGenerator:
    """A = 0.25 everywhere, C = 0: records the AUs of every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, images, aus):
        self.calls.append((images.detach().clone(), aus.detach().clone()))
        n, _, h, w = images.shape
        return torch.full((n, 1, h, w), 0.25), torch.zeros(n, 3, h, w)


def test_generator_objective_cycles_back_with_the_source_aus():
    generator = RecordingGenerator()
    critic = LinearCritic((3, 4, 4))
    images = torch.rand(2, 3, 4, 4) * 2 - 1
    source, target = torch.full((2, 17), 1.0), torch.full((2, 17), 4.0)
    weights = LossWeights(adv=1.0, au=160.0, cyc=10.0, mask=0.1, tv=1e-5)
    total, parts = generator_objective(generator, critic, images, source, target, weights)

    (first_in, first_aus), (second_in, second_aus) = generator.calls
    assert torch.equal(first_in, images) and torch.equal(first_aus, target)
    assert torch.equal(second_aus, source)  # G(G(x, y_target), y_source)
    assert torch.allclose(second_in, 0.25 * images)  # the composed output A*x + (1-A)*C
    reconstruction = 0.25 * 0.25 * images
    assert parts["g_cyc"].item() == pytest.approx((reconstruction - images).abs().mean().item(), rel=1e-6)
    assert parts["g_mask"].item() == pytest.approx(0.5)  # mean(A) of both passes
    assert parts["g_tv"].item() == 0.0
    assert parts["g_au"].item() == pytest.approx(((2.0 - 4.0) / 5) ** 2)
    expected = (parts["g_adv"] + 160 * parts["g_au"] + 10 * parts["g_cyc"] + 0.1 * 0.5).item()
    assert total.item() == pytest.approx(expected, rel=1e-6)


def test_critic_objective_sums_its_weighted_terms():
    critic = LinearCritic((3, 4, 4))
    real, fake = torch.rand(4, 3, 4, 4), torch.rand(4, 3, 4, 4)
    labels = torch.full((4, 17), 2.5)
    weights = LossWeights(adv=1.0, gp=10.0, au=160.0)
    total, parts = critic_objective(critic, real, fake, labels, torch.rand(4, 1, 1, 1), weights)
    scores_real, scores_fake = critic(real)[0], critic(fake)[0]
    assert parts["d_adv"].item() == pytest.approx((scores_fake.mean() - scores_real.mean()).item(), rel=1e-5)
    assert parts["d_au"].item() == pytest.approx((0.5 / 5) ** 2, rel=1e-5)
    assert total.item() == pytest.approx(
        (parts["d_adv"] + 160 * parts["d_au"] + 10 * parts["d_gp"]).item(), rel=1e-5)


def test_distillation_adds_the_weighted_l1_to_the_teachers_masks():
    generator = RecordingGenerator()  # A = 0.25, C = 0 everywhere
    critic = LinearCritic((3, 4, 4))
    images = torch.rand(2, 3, 4, 4) * 2 - 1
    source, target = torch.full((2, 17), 1.0), torch.full((2, 17), 4.0)
    teacher = (torch.full((2, 1, 4, 4), 0.75), torch.full((2, 3, 4, 4), -0.5))
    plain_total, plain = generator_objective(generator, critic, images, source, target,
                                             LossWeights(distill=7.0))
    total, parts = generator_objective(generator, critic, images, source, target,
                                       LossWeights(distill=7.0), teacher=teacher)
    assert "g_distill" not in plain
    assert parts["g_distill"].item() == pytest.approx(0.5 + 0.5)  # |0.25-0.75| + |0-(-0.5)|
    assert total.item() == pytest.approx(plain_total.item() + 7.0, rel=1e-6)
    assert parts["g_total"] is total
