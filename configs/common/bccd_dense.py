# BCCD for the dense detectors (RetinaNet, RetinaNet + ATSS, ATSS, FCOS, FCOS + ATSS): what
# configs/common/bccd.py gives, with Base-BCCD-RetinaNet.yaml's learning rate and schedule: LR
# 0.005 (0.01 diverged), 1200 iterations, decays at 960 and 1120 (the R-CNN schedule's shape,
# twice as long: at 600 RetinaNet had not always learnt BCCD's rare class; docs/bccd.md).
from .bccd import dataloader, lr_multiplier, optimizer, retinanet_effnetlite0, train  # noqa: F401
from .pretrained import long_schedule

optimizer.lr = 0.005
long_schedule(train, lr_multiplier)
