"""
Detectron2's Fast R-CNN box predictor with one more box loss: Libra R-CNN's balanced L1
(``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE: "balanced_l1"``, :func:`balanced_l1_loss` on the
box deltas of the foreground RoIs, summed and divided by the number of RoIs as Detectron2 does
for every box loss). Everything else is :class:`FastRCNNOutputLayers`. See docs/libra_rcnn.md.
"""

import torch
from detectron2.config import configurable
from detectron2.layers import nonzero_tuple
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers

from ..balanced_l1_loss import balanced_l1_loss

__all__ = ["BalancedL1FastRCNNOutputLayers"]


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
