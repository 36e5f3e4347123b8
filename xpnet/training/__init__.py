"""Training: batch iteration, the Trainer and the parts it is given, checkpoints and history files."""

from xpnet.training.batches import BatchIterator
from xpnet.training.checkpoint import load_checkpoint, restore, save_checkpoint
from xpnet.training.mixed import LossScaler, MixedPrecision
from xpnet.training.parts import FullPrecision, Local
from xpnet.training.trainer import Trainer

__all__ = ["BatchIterator", "FullPrecision", "Local", "LossScaler", "MixedPrecision", "Trainer", "load_checkpoint",
           "restore", "save_checkpoint"]
