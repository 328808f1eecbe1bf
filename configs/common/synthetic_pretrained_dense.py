# The synthetic dataset for the pretrained dense detectors (RetinaNet, RetinaNet + ATSS, ATSS,
# FCOS, FCOS + ATSS): what configs/common/synthetic_pretrained.py gives (its 1200-iteration
# schedule included), with Base-Synthetic-RetinaNet-EffLite0.yaml's learning rate, 0.005 (as
# BCCD's dense configs: 0.01 diverged there).
from .synthetic_pretrained import dataloader, lr_multiplier, optimizer, retinanet_effnetlite0, train  # noqa: F401

optimizer.lr = 0.005
