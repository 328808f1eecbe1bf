"""Libra R-CNN's balanced L1 loss: hand values, continuity at the joint, reductions, errors."""

import math

import pytest
import torch

from d2_sampling.modeling import balanced_l1_loss

ALPHA, GAMMA = 0.5, 1.5
B = math.exp(GAMMA / ALPHA) - 1.0  # e^3 - 1 = 19.0855...


def paper(x, alpha=ALPHA, gamma=GAMMA):
    """Eq. 8 of the paper, written out per value with Python floats."""
    b = math.exp(gamma / alpha) - 1.0
    x = abs(x)
    if x < 1:
        return alpha / b * (b * x + 1) * math.log(b * x + 1) - alpha * x
    return gamma * x + gamma / b - alpha


def test_hand_values():
    xs = [0.0, 0.001, 0.25, 0.5, -0.5, 0.999, 1.0, 1.5, -3.0, 10.0]
    got = balanced_l1_loss(
        torch.tensor(xs, dtype=torch.float64), torch.zeros(len(xs), dtype=torch.float64)
    )
    for x, g in zip(xs, got.tolist()):
        assert g == pytest.approx(paper(x), rel=1e-12, abs=1e-15), x
    assert got[0].item() == 0.0
    # x = 0.5 by hand: 0.5 / 19.0855 * 10.5428 * ln(10.5428) - 0.25
    assert got[3].item() == pytest.approx(0.5 / B * (0.5 * B + 1) * math.log(0.5 * B + 1) - 0.25)
    # beyond the joint: gamma * x + gamma / b - alpha
    assert got[8].item() == pytest.approx(4.5 + 1.5 / B - 0.5)


def test_value_and_gradient_continuous_at_one():
    eps = 1e-7
    x = torch.tensor([1.0 - eps, 1.0, 1.0 + eps], dtype=torch.float64, requires_grad=True)
    loss = balanced_l1_loss(x, torch.zeros(3, dtype=torch.float64))
    loss.sum().backward()
    left, at, right = loss.tolist()
    assert left == pytest.approx(at, abs=1e-6) and right == pytest.approx(at, abs=1e-6)
    assert at == pytest.approx(GAMMA + GAMMA / B - ALPHA, rel=1e-12)
    g_left, g_at, g_right = x.grad.tolist()
    # inner gradient alpha * ln(b x + 1) -> alpha * ln(b + 1) = gamma at x = 1
    assert g_left == pytest.approx(GAMMA, abs=1e-5)
    assert g_at == pytest.approx(GAMMA) and g_right == pytest.approx(GAMMA)


def test_gradient_inside_is_alpha_log():
    x = torch.tensor([0.1, 0.3, 0.8], dtype=torch.float64, requires_grad=True)
    balanced_l1_loss(x, torch.zeros(3, dtype=torch.float64)).sum().backward()
    for xi, g in zip([0.1, 0.3, 0.8], x.grad.tolist()):
        assert g == pytest.approx(ALPHA * math.log(B * xi + 1), rel=1e-10)
    # symmetric: a negative difference gets the opposite gradient
    y = torch.tensor([-0.3], dtype=torch.float64, requires_grad=True)
    balanced_l1_loss(y, torch.zeros(1, dtype=torch.float64)).sum().backward()
    assert y.grad.item() == pytest.approx(-ALPHA * math.log(B * 0.3 + 1), rel=1e-10)


def test_other_beta_is_continuous_in_value():
    for beta in (0.11, 2.0):
        x = torch.tensor([beta * (1 - 1e-9), beta * (1 + 1e-9)], dtype=torch.float64)
        lo, hi = balanced_l1_loss(x, torch.zeros(2, dtype=torch.float64), beta=beta).tolist()
        assert lo == pytest.approx(hi, abs=1e-7)


def test_reductions_and_shapes():
    x = torch.tensor([[0.2, -1.5], [3.0, 0.0]])
    t = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    none = balanced_l1_loss(x, t)
    assert none.shape == (2, 2)
    assert balanced_l1_loss(x, t, reduction="sum").item() == pytest.approx(none.sum().item())
    assert balanced_l1_loss(x, t, reduction="mean").item() == pytest.approx(none.mean().item())
    empty = balanced_l1_loss(torch.zeros(0, 4), torch.zeros(0, 4), reduction="mean")
    assert empty.item() == 0.0  # no foreground RoI: 0, not NaN


def test_bad_arguments_named():
    z = torch.zeros(2)
    for kwargs, name in [
        (dict(alpha=0.0), "alpha"),
        (dict(gamma=-1.0), "gamma"),
        (dict(beta=float("nan")), "beta"),
        (dict(alpha=True), "alpha"),
    ]:
        with pytest.raises(ValueError, match=f"balanced_l1_loss: {name} must be"):
            balanced_l1_loss(z, z, **kwargs)
    with pytest.raises(ValueError, match="reduction must be"):
        balanced_l1_loss(z, z, reduction="avg")
    with pytest.raises(ValueError, match="differ in shape"):
        balanced_l1_loss(z, torch.zeros(3))
