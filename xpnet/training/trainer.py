"""The Trainer: epochs of mini-batch updates, evaluation, history, checkpoints and resume."""

import math
import os
import time

import numpy as np
from tqdm import tqdm

from xpnet import backends
from xpnet.console import say
from xpnet.errors import ShapeError, TrainingError, TrainingInterrupted
from xpnet.signals import signal_of
from xpnet.training.batches import BatchIterator
from xpnet.training.checkpoint import restore, save_checkpoint
from xpnet.training.history import write_history
from xpnet.training.parts import FullPrecision, Local

CHECKPOINT = "checkpoint.npz"


class Trainer:
    """Train ``model`` with ``optimizer`` on ``(x_train, t_train)``, evaluating on ``(x_test, t_test)``.

    Args:
        model: an xpnet Model. optimizer: an xpnet Optimizer.
        train, test: ``(x, t)`` pairs of host arrays: x normalised floats; t what the model's loss takes
            (integer labels or one-hot rows for a classifier, (N, outputs) targets for ``loss="mse"``).
        epochs, batch_size: the schedule. seed: shuffling seed.
        out_dir: where checkpoint.npz, metrics.json/.csv and curves.png go (None: nothing written).
        progress: show a tqdm bar. log_every: steps between host reads of the running loss.
        eval_batch_size: batch size of evaluation passes. None: the one the backend prefers
            (:meth:`~xpnet.backends.Backend.preferred_eval_batch_size`).
        distribution: how this process shares the work (:mod:`xpnet.training.parts`): None or
            :class:`~xpnet.training.parts.Local`, alone; :class:`xpnet.distributed.DataParallel` over MPI
            ranks, where ``batch_size`` is per rank (the global batch is ``batch_size * size``), rank 0's
            parameters are broadcast when training starts, gradients are averaged over the global batch
            every step, and rank 0 alone shows progress, evaluates and writes files.
        precision: the precision policy: None or :class:`~xpnet.training.parts.FullPrecision`, the
            optimizer updates the model's parameters; :class:`~xpnet.training.MixedPrecision` for a float16
            model (cast by the caller) with float32 master weights and a dynamic loss scale.
        augment: a callable applied to every training batch on its device (an :class:`xpnet.augment.Augment`;
            its generator state is saved in checkpoints), or None. Evaluation never augments.
        log: called with each epoch's report line (default :func:`xpnet.console.say`: stdout, best-effort).

    Failures: a non-finite training loss (naming the step) or test loss stops training before the
    epoch's checkpoint is written; Ctrl-C raises :class:`~xpnet.errors.TrainingInterrupted`; a full or
    unwritable ``out_dir`` and a device out of memory raise :class:`~xpnet.errors.TrainingError`. In
    every case the last completed epoch's checkpoint is left intact.
    """

    def __init__(self, model, optimizer, train, test, epochs=20, batch_size=100, seed=0, out_dir=None,
                 progress=True, log_every=None, eval_batch_size=None, config=None, distribution=None, augment=None,
                 precision=None, log=None):
        if int(epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs!r}")
        be = model.backend
        if eval_batch_size is None:
            known = isinstance(batch_size, (int, np.integer)) and batch_size > 0
            eval_batch_size = be.preferred_eval_batch_size(int(batch_size) if known else None)
        if not isinstance(eval_batch_size, (int, np.integer)) or eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be a positive integer, got {eval_batch_size!r}")
        classes = model.config.get("output_size")
        _check_split("training", *train, classes)
        _check_split("test", *test, classes)
        if tuple(test[0].shape[1:]) != tuple(train[0].shape[1:]):
            raise ShapeError(f"Trainer: test inputs have shape {tuple(test[0].shape[1:])} per example but "
                             f"training inputs have {tuple(train[0].shape[1:])}")
        self.model, self.optimizer = model, optimizer
        self.distribution = dist = distribution or Local()
        self.precision = precision or FullPrecision()
        self.is_root = dist.is_root
        self.epochs = int(epochs)
        self.out_dir, self.progress = (out_dir, progress) if self.is_root else (None, False)
        self.iterator = BatchIterator(*train, batch_size=batch_size, seed=seed, backend=be,
                                      rank=dist.rank, world_size=dist.size, reuse_buffers=True)
        self.test, self.augment = test, augment
        self.eval_batch_size = eval_batch_size
        # Reading the loss from host memory is free, so check every step; from a GPU each read is a sync.
        self.log_every = log_every or (1 if be.host_memory else 50)
        self.classifies = model.classifies  # accuracy is a metric of classifiers alone
        self.config = dict(config or {})
        self.history, self.epoch, self.step = [], 0, 0
        self.log = log or say

    @property
    def checkpoint_path(self):
        return os.path.join(self.out_dir, CHECKPOINT) if self.out_dir else None

    def resume(self, path=None):
        """Continue from a checkpoint (default: ``out_dir/checkpoint.npz``)."""
        self.epoch, self.history, _ = restore(path or self.checkpoint_path, self.model, self.optimizer,
                                              self.iterator, self.augment, self.precision)
        self.step = self.epoch * len(self.iterator)
        return self

    def fit(self):
        """Run the remaining epochs; returns the history (a list of per-epoch dicts).

        Raises:
            TrainingError: a non-finite loss, a failed checkpoint write, or the device out of memory.
            TrainingInterrupted: Ctrl-C; the last completed epoch's checkpoint is intact.
        """
        if self.out_dir:
            os.makedirs(self.out_dir, exist_ok=True)
        self.distribution.broadcast_params(self.model.params)  # every rank starts from rank 0's weights
        running = self.epoch + 1
        try:
            while self.epoch < self.epochs:
                running = self.epoch + 1
                self._fit_epoch()
        except TrainingInterrupted:
            raise
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM under xpnet.signals.stop_on_signals
            saved = self.checkpoint_path if self._kept() else None
            raise TrainingInterrupted(running, self.step, saved, signum=signal_of(e)) from None
        return self.history

    def _fit_epoch(self):
        record = self._train_epoch()
        if not self.is_root:  # rank 0 alone evaluates, reports and writes files
            self.epoch += 1
            record["epoch"] = self.epoch
            self.history.append(record)
            return
        record.update(self.evaluate())
        if not math.isfinite(record["test_loss"]):
            raise TrainingError(f"non-finite test loss ({record['test_loss']}) after epoch {self.epoch + 1}: the "
                                f"model diverged; lower the learning rate{self._kept()}")
        self.epoch += 1
        record["epoch"] = self.epoch
        self.history.append(record)
        self._report(record)
        if self.out_dir:
            self._save()

    def _save(self):
        """Write the checkpoint, then the history; a full or unwritable disk is a TrainingError."""
        try:
            save_checkpoint(self.checkpoint_path, self.model, self.optimizer, self.iterator, self.epoch,
                            self.history, extra={"config": self.config}, augment=self.augment,
                            precision=self.precision)
        except OSError as e:
            kept = "; the previous checkpoint is intact" if os.path.exists(self.checkpoint_path) else ""
            raise TrainingError(f"could not write the checkpoint of epoch {self.epoch} to {self.checkpoint_path}: "
                                f"{e.strerror or e}{kept}") from e
        try:
            write_history(self.out_dir, self.history, self.config)
        except OSError as e:
            raise TrainingError(f"could not write the history of epoch {self.epoch} to {self.out_dir}: "
                                f"{e.strerror or e}; the checkpoint of epoch {self.epoch} is saved") from e

    def _kept(self):
        path = self.checkpoint_path
        return f"; the last good checkpoint ({path}) is intact" if path and os.path.exists(path) else ""

    def _train_epoch(self):
        opt, be = self.optimizer, self.model.backend
        xp = be.xp
        bar = tqdm(total=len(self.iterator.x), desc=f"epoch {self.epoch + 1}/{self.epochs}", unit="img",
                   disable=not self.progress, leave=False, dynamic_ncols=True)
        loss_sum = correct = xp.zeros((), dtype=xp.float64)
        seen, window_loss, window_start, start = 0, xp.zeros((), dtype=xp.float64), self.step, time.perf_counter()
        try:
            batches = self.iterator.epoch()
            for loss, y, xb, tb in iter(lambda: self._step(batches), None):
                n = len(xb)
                loss_sum = loss_sum + loss * n
                window_loss = window_loss + loss
                if self.classifies:
                    correct = correct + _correct(y, tb)
                seen += n
                if (self.step - window_start) >= self.log_every:
                    mean = float(window_loss) / (self.step - window_start)
                    self._check_finite(mean, window_start, self.step)
                    window_loss, window_start = xp.zeros((), dtype=xp.float64), self.step
                    acc = {"acc": f"{float(correct) / seen:.4f}"} if self.classifies else {}
                    bar.set_postfix(loss=f"{mean:.4f}", **acc, img_s=f"{seen / (time.perf_counter() - start):.0f}",
                                    refresh=False)
                bar.update(n)
            if self.step > window_start:
                self._check_finite(float(window_loss), window_start, self.step)
            be.synchronize()
        finally:
            bar.close()
        elapsed = time.perf_counter() - start
        if self.distribution.size > 1:  # the epoch's metrics over the global batches, not this shard
            loss_sum, correct, seen = self.distribution.sum([float(loss_sum), float(correct), seen])
        record = {"train_loss": float(loss_sum) / seen, "train_acc": float(correct) / seen,
                  "lr": opt.current_lr(), "seconds": round(elapsed, 3), "images_per_s": round(seen / elapsed, 1)}
        if not self.classifies:
            del record["train_acc"]
        record.update(self.precision.history_fields())  # mixed precision: the loss scale and the steps skipped
        return record

    def _step(self, batches):
        """Gather the next batch, augment it and update on it: ``(loss, outputs, xb, tb)``, None after the last.

        The gather and the augmentation allocate on the device too, so an out-of-memory error in them gets
        the same advice as one in the forward or backward pass.
        """
        model = self.model
        try:
            xb, tb = next(batches, (None, None))
            if xb is None:
                return None
            if self.augment is not None:
                xb = self.augment(xb)
            loss, y = model.forward_loss(xb, tb, train=True, reuse=True)  # each step is done with the last one's
            model.backward(self.precision.loss_scale)
            grads = self.distribution.average_grads(model.grads, len(xb))
            # frozen parameters stay as they are
            self.precision.step(self.optimizer, model.trainable_params, grads)
        except Exception as e:
            self._raise_if_out_of_memory(e, "at batch size", self.iterator.batch_size, "--batch-size")
            raise
        self.step += 1
        return loss, y, xb, tb

    def _raise_if_out_of_memory(self, exc, where, batch_size, option):
        """Turn the device's out-of-memory error into a TrainingError naming the batch size to lower."""
        if not self.model.backend.is_out_of_memory(exc):
            return
        advice = f"try {option} {batch_size // 2}" if batch_size > 1 else "the model does not fit on this device"
        raise TrainingError(f"out of GPU memory {where} {batch_size}; {advice}{self._kept()}") from exc

    def _check_finite(self, value, first, last):
        if not math.isfinite(value):
            where = f"step {last}" if last - first == 1 else f"steps {first + 1}..{last}"
            raise TrainingError(f"non-finite loss ({value}) at {where} of epoch {self.epoch + 1}; "
                                f"lower the learning rate or check the data{self._kept()}")

    def evaluate(self):
        """Loss (and a classifier's accuracy) on the whole test set, in inference mode."""
        x, t = self.test
        model = self.model
        total_loss = correct = 0.0
        for i in range(0, len(x), self.eval_batch_size):
            xb, tb = x[i : i + self.eval_batch_size], t[i : i + self.eval_batch_size]
            try:
                loss, y = model.forward_loss(xb, tb, train=False)
            except Exception as e:
                self._raise_if_out_of_memory(e, "evaluating at batch size", self.eval_batch_size, "eval_batch_size")
                raise
            total_loss = total_loss + loss * len(xb)
            if self.classifies:
                correct = correct + _correct(y, tb)
        out = {"test_loss": float(total_loss) / len(x)}
        return {**out, "test_acc": float(correct) / len(x)} if self.classifies else out

    def _report(self, r):
        train_acc = f"  train acc {r['train_acc']:.4f}" if self.classifies else ""
        test_acc = f"  test acc {r['test_acc']:.4f}" if self.classifies else ""
        msg = (f"epoch {r['epoch']:>3}/{self.epochs}  loss {r['train_loss']:.4f}{train_acc}  "
               f"test loss {r['test_loss']:.4f}{test_acc}  {r['images_per_s']:.0f} img/s  {r['seconds']:.1f} s")
        if self.progress is not None:
            self.log(msg)


def _correct(y, t):
    """How many rows of the scores ``y`` (N, classes) pick the class ``t`` names (indices or one-hot), on y's
    device."""
    t = backends.of(y).asarray(t)
    return (y.argmax(axis=1) == (t if t.ndim == 1 else t.argmax(axis=1))).sum()


def _check_split(name, x, t, classes=None):
    """Raise before any work is done unless ``(x, t)`` is a non-empty set of in-range labels."""
    if len(x) != len(t):
        raise ShapeError(f"Trainer: the {name} set has {len(x)} inputs but {len(t)} labels")
    if len(x) == 0:
        raise ShapeError(f"Trainer: the {name} set is empty")
    t = t if hasattr(t, "dtype") else np.asarray(t)
    if t.ndim != 1 or t.dtype.kind not in "iu":
        return  # one-hot or float labels: the loss layer checks them
    labels = backends.of(t).asnumpy(t)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (classes is not None and high >= classes):
        want = f"in [0, {classes}) for a model with output_size {classes}" if classes is not None else "non-negative"
        raise ShapeError(f"Trainer: {name} labels must be {want}, got values in [{low}, {high}]")
