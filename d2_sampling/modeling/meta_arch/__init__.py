from .atss import ATSS, ATSSHead  # noqa: F401  (registers ATSS)
from .retinanet_atss import RetinaNetATSS  # noqa: F401  (registers RetinaNetATSS)
