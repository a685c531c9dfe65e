import pytest
import torch

from training.model import build_model
from training.optim import DIV_FACTOR, FINAL_DIV_FACTOR, OneCycle, OneCycleAdamW


def run_steps(model, step_optimizer, steps: int, seed: int = 0) -> None:
    data = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        pixels = torch.rand(16, 64, generator=data) * 16
        targets = torch.randint(10, (16,), generator=data)
        loss = torch.nn.functional.cross_entropy(model(pixels), targets)
        loss.backward()
        step_optimizer()


def test_same_weights_as_torch_adamw_with_one_cycle():
    steps, max_lr, weight_decay = 60, 0.02, 0.01
    ours, theirs = build_model(seed=0), build_model(seed=0)
    optimizer = OneCycleAdamW(ours.parameters(), OneCycle(max_lr, steps), weight_decay)

    def step_ours() -> None:
        optimizer.step()
        optimizer.zero_grad()

    reference = torch.optim.AdamW(
        theirs.parameters(), lr=max_lr, weight_decay=weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        reference, max_lr=max_lr, total_steps=steps
    )

    def step_theirs() -> None:
        reference.step()
        schedule.step()
        reference.zero_grad()

    run_steps(ours, step_ours, steps)
    run_steps(theirs, step_theirs, steps)
    for name, tensor in ours.state_dict().items():
        assert torch.equal(tensor, theirs.state_dict()[name]), name


def test_schedule_warms_up_to_the_peak_then_anneals():
    schedule = OneCycle(max_lr=0.02, total_steps=100)
    learning_rates = [schedule.at(step)[0] for step in range(100)]
    betas = [schedule.at(step)[1] for step in range(100)]
    assert learning_rates[0] == pytest.approx(0.02 / DIV_FACTOR)
    assert max(learning_rates) == pytest.approx(0.02)
    assert learning_rates.index(max(learning_rates)) == 29  # 30% of the steps
    assert learning_rates[-1] == pytest.approx(0.02 / DIV_FACTOR / FINAL_DIV_FACTOR)
    # beta1 moves against the learning rate: lowest at the peak.
    assert betas.index(min(betas)) == 29 and betas[0] == betas[-1] == 0.95


def test_zero_grad_forgets_gradients():
    model = build_model(seed=0)
    optimizer = OneCycleAdamW(model.parameters(), OneCycle(0.01, 10), 0.0)
    model(torch.ones(2, 64)).sum().backward()
    optimizer.zero_grad()
    assert all(parameter.grad is None for parameter in model.parameters())
