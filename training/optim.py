"""AdamW driven by a one-cycle schedule, in plain tensor arithmetic.

Why not torch.optim: building any torch.optim.Optimizer imports torch._dynamo
(torch's compiler, 0.9 s on the reference machine), a fifth of the 5 s budget
of `python -m training.export`, for a step that is a dozen tensor operations.
This module does the arithmetic of torch.optim.AdamW (single-tensor path)
stepped by torch.optim.lr_scheduler.OneCycleLR with its defaults, in the same
order, so the weights come out the same; tests/test_optim.py checks that
against torch.optim step by step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

# OneCycleLR's defaults (torch.optim.lr_scheduler.OneCycleLR).
PCT_START = 0.3  # share of the steps spent warming up
DIV_FACTOR = 25.0  # initial lr = max lr / 25
FINAL_DIV_FACTOR = 1e4  # final lr = initial lr / 1e4
BASE_MOMENTUM = 0.85  # Adam's beta1 at the peak learning rate
MAX_MOMENTUM = 0.95  # ... and at both ends
# AdamW's defaults.
BETA2 = 0.999
EPSILON = 1e-8


def cosine_anneal(start: float, end: float, fraction: float) -> float:
    """Go from `start` (fraction 0) to `end` (fraction 1) along half a cosine."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * fraction) + 1)


@dataclass(frozen=True)
class OneCycle:
    """The one-cycle policy: lr up to `max_lr` and down, beta1 the other way."""

    max_lr: float
    total_steps: int

    def at(self, step: int) -> tuple[float, float]:
        """Return (learning rate, beta1) for the 0-based optimizer `step`."""
        initial_lr = self.max_lr / DIV_FACTOR
        warmup_end = float(PCT_START * self.total_steps) - 1
        if step <= warmup_end:
            fraction = step / warmup_end
            return (
                cosine_anneal(initial_lr, self.max_lr, fraction),
                cosine_anneal(MAX_MOMENTUM, BASE_MOMENTUM, fraction),
            )
        fraction = (step - warmup_end) / (self.total_steps - 1 - warmup_end)
        return (
            cosine_anneal(self.max_lr, initial_lr / FINAL_DIV_FACTOR, fraction),
            cosine_anneal(BASE_MOMENTUM, MAX_MOMENTUM, fraction),
        )


class OneCycleAdamW:
    """AdamW (decoupled weight decay) whose lr and beta1 follow a OneCycle."""

    def __init__(
        self,
        parameters: Iterable[torch.nn.Parameter],
        schedule: OneCycle,
        weight_decay: float,
    ) -> None:
        self.parameters = list(parameters)
        self.schedule = schedule
        self.weight_decay = weight_decay
        self.steps_taken = 0
        self.first_moments = [torch.zeros_like(p) for p in self.parameters]
        self.second_moments = [torch.zeros_like(p) for p in self.parameters]

    def zero_grad(self) -> None:
        """Forget the gradients of the last step."""
        for parameter in self.parameters:
            parameter.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """Update every parameter from its gradient, then advance the schedule."""
        lr, beta1 = self.schedule.at(self.steps_taken)
        self.steps_taken += 1
        bias_correction1 = 1 - beta1**self.steps_taken
        bias_correction2_sqrt = (1 - BETA2**self.steps_taken) ** 0.5
        moments = zip(self.first_moments, self.second_moments, strict=True)
        for parameter, (first, second) in zip(self.parameters, moments, strict=True):
            grad = parameter.grad
            parameter.mul_(1 - lr * self.weight_decay)
            first.lerp_(grad, 1 - beta1)
            second.mul_(BETA2).addcmul_(grad, grad, value=1 - BETA2)
            denominator = (second.sqrt() / bias_correction2_sqrt).add_(EPSILON)
            parameter.addcdiv_(first, denominator, value=-lr / bias_correction1)
