"""
d2_sampling: training-sample selection for Detectron2.

- OHEM (Shrivastava et al. 2016, arXiv 1604.03540): ``OHEMROIHeads``
- IoU-balanced sampling (Libra R-CNN, Pang et al. 2019, arXiv 1904.02701): ``IoUBalancedROIHeads``
- ATSS (Zhang et al. 2020, arXiv 1912.02424): ``ATSSMatcher`` and the ``ATSS`` meta-architecture

Importing the package registers every model part with Detectron2's registries and the built-in
synthetic datasets with ``DatasetCatalog``; config keys are added by ``add_d2_sampling_config``.
"""

from . import (
    data,  # noqa: F401  (registers the synthetic datasets)
    modeling,  # noqa: F401  (registers backbones, ROI heads, meta-architectures)
)
from .config import add_d2_sampling_config

__version__ = "0.1.0"
__all__ = ["add_d2_sampling_config", "__version__"]
