"""
d2_sampling: training-sample selection for Detectron2.

- OHEM (Shrivastava et al. 2016, arXiv 1604.03540): ``OHEMROIHeads``
- IoU-balanced sampling (Libra R-CNN, Pang et al. 2019, arXiv 1904.02701): ``IoUBalancedROIHeads``
- ATSS (Zhang et al. 2020, arXiv 1912.02424): ``ATSSMatcher`` and the ``ATSS`` meta-architecture

Importing the package registers every model part with Detectron2's registries and the built-in
synthetic datasets with ``DatasetCatalog``; config keys are added by ``add_d2_sampling_config``.
"""

try:
    import detectron2  # noqa: F401
except ImportError as e:  # not on PyPI under its own name, so pip never installs it for us
    raise ImportError(
        "d2_sampling needs Detectron2 (>= 0.6): `pip install sal-detectron2==0.7.2` on Linux "
        "x86-64 with Python 3.10 and torch 2.3.1, or build it from source with `pip install "
        "--no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git'` "
        "(see README, 'Install')"
    ) from e

# Importing these registers the synthetic datasets and every model part.
from . import data, modeling
from .config import add_d2_sampling_config

__version__ = "0.1.0"
__all__ = ["add_d2_sampling_config", "data", "modeling", "__version__"]
