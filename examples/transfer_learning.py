"""Transfer learning on MNIST: features learnt on digits 0-4 help classify digits 5-9 from few labels.

1. Pre-train a DeepConvNet (5 classes) on every training image of digits 0-4.
2. Build fresh DeepConvNets for digits 5-9 (labels t - 5), copy every weight into them by name
   (xpnet.transfer.transfer_weights; the final layer too, its shape matches), and fine-tune on the
   first N labelled images of digits 5-9: one with every layer trainable, one with the convolutions
   frozen (``--freeze``).
3. Train an identical model from scratch on the same N images (same epochs, optimizer and seed).
4. Evaluate all three on every test image of digits 5-9, side by side.

Runs in a few minutes on two CPU cores (numpy backend; XPNET_BACKEND=cuda for the GPU).

    python examples/transfer_learning.py [--pretrain-epochs 1] [--finetune-images 300] [--epochs 15]
        [--freeze "conv*"] [--seed 0] [--out runs/transfer]
"""

import argparse
import os
import time

import numpy as np

from xpnet import backends, optim
from xpnet.datasets import load_mnist
from xpnet.models import DeepConvNet
from xpnet.training import Trainer
from xpnet.transfer import transfer_weights

VALIDATION = 500  # held-out 5-9 training images the Trainer reports on each epoch (not the test set)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain-epochs", type=int, default=1, help="epochs on digits 0-4 (default 1)")
    parser.add_argument("--finetune-images", type=int, default=300, help="labelled 5-9 images (default 300)")
    parser.add_argument("--epochs", type=int, default=15, help="epochs on those images, both models (default 15)")
    parser.add_argument("--freeze", action="append", metavar="PATTERN",
                        help='parameters the third model keeps frozen while fine-tuning, repeatable '
                             '(default "conv*")')
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="directory for the three models and misclassified.png")
    args = parser.parse_args()
    if args.finetune_images < 1:
        parser.error(f"--finetune-images must be >= 1, got {args.finetune_images}")
    args.freeze = args.freeze or ["conv*"]
    return args


def split(x, t, digits):
    """The examples of ``digits`` with labels renumbered from 0."""
    keep = np.isin(t, digits)
    return x[keep], t[keep] - min(digits)


def train(model, train_set, val_set, args, epochs, verbose=False):
    """Adam (lr 0.001) for ``epochs``, evaluating on ``val_set`` (one line per epoch if ``verbose``).

    Returns:
        (wall seconds, the last epoch's history record).
    """
    start = time.perf_counter()
    history = Trainer(model, optim.Adam(lr=0.001), train_set, val_set, epochs=epochs, batch_size=args.batch_size,
                      seed=args.seed, out_dir=None, progress=False if verbose else None).fit()
    return time.perf_counter() - start, history[-1]


def main():
    args = parse_args()
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    (x_train, t_train), (x_test, t_test) = load_mnist(flatten=False)
    low_train, low_test = split(x_train, t_train, [0, 1, 2, 3, 4]), split(x_test, t_test, [0, 1, 2, 3, 4])
    (x_high, t_high), high_test = split(x_train, t_train, [5, 6, 7, 8, 9]), split(x_test, t_test, [5, 6, 7, 8, 9])
    n = args.finetune_images
    few, val = (x_high[:n], t_high[:n]), (x_high[n : n + VALIDATION], t_high[n : n + VALIDATION])

    print(f"[1] pre-training DeepConvNet on digits 0-4: {len(low_train[0]):,} images, {args.pretrain_epochs} "
          f"epoch(s), on {backends.current().device}")
    source = DeepConvNet(output_size=5, seed=args.seed)
    seconds, last = train(source, low_train, low_test, args, args.pretrain_epochs, verbose=True)
    print(f"    digits 0-4 test accuracy {last['test_acc']:.4f}  ({seconds:.0f} s)")
    if args.out:
        source.save(os.path.join(args.out, "pretrained_0-4.npz"))

    print(f"[2] fine-tuning on the first {n} images of digits 5-9 (labels t-5), {args.epochs} epochs")
    source_ref = os.path.join(args.out, "pretrained_0-4.npz") if args.out else source
    tuned, frozen, scratch = (DeepConvNet(output_size=5, seed=args.seed + 1) for _ in range(3))  # one start
    report = transfer_weights(tuned, source_ref)
    print("    " + str(report).replace("\n", "\n    "))
    transfer_weights(frozen, source_ref)
    frozen.freeze(*args.freeze)
    print(f"    frozen in the third model ({', '.join(args.freeze)}): {len(frozen.frozen)} arrays, "
          f"{frozen.num_params() - sum(p.size for p in frozen.trainable_params.values()):,} parameters")
    rows = [("transfer, fine-tune all", tuned, train(tuned, few, val, args, args.epochs)[0]),
            (f"transfer, frozen {','.join(args.freeze)}", frozen, train(frozen, few, val, args, args.epochs)[0])]
    print(f"[3] training the same model from scratch on the same {n} images")
    rows.append(("from scratch", scratch, train(scratch, few, val, args, args.epochs)[0]))

    print(f"[4] test accuracy on all {len(high_test[0]):,} test images of digits 5-9")
    print(f"    {'model':<30} {'test acc':>9} {'train s':>8}")
    for name, model, seconds in rows:
        print(f"    {name:<30} {model.accuracy(*high_test, batch_size=200):>9.4f} {seconds:>8.1f}")
    if args.out:
        save_outputs(args.out, tuned, scratch, high_test)


def save_outputs(out, tuned, scratch, test):
    """The two 5-9 models and the fine-tuned one's misclassified test images (Figure 8.2)."""
    from xpnet.viz import misclassified, plot_misclassified

    tuned.save(os.path.join(out, "finetuned_5-9.npz"))
    scratch.save(os.path.join(out, "scratch_5-9.npz"))
    x, t = test
    idx, pred = misclassified(tuned, x, t)
    path = os.path.join(out, "misclassified.png")
    drawn, total = plot_misclassified(x[idx], t[idx] + 5, pred + 5, path)
    print(f"    wrote {path}: {drawn} of {total} misclassified test images (labels as digits)")


if __name__ == "__main__":
    main()
