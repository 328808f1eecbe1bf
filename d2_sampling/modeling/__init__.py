"""
Model parts. Importing this module registers them with Detectron2's registries.

Pure algorithms (no nn.Module, no cfg) live in their own files and are re-exported here; thin
Detectron2 wrappers live in ``roi_heads/`` and ``meta_arch/``.
"""
from .backbone import TinyNet

# --- ATSS (issue 3) ---

# --- OHEM (issue 4) ---

# --- IoU-balanced sampling (issue 5) ---
