"""The balanced feature pyramid (Libra R-CNN) and its non-local refinement: exact small cases."""

import pytest
import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone, build_backbone

from d2_sampling.engine.setup import load_yacs_config
from d2_sampling.modeling import BalancedFeaturePyramid, NonLocal2d


class FakePyramid(Backbone):
    """Returns given feature maps: p2 (stride 4) .. p5 (stride 32), 2 channels."""

    def __init__(self, feats):
        super().__init__()
        self.feats = feats
        self._out_features = list(feats)
        self._out_feature_strides = {f"p{i + 2}": 4 * 2**i for i in range(len(feats))}
        self._out_feature_channels = {f: v.shape[1] for f, v in feats.items()}

    def forward(self, x):
        return dict(self.feats)


def pyramid(channels=2):
    gen = torch.Generator().manual_seed(0)
    return {
        f"p{i + 2}": torch.randn(1, channels, 8 // 2**i, 8 // 2**i, generator=gen) for i in range(4)
    }


def test_balance_without_refinement_by_hand():
    feats = pyramid()
    bfp = BalancedFeaturePyramid(FakePyramid(feats), refine_level=1, refine_type="none")
    out = bfp(torch.zeros(1, 3, 32, 32))
    # level 1 (4 x 4): p2 max-pooled 2x2, p3 itself, p4 / p5 repeated (nearest)
    p2, p3, p4, p5 = (feats[f] for f in ("p2", "p3", "p4", "p5"))
    gathered = [
        F.max_pool2d(p2, 2),
        p3,
        p4.repeat_interleave(2, 2).repeat_interleave(2, 3),
        p5.repeat_interleave(4, 2).repeat_interleave(4, 3),
    ]
    bsf = sum(gathered) / 4
    assert torch.allclose(out["p3"], p3 + bsf)
    assert torch.allclose(out["p2"], p2 + bsf.repeat_interleave(2, 2).repeat_interleave(2, 3))
    assert torch.allclose(out["p4"], p4 + F.max_pool2d(bsf, 2))
    assert torch.allclose(out["p5"], p5 + F.max_pool2d(bsf, 4))
    assert {f: s.stride for f, s in bfp.output_shape().items()} == {
        "p2": 4,
        "p3": 8,
        "p4": 16,
        "p5": 32,
    }
    # balance(): the same outputs, and the integrated feature (no refinement: the refined one).
    balanced, integrated, refined = bfp.balance(dict(feats))
    assert integrated.shape == (1, 2, 4, 4) and torch.allclose(integrated, bsf)
    assert refined is integrated
    assert all(torch.equal(balanced[f], out[f]) for f in out)


def test_balance_shows_the_refinement():
    feats = pyramid()
    bfp = BalancedFeaturePyramid(FakePyramid(feats), refine_level=1, refine_type="conv")
    balanced, integrated, refined = bfp.balance(dict(feats))
    with torch.no_grad():
        assert torch.allclose(refined, bfp.refine(integrated))
    out = bfp(torch.zeros(1, 3, 32, 32))
    assert all(torch.equal(balanced[f], out[f]) for f in out)
    assert torch.allclose(out["p3"], feats["p3"] + refined)


def test_non_local_starts_as_identity_and_matches_its_formula():
    torch.manual_seed(0)
    block = NonLocal2d(3)
    x = torch.randn(2, 3, 4, 5)
    assert torch.equal(block(x), x)  # conv_out is zero-initialised
    torch.nn.init.normal_(block.conv_out.weight)
    n, c, h, w = x.shape
    g = block.g(x).reshape(n, c, -1)
    theta = block.theta(x).reshape(n, c, -1)
    phi = block.phi(x).reshape(n, c, -1)
    attn = torch.einsum("nci,ncj->nij", theta, phi).softmax(-1)  # (n, HW, HW)
    y = torch.einsum("nij,ncj->nci", attn, g).reshape(n, c, h, w)
    assert torch.allclose(block(x), x + block.conv_out(y), atol=1e-6)


def test_refined_bfp_gradients_reach_refinement_and_bottom():
    feats = {k: v.requires_grad_() for k, v in pyramid().items()}
    bfp = BalancedFeaturePyramid(FakePyramid(feats), refine_level=2, refine_type="conv")
    sum(o.sum() for o in bfp(torch.zeros(1)).values()).backward()
    assert bfp.refine.weight.grad is not None and feats["p2"].grad is not None


def test_bad_arguments_named():
    bottom = FakePyramid(pyramid())
    for kwargs, msg in [
        (dict(in_features=["p9"]), "in_features"),
        (dict(in_features=["p3", "p2"]), "ordered finest first"),
        (dict(refine_level=4), "refine_level must be in"),
        (dict(refine_type="attention"), "refine_type must be one of"),
    ]:
        with pytest.raises(ValueError, match=msg):
            BalancedFeaturePyramid(bottom, **kwargs)


def test_yacs_builder_wraps_a_registered_fpn():
    cfg = load_yacs_config(
        "configs/Synthetic/faster_rcnn_tiny_FPN_demo.yaml",
        ["MODEL.DEVICE", "cpu"],
    )
    inner = cfg.MODEL.BACKBONE.NAME
    cfg.defrost()
    cfg.MODEL.BFP.BACKBONE = inner
    cfg.MODEL.BACKBONE.NAME = "build_bfp_backbone"
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    assert isinstance(backbone, BalancedFeaturePyramid)
    plain = backbone.bottom
    assert backbone.output_shape() == plain.output_shape()
    assert backbone.size_divisibility == plain.size_divisibility
    out = backbone(torch.zeros(1, 3, 64, 64))
    assert {k: v.shape for k, v in out.items()} == {
        k: v.shape for k, v in plain(torch.zeros(1, 3, 64, 64)).items()
    }
    for key, value, msg in [
        ("REFINE_TYPE", "attention", "MODEL.BFP.REFINE_TYPE"),
        ("BACKBONE", "build_bfp_backbone", "MODEL.BFP.BACKBONE"),
        ("REFINE_LEVEL", 99, "MODEL.BFP.REFINE_LEVEL"),
        ("IN_FEATURES", ["p9"], "MODEL.BFP.IN_FEATURES"),
    ]:
        bad = cfg.clone()
        bad.MODEL.BFP[key] = value
        with pytest.raises(ValueError, match=msg):
            build_backbone(bad, ShapeSpec(channels=3))
