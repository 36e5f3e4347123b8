"""The Trainer: epochs of mini-batch updates, evaluation, history, checkpoints and resume."""

import math
import os
import time

from tqdm import tqdm

from xpnet.errors import TrainingError
from xpnet.training.batches import BatchIterator
from xpnet.training.checkpoint import restore, save_checkpoint
from xpnet.training.history import write_history

CHECKPOINT = "checkpoint.npz"


class Trainer:
    """Train ``model`` with ``optimizer`` on ``(x_train, t_train)``, evaluating on ``(x_test, t_test)``.

    Args:
        model: an xpnet Model. optimizer: an xpnet Optimizer.
        train, test: ``(x, t)`` pairs of host arrays (x normalised floats, t integer labels).
        epochs, batch_size: the schedule. seed: shuffling seed.
        out_dir: where checkpoint.npz, metrics.json/.csv and curves.png go (None: nothing written).
        progress: show a tqdm bar. log_every: steps between host reads of the running loss.
        eval_batch_size: batch size of evaluation passes.
    """

    def __init__(self, model, optimizer, train, test, epochs=20, batch_size=100, seed=0, out_dir=None,
                 progress=True, log_every=None, eval_batch_size=1000, config=None):
        if int(epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs!r}")
        self.model, self.optimizer = model, optimizer
        self.epochs, self.out_dir, self.progress = int(epochs), out_dir, progress
        self.iterator = BatchIterator(*train, batch_size=batch_size, seed=seed, backend=model.backend)
        self.test = test
        self.eval_batch_size = eval_batch_size
        # On the CPU reading the loss is free, so check every step; on a GPU each read is a sync.
        self.log_every = log_every or (1 if model.backend.name == "numpy" else 50)
        self.config = dict(config or {})
        self.history, self.epoch, self.step = [], 0, 0

    @property
    def checkpoint_path(self):
        return os.path.join(self.out_dir, CHECKPOINT) if self.out_dir else None

    def resume(self, path=None):
        """Continue from a checkpoint (default: ``out_dir/checkpoint.npz``)."""
        self.epoch, self.history, _ = restore(path or self.checkpoint_path, self.model, self.optimizer,
                                              self.iterator)
        self.step = self.epoch * len(self.iterator)
        return self

    def fit(self):
        """Run the remaining epochs; returns the history (a list of per-epoch dicts)."""
        if self.out_dir:
            os.makedirs(self.out_dir, exist_ok=True)
        while self.epoch < self.epochs:
            record = self._train_epoch()
            record.update(self.evaluate())
            self.epoch += 1
            record["epoch"] = self.epoch
            self.history.append(record)
            self._report(record)
            if self.out_dir:
                save_checkpoint(self.checkpoint_path, self.model, self.optimizer, self.iterator,
                                self.epoch, self.history, extra={"config": self.config})
                write_history(self.out_dir, self.history, self.config)
        return self.history

    def _train_epoch(self):
        model, opt, be = self.model, self.optimizer, self.model.backend
        xp = be.xp
        bar = tqdm(total=len(self.iterator.x), desc=f"epoch {self.epoch + 1}/{self.epochs}", unit="img",
                   disable=not self.progress, leave=False, dynamic_ncols=True)
        loss_sum = correct = xp.zeros((), dtype=xp.float64)
        seen, window_loss, window_start, start = 0, xp.zeros((), dtype=xp.float64), self.step, time.perf_counter()
        for xb, tb in self.iterator.epoch():
            loss = model.loss(xb, tb, train=True)
            model.backward()
            opt.step(model.params, model.grads)
            self.step += 1
            n = len(xb)
            loss_sum = loss_sum + loss * n
            window_loss = window_loss + loss
            correct = correct + (model.loss_layer.p.argmax(axis=1) == _labels(tb)).sum()
            seen += n
            if (self.step - window_start) >= self.log_every:
                mean = float(window_loss) / (self.step - window_start)
                self._check_finite(mean, window_start, self.step)
                window_loss, window_start = xp.zeros((), dtype=xp.float64), self.step
                bar.set_postfix(loss=f"{mean:.4f}", acc=f"{float(correct) / seen:.4f}",
                                img_s=f"{seen / (time.perf_counter() - start):.0f}", refresh=False)
            bar.update(n)
        if self.step > window_start:
            self._check_finite(float(window_loss), window_start, self.step)
        be.synchronize()
        elapsed = time.perf_counter() - start
        bar.close()
        return {"train_loss": float(loss_sum) / seen, "train_acc": float(correct) / seen,
                "lr": opt.current_lr(), "seconds": round(elapsed, 3), "images_per_s": round(seen / elapsed, 1)}

    def _check_finite(self, value, first, last):
        if not math.isfinite(value):
            where = f"step {last}" if last - first == 1 else f"steps {first + 1}..{last}"
            kept = f"; the last good checkpoint ({self.checkpoint_path}) is intact" if self.epoch and \
                self.out_dir else ""
            raise TrainingError(f"non-finite loss ({value}) at {where} of epoch {self.epoch + 1}; "
                                f"lower the learning rate or check the data{kept}")

    def evaluate(self):
        """Loss and accuracy on the whole test set (inference mode)."""
        x, t = self.test
        model, be = self.model, self.model.backend
        total_loss = correct = 0.0
        for i in range(0, len(x), self.eval_batch_size):
            xb, tb = x[i : i + self.eval_batch_size], t[i : i + self.eval_batch_size]
            loss = model.loss(xb, tb, train=False)
            total_loss = total_loss + loss * len(xb)
            correct = correct + (model.loss_layer.p.argmax(axis=1) == _labels(be.asarray(tb))).sum()
        return {"test_loss": float(total_loss) / len(x), "test_acc": float(correct) / len(x)}

    def _report(self, r):
        msg = (f"epoch {r['epoch']:>3}/{self.epochs}  loss {r['train_loss']:.4f}  train acc {r['train_acc']:.4f}  "
               f"test loss {r['test_loss']:.4f}  test acc {r['test_acc']:.4f}  "
               f"{r['images_per_s']:.0f} img/s  {r['seconds']:.1f} s")
        if self.progress is not None:
            tqdm.write(msg)


def _labels(t):
    return t if t.ndim == 1 else t.argmax(axis=1)
