"""GANimation's objective as pure functions of tensors (and of the two networks for the
composite objectives), so each term can be checked by hand.

Facts taken from the paper and the official code (learned, not copied):
- WGAN-GP: the critic minimises mean(D(fake)) - mean(D(real)) + 10 * mean((|grad D(x^)|_2 - 1)^2)
  on random interpolates x^ of real and generated images; the generator minimises -mean(D(fake)).
- AU regression: MSE on the network's /5 scale (mean over batch and AUs), weighted 4000 / B.
- Cycle: L1 between the input and G(G(x, y_target), y_source).
- Attention: mean(A) weighted 0.1 plus the total variation of A weighted 1e-5, where the total
  variation is the plain SUM of absolute horizontal and vertical neighbour differences over the
  whole batch (no mean), applied to both the forward and the reconstruction attention masks.

Distillation (animator's addition, for small fast generators): a frozen teacher generator sees
the same faces and targets, and the student's A and C are pulled to the teacher's by an L1
term on top of the objective above.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from animator.aus import AU_MAX
from animator.model.generator import compose

Networks = Callable[..., tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the objective; ``au`` is already divided by the batch size."""

    adv: float = 1.0
    gp: float = 10.0
    au: float = 4000.0 / 25
    cyc: float = 10.0
    mask: float = 0.1
    tv: float = 1e-5
    distill: float = 0.0


def critic_adversarial(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Wasserstein critic loss: mean(D(fake)) - mean(D(real))."""
    return fake_scores.float().mean() - real_scores.float().mean()


def generator_adversarial(fake_scores: torch.Tensor) -> torch.Tensor:
    """The generator's Wasserstein term: -mean(D(G(x)))."""
    return -fake_scores.float().mean()


def gradient_penalty(critic: Networks, real: torch.Tensor, fake: torch.Tensor,
                     alpha: torch.Tensor) -> torch.Tensor:
    """mean over samples of (||d sum(D(x^)) / d x^||_2 - 1)^2 with x^ = a*real + (1-a)*fake.

    ``alpha`` is (N,1,1,1) in [0,1]; the graph is kept so the penalty can be back-propagated.
    """
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores, _ = critic(mixed)
    (grad,) = torch.autograd.grad(scores.float().sum(), mixed, create_graph=True)
    norms = grad.float().flatten(1).norm(2, dim=1)
    return ((norms - 1) ** 2).mean()


def au_regression(predicted: torch.Tensor, target: torch.Tensor, scale: float = AU_MAX) -> torch.Tensor:
    """MSE between AU vectors (both on 0-5) measured on the network's /5 scale."""
    return F.mse_loss(predicted.float() / scale, target.float() / scale)


def cycle_l1(reconstruction: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return (reconstruction.float() - images.float()).abs().mean()


def attention_mean(attention: torch.Tensor) -> torch.Tensor:
    return attention.float().mean()


def total_variation(attention: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of |A[..., x+1] - A[..., x]| + |A[..., y+1, :] - A[..., y, :]|."""
    a = attention.float()
    return (a[..., :, 1:] - a[..., :, :-1]).abs().sum() + (a[..., 1:, :] - a[..., :-1, :]).abs().sum()


def distillation_l1(attention: torch.Tensor, color: torch.Tensor, teacher_attention: torch.Tensor,
                    teacher_color: torch.Tensor) -> torch.Tensor:
    """mean |A - A_teacher| + mean |C - C_teacher| (A on [0,1], C on [-1,1])."""
    return ((attention.float() - teacher_attention.float()).abs().mean()
            + (color.float() - teacher_color.float()).abs().mean())


def critic_objective(critic: Networks, real: torch.Tensor, fake: torch.Tensor,
                     real_aus: torch.Tensor, alpha: torch.Tensor,
                     weights: LossWeights) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Critic loss on a real batch and a (detached) generated batch, one backward pass."""
    fake = fake.detach()
    real_scores, real_pred = critic(real)
    fake_scores, _ = critic(fake)
    adv = critic_adversarial(real_scores, fake_scores)
    au = au_regression(real_pred, real_aus)
    gp = gradient_penalty(critic, real, fake, alpha)
    total = weights.adv * adv + weights.au * au + weights.gp * gp
    return total, {"d_adv": adv, "d_au": au, "d_gp": gp, "d_total": total}


def generate(generator: Networks, images: torch.Tensor,
             target_aus: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(attention, colour, composed output) of G(images, target)."""
    attention, color = generator(images, target_aus)
    return attention, color, compose(images, attention, color)


def generator_objective(generator: Networks, critic: Networks, images: torch.Tensor,
                        source_aus: torch.Tensor, target_aus: torch.Tensor, weights: LossWeights,
                        forward: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                        tv_scale: float = 1.0,
                        back: Callable[[torch.Tensor], torch.Tensor] | None = None,
                        teacher: tuple[torch.Tensor, torch.Tensor] | None = None,
                        ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Generator loss: fool the critic, hit the target AUs, come back with the SOURCE AUs.

    ``forward`` reuses an already computed ``generate(generator, inputs, target_aus)`` (in
    motion mode the inputs are the warped ``images``). ``back`` maps the generated face to the
    cycle's input (motion mode warps it back to the source AUs; None: the face itself).
    ``tv_scale`` multiplies the summed total variation (data-parallel ranks pass the world
    size, so averaging gradients over ranks keeps the sum over the global batch).
    ``teacher``: a teacher's (A, C) for the same images and targets, which adds
    ``weights.distill * distillation_l1``.
    """
    attention, color, fake = forward if forward is not None else generate(generator, images, target_aus)
    fake_scores, fake_pred = critic(fake)
    back_attention, _, reconstruction = generate(generator, fake if back is None else back(fake), source_aus)
    adv = generator_adversarial(fake_scores)
    au = au_regression(fake_pred, target_aus)
    cyc = cycle_l1(reconstruction, images)
    mask = attention_mean(attention) + attention_mean(back_attention)
    tv = (total_variation(attention) + total_variation(back_attention)) * tv_scale
    total = weights.adv * adv + weights.au * au + weights.cyc * cyc + weights.mask * mask + weights.tv * tv
    parts = {"g_adv": adv, "g_au": au, "g_cyc": cyc, "g_mask": mask, "g_tv": tv,
             "attention": attention.detach().float().mean()}
    if teacher is not None:
        parts["g_distill"] = distillation_l1(attention, color, *teacher)
        total = total + weights.distill * parts["g_distill"]
    parts["g_total"] = total
    return total, parts
