"""
The ATSS detector of Zhang et al., "Bridging the Gap Between Anchor-based and Anchor-free
Detection via Adaptive Training Sample Selection", CVPR 2020, arXiv 1912.02424: the paper's final
model without deformable convs. One square anchor of 8 x stride per location labelled by
:class:`ATSSMatcher`, a RetinaNet head with GroupNorm towers, a centerness branch on the box
tower and a learnable scale per level (:class:`ATSSHead`), focal classification loss, GIoU box
loss weighted by the centerness target, BCE centerness loss; inference scores
``sqrt(cls * centerness)``. It extends :class:`RetinaNetATSS` (its assignment) the way
Detectron2's FCOS extends the dense detector, keeping RetinaNet's output contract. Semantics
against the authors' code and MMDetection: docs/atss.md.
"""

from typing import Dict, List, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, batched_nms, cat
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.meta_arch.retinanet import RetinaNetHead
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage
from fvcore.nn import giou_loss, sigmoid_focal_loss_jit
from torch import Tensor, nn
from torch.nn import functional as F

from ..atss_grid import anchor_grid
from .atss_losses import atss_loss_normalizers, centerness_targets
from .retinanet_atss import RetinaNetATSS

__all__ = ["ATSS", "ATSSHead"]


class ATSSHead(RetinaNetHead):
    """
    RetinaNet's two towers (here with GroupNorm), plus a centerness branch on the box tower and
    a learnable scalar per level on the box deltas.
    """

    @configurable
    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        conv_dims: List[int],
        num_anchors: int = 1,
        norm="GN",
        **kwargs,
    ):
        """
        Args:
            input_shape (list[ShapeSpec]): one per level (all with the same channels).
            conv_dims (list[int]): channels of each tower conv, at least one.
            num_anchors (int): anchors per location (1 in the paper's ATSS).
            norm (str): normalisation of the tower convs (paper: "GN").
            Other arguments (``num_classes``, ``prior_prob``) are :class:`RetinaNetHead`'s.
        """
        if len(conv_dims) < 1:
            raise ValueError(f"ATSSHead: conv_dims must hold at least one conv, got {conv_dims!r}")
        super().__init__(
            input_shape=input_shape,
            conv_dims=conv_dims,
            num_anchors=num_anchors,
            norm=norm,
            **kwargs,
        )
        self.centerness = nn.Conv2d(conv_dims[-1], num_anchors, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(self.centerness.weight, std=0.01)
        nn.init.constant_(self.centerness.bias, 0)
        self.scales = nn.Parameter(torch.ones(len(input_shape)))

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        num_convs = cfg.MODEL.ATSS.NUM_CONVS
        if isinstance(num_convs, bool) or not isinstance(num_convs, int) or num_convs < 1:
            raise ValueError(f"MODEL.ATSS.NUM_CONVS must be a positive int, got {num_convs!r}")
        ret = super().from_config(cfg, input_shape)  # classes, prior, anchors per location
        ret.update(conv_dims=[input_shape[0].channels] * num_convs, norm=cfg.MODEL.ATSS.NORM)
        return ret

    def forward(self, features: List[Tensor]):
        """
        Args:
            features (list[Tensor]): L maps (N, C, Hi, Wi).

        Returns:
            logits (list[Tensor]): L maps (N, A*K, Hi, Wi).
            bbox_reg (list[Tensor]): L maps (N, A*4, Hi, Wi), deltas times the level's scale.
            centerness (list[Tensor]): L maps (N, A, Hi, Wi), logits.
        """
        if len(features) != self._num_features:
            raise ValueError(f"ATSSHead built for {self._num_features} levels, got {len(features)}")
        logits, bbox_reg, centerness = [], [], []
        for level, feature in enumerate(features):
            logits.append(self.cls_score(self.cls_subnet(feature)))
            box_feature = self.bbox_subnet(feature)
            bbox_reg.append(self.bbox_pred(box_feature) * self.scales[level])
            centerness.append(self.centerness(box_feature))
        return logits, bbox_reg, centerness


@META_ARCH_REGISTRY.register()
class ATSS(RetinaNetATSS):
    """
    The ATSS detector of the paper: see the module docstring. Outputs the same as
    :class:`RetinaNet`; losses ``loss_cls``, ``loss_box_reg`` (GIoU) and ``loss_centerness``.
    """

    @configurable
    def __init__(self, *, box_loss_weight: float = 2.0, test_nms_thresh: float = 0.6, **kwargs):
        """
        Args:
            box_loss_weight (float): weight of the GIoU loss (paper: 2.0).
            test_nms_thresh (float): per-class NMS IoU at inference (paper: 0.6).
            Other arguments are :class:`RetinaNetATSS`'s (:class:`RetinaNet`'s), with ``head``
            an :class:`ATSSHead` and ``box2box_transform`` weighted (10, 10, 5, 5) in the
            paper; the box loss is always GIoU (``box_reg_loss_type`` is not an argument).
        """
        box_loss_weight = float(box_loss_weight)
        if not box_loss_weight >= 0.0:  # also rejects NaN
            raise ValueError(f"ATSS: box_loss_weight must be >= 0, got {box_loss_weight!r}")
        super().__init__(box_reg_loss_type="giou", test_nms_thresh=test_nms_thresh, **kwargs)
        self.box_loss_weight = box_loss_weight

    @classmethod
    def from_config(cls, cfg):
        box_loss_weight = cfg.MODEL.ATSS.BOX_LOSS_WEIGHT
        if isinstance(box_loss_weight, bool) or not isinstance(box_loss_weight, (int, float)):
            raise ValueError(
                f"MODEL.ATSS.BOX_LOSS_WEIGHT must be a number, got {box_loss_weight!r}"
            )
        if not box_loss_weight >= 0.0:
            raise ValueError(f"MODEL.ATSS.BOX_LOSS_WEIGHT must be >= 0, got {box_loss_weight!r}")
        reg_weights = tuple(cfg.MODEL.ATSS.BBOX_REG_WEIGHTS)
        if len(reg_weights) != 4:
            raise ValueError(f"MODEL.ATSS.BBOX_REG_WEIGHTS must be 4 numbers, got {reg_weights!r}")
        # RetinaNet's arguments with the ATSS matcher; its head (a RetinaNetHead) is replaced,
        # and its box-loss options do not apply to the GIoU loss.
        ret = super().from_config(cfg)
        del ret["box_reg_loss_type"], ret["smooth_l1_beta"]
        backbone_shape = ret["backbone"].output_shape()
        feature_shapes = [backbone_shape[f] for f in ret["head_in_features"]]
        ret.update(
            head=ATSSHead(cfg, feature_shapes),
            box2box_transform=Box2BoxTransform(weights=reg_weights),
            box_loss_weight=box_loss_weight,
        )
        return ret

    def forward_training(self, images, features, predictions, gt_instances):
        pred_logits, pred_deltas, pred_centerness = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        anchors = self.anchor_generator(features)
        grid = anchor_grid(self.anchor_generator, features)
        gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances, grid)
        return self.losses(anchors, pred_logits, gt_labels, pred_deltas, gt_boxes, pred_centerness)

    def losses(
        self, anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes, pred_centerness
    ) -> Dict[str, Tensor]:
        """
        Args:
            anchors (list[Boxes]): one (R_l, 4) per level.
            pred_logits, pred_anchor_deltas, pred_centerness (list[Tensor]): per level
                (N, R_l, K), (N, R_l, 4), (N, R_l, 1).
            gt_labels, gt_boxes: from :meth:`label_anchors`, N tensors (R,) and (R, 4).

        Returns:
            dict: ``loss_cls`` (focal, over all anchors, / positives), ``loss_box_reg``
            (GIoU weighted by centerness, / centerness sum, x ``box_loss_weight``),
            ``loss_centerness`` (BCE on positives, / positives). Positive counts and
            centerness sums are averaged over workers.
        """
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, R)
        gt_boxes = torch.stack(gt_boxes)  # (N, R, 4)
        anchors = Boxes.cat(anchors).tensor  # (R, 4)
        pos_mask = (gt_labels >= 0) & (gt_labels != self.num_classes)

        pos_anchors = anchors[None].expand(num_images, -1, -1)[pos_mask]  # (P, 4)
        pos_gt_boxes = gt_boxes[pos_mask]  # (P, 4)
        ctr_targets = centerness_targets(pos_anchors, pos_gt_boxes)  # (P,)
        num_pos = pos_mask.sum()
        num_pos_avg, centerness_avg = atss_loss_normalizers(num_pos, ctr_targets.sum())
        get_event_storage().put_scalar("num_pos_anchors", num_pos.item() / num_images)

        gt_labels_target = F.one_hot(gt_labels, num_classes=self.num_classes + 1)[..., :-1]
        loss_cls = sigmoid_focal_loss_jit(
            cat(pred_logits, dim=1),
            gt_labels_target.to(pred_logits[0].dtype),
            alpha=self.focal_loss_alpha,
            gamma=self.focal_loss_gamma,
            reduction="sum",
        )

        # Indexing with an empty mask keeps these losses in the graph (zero gradients), so a
        # worker without positives still takes part in DDP's gradient all-reduce.
        pos_deltas = cat(pred_anchor_deltas, dim=1)[pos_mask]
        pred_boxes = self.box2box_transform.apply_deltas(pos_deltas, pos_anchors)
        loss_giou = giou_loss(pred_boxes, pos_gt_boxes, reduction="none")
        loss_box_reg = (loss_giou * ctr_targets).sum()

        pos_centerness = cat(pred_centerness, dim=1).squeeze(2)[pos_mask]
        loss_centerness = F.binary_cross_entropy_with_logits(
            pos_centerness, ctr_targets, reduction="sum"
        )
        return {
            "loss_cls": loss_cls / num_pos_avg,
            "loss_box_reg": self.box_loss_weight * loss_box_reg / centerness_avg,
            "loss_centerness": loss_centerness / num_pos_avg,
        }

    def forward_inference(self, images, features: List[Tensor], predictions: List[List[Tensor]]):
        pred_logits, pred_deltas, pred_centerness = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        anchors = self.anchor_generator(features)
        results: List[Instances] = []
        for img_idx, image_size in enumerate(images.image_sizes):
            results.append(
                self.inference_single_image(
                    anchors,
                    [x[img_idx].sigmoid() for x in pred_logits],
                    [x[img_idx].sigmoid() for x in pred_centerness],
                    [x[img_idx] for x in pred_deltas],
                    image_size,
                )
            )
        return results

    def inference_single_image(
        self,
        anchors: List[Boxes],
        box_cls: List[Tensor],
        box_centerness: List[Tensor],
        box_delta: List[Tensor],
        image_size: Tuple[int, int],
    ) -> Instances:
        """
        Per level: keep class probabilities ``> test_score_thresh``, score them
        ``sqrt(p * centerness)``, keep the ``test_topk_candidates`` best, decode; then per-class
        NMS over all levels and the ``max_detections_per_image`` best.

        Args:
            anchors (list[Boxes]): per level (R_l, 4).
            box_cls (list[Tensor]): per level (R_l, K) probabilities.
            box_centerness (list[Tensor]): per level (R_l, 1) probabilities.
            box_delta (list[Tensor]): per level (R_l, 4).
            image_size (tuple): (H, W).
        """
        per_level = []
        for anchors_i, cls_i, ctr_i, delta_i in zip(anchors, box_cls, box_centerness, box_delta):
            keep = cls_i > self.test_score_thresh
            scores = torch.sqrt(cls_i * ctr_i)[keep]
            idxs = keep.nonzero()
            num_topk = min(self.test_topk_candidates, scores.shape[0])
            scores, top = scores.topk(num_topk)
            anchor_idxs, classes = idxs[top].unbind(dim=1)
            boxes = self.box2box_transform.apply_deltas(
                delta_i[anchor_idxs], anchors_i.tensor[anchor_idxs]
            )
            per_level.append(
                Instances(image_size, pred_boxes=Boxes(boxes), scores=scores, pred_classes=classes)
            )
        pred = Instances.cat(per_level)
        keep = batched_nms(
            pred.pred_boxes.tensor, pred.scores, pred.pred_classes, self.test_nms_thresh
        )
        return pred[keep[: self.max_detections_per_image]]
