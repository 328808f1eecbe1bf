"""
Detectron2's Fast R-CNN box predictor with one more box loss: Libra R-CNN's balanced L1
(``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE: "balanced_l1"``, :func:`balanced_l1_loss` on the
box deltas of the foreground RoIs, summed and divided by the number of RoIs as Detectron2 does
for every box loss). Everything else is :class:`FastRCNNOutputLayers`. See docs/libra_rcnn.md.

:func:`with_balanced_l1_predictors` puts it into the yacs build of any ROI heads of this package
(``IoUBalancedROIHeads``, ``OHEMROIHeads``, ``SampledROIHeads`` over ``StandardROIHeads`` or
``CascadeROIHeads``); :func:`check_box_loss_config` rejects the key, at config time, for heads
that would build Detectron2's predictor (which knows no "balanced_l1" and would fail at the
first training step).
"""

from typing import Any, Dict

import torch
from detectron2.config import configurable
from detectron2.layers import nonzero_tuple
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers

from ..balanced_l1_loss import balanced_l1_loss

__all__ = [
    "BalancedL1FastRCNNOutputLayers",
    "check_box_loss_config",
    "with_balanced_l1_predictors",
]

# ROI_HEADS.NAME values whose yacs build goes through with_balanced_l1_predictors.
_BALANCED_L1_HEADS = ("IoUBalancedROIHeads", "OHEMROIHeads", "SampledROIHeads")


class BalancedL1FastRCNNOutputLayers(FastRCNNOutputLayers):
    """:class:`FastRCNNOutputLayers` that also accepts ``box_reg_loss_type="balanced_l1"``."""

    @configurable
    def __init__(
        self,
        input_shape,
        *,
        box_reg_loss_type: str = "smooth_l1",
        balanced_l1_alpha: float = 0.5,
        balanced_l1_gamma: float = 1.5,
        balanced_l1_beta: float = 1.0,
        **kwargs,
    ):
        """
        Args:
            balanced_l1_alpha, balanced_l1_gamma, balanced_l1_beta (float): the loss's
                hyperparameters (Libra R-CNN: 0.5, 1.5, 1.0), used when ``box_reg_loss_type``
                is "balanced_l1".
            Other arguments are :class:`FastRCNNOutputLayers`'s.
        """
        super().__init__(input_shape, box_reg_loss_type=box_reg_loss_type, **kwargs)
        # Checked now, not at the first loss: the same messages as the loss's own.
        balanced_l1_loss(
            torch.zeros(1),
            torch.zeros(1),
            alpha=balanced_l1_alpha,
            gamma=balanced_l1_gamma,
            beta=balanced_l1_beta,
        )
        self.balanced_l1 = dict(
            alpha=float(balanced_l1_alpha),
            gamma=float(balanced_l1_gamma),
            beta=float(balanced_l1_beta),
        )

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        b = cfg.MODEL.ROI_BOX_HEAD.BALANCED_L1
        for key in ("ALPHA", "GAMMA", "BETA"):
            value = b[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(
                    f"MODEL.ROI_BOX_HEAD.BALANCED_L1.{key} must be a number > 0, got {value!r}"
                )
        ret.update(balanced_l1_alpha=b.ALPHA, balanced_l1_gamma=b.GAMMA, balanced_l1_beta=b.BETA)
        return ret

    def box_reg_loss(self, proposal_boxes, gt_boxes, pred_deltas, gt_classes):
        """
        :meth:`FastRCNNOutputLayers.box_reg_loss`; for "balanced_l1": the loss of the
        foreground RoIs' deltas (of their GT class) against
        ``box2box_transform.get_deltas(proposal, gt)``, summed, / the number of RoIs.

        Args:
            proposal_boxes, gt_boxes (Tensor): (R, 4).
            pred_deltas (Tensor): (R, 4) or (R, K * 4).
            gt_classes (Tensor): (R,) int64, K for background.
        """
        if self.box_reg_loss_type != "balanced_l1":
            return super().box_reg_loss(proposal_boxes, gt_boxes, pred_deltas, gt_classes)
        box_dim = proposal_boxes.shape[1]
        fg = nonzero_tuple((gt_classes >= 0) & (gt_classes < self.num_classes))[0]
        if pred_deltas.shape[1] == box_dim:  # class-agnostic regression
            fg_pred = pred_deltas[fg]
        else:
            fg_pred = pred_deltas.view(-1, self.num_classes, box_dim)[fg, gt_classes[fg]]
        target = self.box2box_transform.get_deltas(proposal_boxes[fg], gt_boxes[fg])
        loss = balanced_l1_loss(fg_pred, target, reduction="sum", **self.balanced_l1)
        return loss / max(gt_classes.numel(), 1.0)


def with_balanced_l1_predictors(cfg, ret: Dict[str, Any]) -> Dict[str, Any]:
    """
    With ``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE: "balanced_l1"``, replace the box predictor(s)
    of a ``from_config`` result of ``StandardROIHeads`` (``box_predictor``) or
    ``CascadeROIHeads`` (``box_predictors``, one per stage) by
    :class:`BalancedL1FastRCNNOutputLayers` on the same box head output and the same
    ``box2box_transform`` (a cascade's per-stage weights kept); otherwise return ``ret`` as is.

    Args:
        cfg (CfgNode): the yacs config the heads are built from.
        ret (dict): the heads' ``from_config`` arguments, modified in place.

    Returns:
        dict: ``ret``.

    Raises:
        ValueError: heads whose arguments hold neither, naming the key.
    """
    if cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE != "balanced_l1":
        return ret

    def rebuild(box_head, predictor):
        return BalancedL1FastRCNNOutputLayers(
            cfg, box_head.output_shape, box2box_transform=predictor.box2box_transform
        )

    if "box_predictor" in ret and "box_head" in ret:
        ret["box_predictor"] = rebuild(ret["box_head"], ret["box_predictor"])
    elif "box_predictors" in ret and "box_heads" in ret:
        ret["box_predictors"] = [
            rebuild(h, p) for h, p in zip(ret["box_heads"], ret["box_predictors"])
        ]
    else:
        raise ValueError(
            'MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE "balanced_l1" needs ROI heads built like '
            "StandardROIHeads (box_head, box_predictor) or CascadeROIHeads (box_heads, "
            f"box_predictors); these heads' arguments are {sorted(ret)}"
        )
    return ret


def check_box_loss_config(cfg) -> None:
    """
    Raise ``ValueError`` at config time when ``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE`` is
    "balanced_l1" but ``MODEL.ROI_HEADS.NAME`` names heads that build Detectron2's own predictor,
    naming both keys and the way to get it (``SampledROIHeads`` over those heads).
    """
    if cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE != "balanced_l1":
        return
    name = cfg.MODEL.ROI_HEADS.NAME
    if cfg.MODEL.META_ARCHITECTURE not in ("GeneralizedRCNN",) or name in _BALANCED_L1_HEADS:
        return
    raise ValueError(
        f'MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE "balanced_l1" is not known to '
        f"MODEL.ROI_HEADS.NAME {name!r} (Detectron2's predictor would fail at the first step): "
        f'use MODEL.ROI_HEADS.NAME "SampledROIHeads" with MODEL.ROI_SAMPLER.HEADS {name!r} '
        f"(and MODEL.ROI_SAMPLER.NAME for its sampler), or one of {list(_BALANCED_L1_HEADS)}"
    )
