"""WGAN-GP parts shared by `gan_reference` (reference B exactly) and `gan` (the project's variant)."""
from __future__ import annotations

import torch
import torch.nn as nn


class Critic(nn.Module):
    """WGAN critic on sorted probability vectors: Linear-LeakyReLU(0.2) x2 -> one unbounded score (no BatchNorm,
    which would break the per-sample gradient penalty). Its compute is not counted (common.unlearn)."""

    def __init__(self, num_classes: int = 10, hidden: tuple[int, int] = (64, 32)):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(num_classes, hidden[0]), nn.LeakyReLU(0.2), nn.Linear(*hidden),
                                 nn.LeakyReLU(0.2), nn.Linear(hidden[1], 1))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return self.net(p).squeeze(1)


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP term E[(||grad_x D(x)||_2 - 1)^2] at x = eps * real + (1 - eps) * fake, eps ~ U(0, 1) per row."""
    eps = torch.rand(len(real), 1, device=real.device, dtype=real.dtype)
    mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)
    return ((grad.norm(2, dim=1) - 1) ** 2).mean()


def sorted_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax sorted descending: the critic judges confidence profiles, never which class (differentiable)."""
    return torch.softmax(logits.float(), dim=1).sort(dim=1, descending=True).values


def critic_step(critic, opt_d, real: torch.Tensor, fake: torch.Tensor, lambda_gp: float) -> float:
    """One critic update on (real, fake.detach()); returns the Wasserstein estimate D(real) - D(fake) before it."""
    fake = fake.detach()
    n = min(len(real), len(fake))
    real, fake = real[:n], fake[:n]
    d_real, d_fake = critic(real).mean(), critic(fake).mean()
    loss = d_fake - d_real + lambda_gp * gradient_penalty(critic, real, fake)
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    return (d_real - d_fake).item()
