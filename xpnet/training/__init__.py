"""Training: batch iteration, the Trainer, checkpoints and history files."""

from xpnet.training.batches import BatchIterator
from xpnet.training.checkpoint import load_checkpoint, restore, save_checkpoint
from xpnet.training.mixed import LossScaler, MixedPrecision
from xpnet.training.trainer import Trainer

__all__ = ["BatchIterator", "LossScaler", "MixedPrecision", "Trainer", "load_checkpoint", "restore",
           "save_checkpoint"]
