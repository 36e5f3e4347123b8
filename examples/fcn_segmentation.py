"""Semantic segmentation with an FCN (chapter 8's "network of convolutions only") on MNIST canvases.

Each 64x64 canvas holds one to three MNIST digits; every pixel is labelled with its digit's class or as
background (11 classes). Training canvases are made from MNIST's training digits, test canvases from its
test digits (xpnet.datasets.mnist_segmentation). The FCN (xpnet.models.FCN) trains with Adam on the
per-pixel cross-entropy; after each epoch the test set's mean IoU and pixel accuracy are printed. It
stops after --epochs or when the next epoch would pass --minutes of training time, then writes
``model.npz``, ``metrics.json`` and ``segmentation.png`` (input, ground truth, prediction per row).

    python examples/fcn_segmentation.py [--train 10000] [--test 1000] [--epochs 30] [--minutes 15]
        [--batch-size 32] [--lr 0.001] [--seed 0] [--out runs/fcn]

XPNET_BACKEND=cuda runs it on the GPU.
"""

import argparse
import json
import os
import time

import numpy as np

from xpnet import backends, imagegrid, optim
from xpnet.datasets.mnist_segmentation import SEG_CLASSES, load_mnist_segmentation
from xpnet.fileio import atomic_write
from xpnet.models import FCN


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=10000, help="training canvases (default 10000)")
    p.add_argument("--test", type=int, default=1000, help="test canvases (default 1000)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--minutes", type=float, default=15.0, help="training-time budget (default 15)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/fcn")
    args = p.parse_args(argv)
    for name in ("train", "test", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def train_epoch(model, opt, x, t, batch_size, rng):
    """One shuffled pass; returns the mean training loss and the seconds it took."""
    start, total = time.perf_counter(), 0.0
    order = rng.permutation(len(x))
    for i in range(0, len(x), batch_size):
        idx = order[i:i + batch_size]
        loss = model.loss(x[idx], t[idx], train=True)
        model.backward()
        opt.step(model.params, model.grads)
        total += float(loss) * len(idx)
    model.backend.synchronize()
    return total / len(x), time.perf_counter() - start


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    (x_tr, t_tr), (x_te, t_te) = load_mnist_segmentation(args.train, args.test, seed=args.seed)
    model = FCN(input_dim=x_tr.shape[1:], num_classes=SEG_CLASSES, seed=args.seed)
    opt = optim.Adam(lr=args.lr)
    print(f"FCN, {model.num_params():,} parameters on {backends.current().name}; {len(x_tr)} training and "
          f"{len(x_te)} test canvases of {x_tr.shape[2]}x{x_tr.shape[3]}", flush=True)
    rng, history, trained, wall = np.random.default_rng(args.seed), [], 0.0, time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        loss, seconds = train_epoch(model, opt, x_tr, t_tr, args.batch_size, rng)
        trained += seconds
        scores = model.scores(x_te, t_te)
        history.append({"epoch": epoch, "loss": loss, "train_seconds": trained, "mean_iou": scores["mean_iou"],
                        "pixel_accuracy": scores["pixel_accuracy"]})
        print(f"epoch {epoch}: loss {loss:.4f}, test mean IoU {scores['mean_iou']:.4f}, pixel accuracy "
              f"{scores['pixel_accuracy']:.4f}, training time {trained:.0f} s", flush=True)
        if trained + seconds > args.minutes * 60:
            break
    model.save(os.path.join(args.out, "model.npz"))
    shown = slice(0, 8)
    imagegrid.save_segmentation(x_te[shown], t_te[shown], model.segment(x_te[shown]),
                                os.path.join(args.out, "segmentation.png"), zoom=2)
    result = {"args": vars(args), "backend": backends.current().name, "wall_seconds": time.perf_counter() - wall,
              "final": {**history[-1], **scores},
              "history": history}
    with atomic_write(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"test mean IoU {scores['mean_iou']:.4f} after {trained:.0f} s of training")


if __name__ == "__main__":
    main()
