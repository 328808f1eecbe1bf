from .checkpoint import AtomicCheckpointer, atomic_write
from .ddp import create_ddp_model
from .hooks import WeightSyncCheck, weights_digest
from .launch import launch, launched_by_torchrun
from .trainer import Trainer
