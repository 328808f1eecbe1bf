"""DistributedDataParallel wrapping that also works for CPU models (gloo)."""
from torch.nn.parallel import DistributedDataParallel

from detectron2.utils import comm

__all__ = ["create_ddp_model"]


def create_ddp_model(model, **kwargs):
    """
    Like ``detectron2.engine.create_ddp_model``, but a model on the CPU gets no ``device_ids``
    (DDP rejects them for CPU modules), so ``--num-gpus N`` on a machine without CUDA trains
    N real DDP workers over gloo.
    """
    if comm.get_world_size() == 1:
        return model
    on_cuda = next(model.parameters()).is_cuda
    if "device_ids" not in kwargs:
        kwargs["device_ids"] = [comm.get_local_rank()] if on_cuda else None
    return DistributedDataParallel(model, **kwargs)
