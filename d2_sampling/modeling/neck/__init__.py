"""Necks over a backbone's feature pyramid."""

from .bfp import BalancedFeaturePyramid, NonLocal2d, build_bfp_backbone

__all__ = ["BalancedFeaturePyramid", "NonLocal2d", "build_bfp_backbone"]
