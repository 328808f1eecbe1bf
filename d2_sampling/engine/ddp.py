"""DistributedDataParallel wrapping that also works for CPU models (gloo)."""
from torch.nn.parallel import DistributedDataParallel

from detectron2.utils import comm

__all__ = ["create_ddp_model"]


def create_ddp_model(model, *, fp16_compression=False, **kwargs):
    """
    Like ``detectron2.engine.create_ddp_model``, but a model on the CPU gets no ``device_ids``
    (DDP rejects them for CPU modules), so ``--num-gpus N`` on a machine without CUDA trains
    N real DDP workers over gloo.

    Args:
        model (nn.Module): the model, already on its device.
        fp16_compression (bool): all-reduce gradients in fp16 (DDP comm hook).
        kwargs: other arguments of ``DistributedDataParallel``.
    """
    if comm.get_world_size() == 1:
        return model
    on_cuda = next(model.parameters()).is_cuda
    if "device_ids" not in kwargs:
        kwargs["device_ids"] = [comm.get_local_rank()] if on_cuda else None
    ddp = DistributedDataParallel(model, **kwargs)
    if fp16_compression:
        from torch.distributed.algorithms.ddp_comm_hooks import default as comm_hooks

        ddp.register_comm_hook(state=None, hook=comm_hooks.fp16_compress_hook)
    return ddp
