"""Proposal generators (registered in Detectron2's ``PROPOSAL_GENERATOR_REGISTRY`` on import)."""

from .iou_balanced_rpn import IoUBalancedRPN

__all__ = ["IoUBalancedRPN"]
