"""
The balanced L1 loss of Libra R-CNN (Pang, Chen, Shi, Feng, Ouyang, Lin, "Libra R-CNN: Towards
Balanced Learning for Object Detection", CVPR 2019, arXiv 1904.02701, Eq. 6-8): an L1 loss
whose gradient is ``alpha * ln(b |x| / beta + 1)`` below ``beta`` (so inliers, the accurate
boxes, get larger gradients than under smooth L1) and ``gamma`` beyond, ``b`` chosen so that the
two pieces meet with the same value and gradient. Pure torch. Semantics against the paper and
MMDetection: docs/libra_rcnn.md.
"""

import math
import numbers

import torch

__all__ = ["balanced_l1_loss"]


def balanced_l1_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.5,
    gamma: float = 1.5,
    beta: float = 1.0,
    reduction: str = "none",
) -> torch.Tensor:
    """
    With ``x = |input - target|`` and ``b = exp(gamma / alpha) - 1``::

        x <  beta:  alpha / b * (b * x + 1) * ln(b * x / beta + 1) - alpha * x
        x >= beta:  gamma * x + gamma / b - alpha * beta

    which is MMDetection's ``balanced_l1_loss`` (``log1p`` for its ``log(. + 1)``); with
    ``beta = 1`` it is the paper's Eq. 8 (``C = gamma / b - alpha``). The value is continuous
    at ``x = beta`` for every ``beta`` (both pieces give ``gamma * beta + gamma / b - alpha *
    beta``); the gradient only for ``beta = 1``, the paper's and MMDetection's setting, where
    it is ``alpha * ln(b + 1) = gamma`` on both sides.

    Args:
        input, target (Tensor): the same shape, any float dtype.
        alpha (float): > 0; smaller gives inliers more gradient (paper: 0.5).
        gamma (float): > 0; the gradient bound beyond ``beta`` (paper: 1.5).
        beta (float): > 0; where the two pieces meet (paper: 1).
        reduction (str): "none", "sum" or "mean".

    Returns:
        Tensor: elementwise losses ("none") or their sum / mean.

    Raises:
        ValueError: a hyperparameter out of range or an unknown reduction, naming it.
    """
    for name, value in (("alpha", alpha), ("gamma", gamma), ("beta", beta)):
        if not _is_number(value) or not value > 0 or not math.isfinite(value):
            raise ValueError(f"balanced_l1_loss: {name} must be a finite number > 0, got {value!r}")
    if reduction not in ("none", "sum", "mean"):
        raise ValueError(
            f"balanced_l1_loss: reduction must be 'none', 'sum' or 'mean', got {reduction!r}"
        )
    if input.shape != target.shape:
        raise ValueError(
            f"balanced_l1_loss: input {tuple(input.shape)} and target {tuple(target.shape)} "
            "differ in shape"
        )
    diff = (input - target).abs()
    b = math.exp(gamma / alpha) - 1.0
    inner = alpha / b * (b * diff + 1.0) * torch.log1p(b * diff / beta) - alpha * diff
    outer = gamma * diff + (gamma / b - alpha * beta)
    loss = torch.where(diff < beta, inner, outer)
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if loss.numel() else loss.sum()
    return loss


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
