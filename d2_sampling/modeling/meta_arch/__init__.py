"""Meta-architectures (registered in Detectron2's ``META_ARCH_REGISTRY`` on import)."""

from .atss import ATSS, ATSSHead
from .fcos import ConfigurableFCOS
from .fcos_atss import FCOSATSS
from .retinanet_atss import RetinaNetATSS

__all__ = ["ATSS", "ATSSHead", "ConfigurableFCOS", "FCOSATSS", "RetinaNetATSS"]
