from .atss import ATSS, ATSSHead, RetinaNetATSS  # noqa: F401  (registers ATSS, RetinaNetATSS)
