# CPU-sized training on the built-in synthetic dataset: the LazyConfig twins of
# configs/Base-Synthetic-RCNN.yaml and configs/Base-Synthetic-RetinaNet.yaml (same values).
import detectron2.data.transforms as T
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BasicStem, ResNet
from detectron2.modeling.backbone.fpn import LastLevelP6P7

from d2_sampling.data import SYNTHETIC_CLASSES
from d2_sampling.modeling import TinyNet
from d2_sampling.solver import multistep_lr_multiplier

from .data import coco_dataloader

NUM_CLASSES = len(SYNTHETIC_CLASSES)
FPN_CHANNELS = 64
PIXEL_MEAN, PIXEL_STD = [127.5] * 3, [64.0] * 3

dataloader = coco_dataloader()
dataloader.train.dataset.names = "synthetic_train"
# Written out (it is the default) so `dataloader.train.dataset.filter_empty=False` overrides it.
dataloader.train.dataset.filter_empty = True
dataloader.train.mapper.use_instance_mask = False
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(256, 288, 320), sample_style="choice", max_size=448),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 4
dataloader.train.num_workers = 1
dataloader.test.dataset.names = "synthetic_val"
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=288, max_size=448)
]
dataloader.test.num_workers = 1

optimizer = model_zoo.get_config("common/optim.py").SGD
optimizer.lr = 0.02


# As SOLVER.STEPS / WARMUP_ITERS / MAX_ITER of the yaml twins. max_iter follows train.max_iter
# (interpolated when instantiated), so `train.max_iter=N` keeps the steps and the warm-up at the
# same iterations, as `SOLVER.MAX_ITER N` does: a schedule written as fractions of max_iter
# would move them.
lr_multiplier = L(multistep_lr_multiplier)(
    max_iter="${train.max_iter}", steps=[480, 560], warmup_iters=100, warmup_factor=0.001
)

train = model_zoo.get_config("common/train.py").train
train.update(max_iter=600, eval_period=0, log_period=20, init_checkpoint="", seed=-1)
train.checkpointer.period = 500


def tiny_bottom_up(out_features):
    return L(TinyNet)(
        channels=[32, 64, 128, 256], stem_channels=16, norm="GN", out_features=out_features
    )


def r18_bottom_up(out_features):
    """ResNet-18 with GroupNorm, trained from scratch (nothing frozen)."""
    return L(ResNet)(
        stem=L(BasicStem)(in_channels=3, out_channels=64, norm="GN"),
        stages=L(ResNet.make_default_stages)(depth=18, norm="GN"),
        out_features=out_features,
        freeze_at=0,
    )


def rcnn_r18():
    """ResNet-18-FPN Faster R-CNN, as configs/Synthetic/faster_rcnn_R_18_FPN_320.yaml."""
    model = rcnn_tiny()
    model.backbone.bottom_up = r18_bottom_up(["res2", "res3", "res4", "res5"])
    return model


def retinanet_r18():
    """ResNet-18-FPN RetinaNet, as configs/Synthetic/retinanet_R_18_FPN_320.yaml."""
    model = retinanet_tiny()
    model.backbone.bottom_up = r18_bottom_up(["res3", "res4", "res5"])
    # As build_retinanet_resnet_fpn_backbone: P6 from C5.
    model.backbone.top_block = L(LastLevelP6P7)(in_channels=512, out_channels=FPN_CHANNELS)
    return model


def rcnn_tiny():
    """TinyNet-FPN Faster R-CNN, as configs/Synthetic/faster_rcnn_tiny_FPN_demo.yaml."""
    model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
    model.roi_heads.update(mask_in_features=None, mask_pooler=None, mask_head=None)
    model.backbone.bottom_up = tiny_bottom_up(["res2", "res3", "res4", "res5"])
    model.backbone.in_features = ["res2", "res3", "res4", "res5"]
    model.backbone.out_channels = FPN_CHANNELS
    rpn = model.proposal_generator
    rpn.head.in_channels = FPN_CHANNELS
    rpn.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
    rpn.update(batch_size_per_image=128, pre_nms_topk=(1000, 500), post_nms_topk=(500, 300))
    roi = model.roi_heads
    roi.update(num_classes=NUM_CLASSES, batch_size_per_image=128)
    roi.box_pooler.sampling_ratio = 2  # adaptive sampling makes ROIAlign's backward slow on CPU
    roi.box_head.input_shape = ShapeSpec(channels=FPN_CHANNELS, height=7, width=7)
    roi.box_head.fc_dims = [256, 256]
    roi.box_predictor.input_shape = ShapeSpec(channels=256)
    model.update(pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD)
    return model


def retinanet_tiny():
    """TinyNet-FPN RetinaNet, as configs/Synthetic/retinanet_tiny_FPN.yaml."""
    model = model_zoo.get_config("common/models/retinanet.py").model
    model.backbone.bottom_up = tiny_bottom_up(["res3", "res4", "res5"])
    model.backbone.in_features = ["res3", "res4", "res5"]
    model.backbone.out_channels = FPN_CHANNELS
    model.backbone.top_block = L(LastLevelP6P7)(
        in_channels=FPN_CHANNELS, out_channels=FPN_CHANNELS, in_feature="p5"
    )
    model.head.input_shape = [ShapeSpec(channels=FPN_CHANNELS)] * 5
    model.head.conv_dims = [FPN_CHANNELS, FPN_CHANNELS]
    model.anchor_generator.sizes = [
        [x, x * 2 ** (1.0 / 3), x * 2 ** (2.0 / 3)] for x in [16, 32, 64, 128, 256]
    ]
    model.update(num_classes=NUM_CLASSES, pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD)
    return model


def quick_schedule(dataloader, train, lr_multiplier, optimizer):
    """Turn a synthetic config into a smoke test: 4 iterations on the 16-image split."""
    dataloader.train.dataset.names = "synthetic_mini_train"
    dataloader.test.dataset.names = "synthetic_mini_val"
    dataloader.train.total_batch_size = 2
    dataloader.train.num_workers = 0
    dataloader.test.num_workers = 0
    train.max_iter = 4
    train.checkpointer.period = 2
    # As the yaml twins' SOLVER.STEPS () and WARMUP_ITERS 0: a constant learning rate.
    lr_multiplier.update(steps=[], warmup_iters=0)
