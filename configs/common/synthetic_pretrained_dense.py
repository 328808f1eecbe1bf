# The synthetic dataset for the pretrained dense detectors (RetinaNet, RetinaNet + ATSS, ATSS,
# FCOS, FCOS + ATSS): what configs/common/synthetic_pretrained.py gives, with
# Base-Synthetic-RetinaNet-EffLite0.yaml's learning rate and schedule: LR 0.005, 1200 iterations,
# decays at 960 and 1120 (the R-CNN schedule's shape, twice as long, as BCCD's dense configs: at
# 600 iterations RetinaNet's AP still rose 4-12 points per evaluation; benchmarks/README.md).
from .synthetic_pretrained import dataloader, lr_multiplier, optimizer, retinanet_effnetlite0, train  # noqa: F401

optimizer.lr = 0.005
train.max_iter = 1200
lr_multiplier.steps = [960, 1120]
