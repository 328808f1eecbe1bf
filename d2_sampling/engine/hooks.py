"""
``WeightSyncCheck``: an opt-in end-of-training check that DDP kept every worker's weights equal
(``train_net.py --check-weight-sync``; the distributed tests use it).
"""

import hashlib
import json
import os

import torch
from detectron2.engine import HookBase
from detectron2.utils import comm

__all__ = ["WeightSyncCheck", "weights_digest"]


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-1 of every parameter and buffer, in ``state_dict`` order (DDP prefix removed)."""
    h = hashlib.sha1()
    module = model.module if hasattr(model, "module") else model
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class WeightSyncCheck(HookBase):
    """
    After training, every worker hashes its weights; the main process writes
    ``OUTPUT_DIR/weights_digest.json`` (one digest per rank) and a mismatch raises, because
    workers that diverged mean the gradients were not all-reduced.
    """

    def __init__(self, output_dir: str):
        self._output_dir = output_dir

    def after_train(self):
        digests = comm.all_gather(weights_digest(self.trainer.model))
        if comm.is_main_process() and self._output_dir:
            with open(os.path.join(self._output_dir, "weights_digest.json"), "w") as f:
                json.dump({"world_size": comm.get_world_size(), "digests": digests}, f)
        if len(set(digests)) != 1:
            raise RuntimeError(f"Workers ended with different weights: {digests}")
