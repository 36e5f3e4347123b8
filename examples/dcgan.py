"""DCGAN on MNIST: a generator of transposed convolutions learns to draw digits against a discriminator.

Generator (xpnet.models.Generator): noise -> transposed convolutions + BatchNorm + ReLU -> tanh.
Discriminator (xpnet.models.Discriminator): strided convolutions + LeakyReLU -> one logit, trained with
the sigmoid binary cross-entropy on logits. Both with Adam (lr 2e-4, beta1 0.5), as in Radford et al.

Samples come from an exponential moving average of the generator's weights (--ema, default 0.999;
xpnet.optim.WeightAverage, which warms up over the first updates), the standard practice of Yazici et
al. 2019: the trained generator's weights keep circling under the adversarial updates and their average
draws digits the classifier is surer of. ``--ema 0`` samples from the trained generator itself. Both are scored.

The --minutes budget counts training time on the wall clock (--clock wall, the default, as
examples/fcn_segmentation.py does: on an otherwise idle machine, what its cores do in that time), or this
process's CPU time (--clock cpu, all its threads: the run's work then does not depend on what else a shared
machine runs). Both are recorded. Scoring is not counted. After
every epoch (and when the budget runs out) it writes ``samples_epochK.png`` (8x8 samples of the
averaged generator from fixed noise) and scores 10,000 samples with a trained classifier
(--classifier, a saved xpnet model such as DeepConvNet): the share it classifies with confidence
>= 0.9, and the entropy of its class histogram (log 10 = 2.303 nats when all ten digits are equally
frequent). It saves ``generator.npz`` (trained), ``generator_average.npz`` (averaged; the one to
sample from), ``discriminator.npz`` and ``metrics.json``.

    python examples/dcgan.py [--epochs 30] [--minutes 15] [--clock wall] [--batch-size 64] [--ema 0.999]
        [--lr-decay none]
        [--classifier MODEL.npz] [--samples 10000] [--seed 0] [--out runs/dcgan]

XPNET_BACKEND=cuda runs it on the GPU.
"""

import argparse
import json
import os
import time

import numpy as np

import xpnet
from xpnet import backends, imagegrid, metrics, optim
from xpnet.datasets import load_mnist
from xpnet.fileio import atomic_write
from xpnet.layers import SigmoidBinaryCrossEntropy
from xpnet.models import Discriminator, Generator

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # what the --minutes budget counts
CLASSIFIER = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "results", "issue8", "ens_aug_member0",
                          "model.npz")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30,
                   help="at most this many epochs (default 30: the --minutes budget ends the run first)")
    p.add_argument("--minutes", type=float, default=15.0, help="training budget in minutes of --clock (default 15)")
    p.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                   help="what --minutes counts: wall-clock training time (default) or this process's CPU time")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--g-widths", type=int, nargs=2, default=(64, 32), metavar=("W1", "W2"),
                   help="generator channels after its first two transposed convolutions (default 64 32)")
    p.add_argument("--d-widths", type=int, nargs=2, default=(32, 64), metavar=("W1", "W2"),
                   help="discriminator channels of its two convolutions (default 32 64)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--lr-d", type=float, default=None, help="the discriminator's learning rate (default --lr)")
    p.add_argument("--beta1", type=float, default=0.5)
    p.add_argument("--lr-decay", choices=("none", "cosine"), default="none",
                   help="cosine: both learning rates follow a cosine from lr to 0 over --epochs (default none)")
    p.add_argument("--ema", type=float, default=0.999, metavar="DECAY",
                   help="sample from a moving average of the generator's weights with this decay, in [0, 1) "
                        "(default 0.999; 0: from the trained generator)")
    p.add_argument("--ema-start", type=int, default=None, metavar="STEPS",
                   help="copy the generator for the first STEPS steps, then average with --ema's decay "
                        "(BigGAN's ema_start; default: average from the start, with a warm-up)")
    p.add_argument("--real-label", type=float, default=1.0,
                   help="the discriminator's target for real images, in (0.5, 1] (default 1; 0.9 is one-sided "
                        "label smoothing, Salimans et al. 2016)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--classifier", default=CLASSIFIER, help="saved classifier that scores the samples")
    p.add_argument("--samples", type=int, default=10000, help="samples scored per epoch (default 10000)")
    p.add_argument("--init", metavar="DIR", default=None,
                   help="start from generator.npz, generator_average.npz and discriminator.npz saved in DIR "
                        "by an earlier run (their widths; the optimizers start afresh)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/dcgan")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "samples"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0.5 < args.real_label <= 1:
        p.error(f"--real-label must be in (0.5, 1], got {args.real_label}")
    if args.ema_start is not None and args.ema_start < 0:
        p.error(f"--ema-start must be >= 0, got {args.ema_start}")
    if not 0 <= args.ema < 1:
        p.error(f"--ema must be in [0, 1), got {args.ema}")
    return args


class GAN:
    """The two networks, their optimizers and one alternating update.

    With ``G_average`` (a copy of ``G``) and ``ema`` > 0, every step also moves ``G_average`` towards
    ``G`` (:class:`xpnet.optim.WeightAverage`); :attr:`sampler` is the generator to draw samples from.
    The discriminator learns to give real images ``real_label`` (1, or a little less for one-sided label
    smoothing) and generated ones 0; the generator is trained towards 1. ``schedule`` (step -> factor of
    ``lr``, as in :mod:`xpnet.optim.schedules`) drives both optimizers; ``lr_D`` is the discriminator's
    own learning rate (default ``lr``).
    """

    def __init__(self, G, D, lr, beta1, G_average=None, ema=0.0, real_label=1.0, schedule=None, lr_D=None,
                 ema_start=None):
        self.G, self.D, self.bce = G, D, SigmoidBinaryCrossEntropy()
        self.opt_G, self.opt_D = (optim.Adam(lr=rate, beta1=beta1, schedule=schedule)
                                  for rate in (lr, lr if lr_D is None else lr_D))
        self.average = optim.WeightAverage(ema, ema_start) if G_average is not None and ema > 0 else None
        self.sampler = G_average if self.average is not None else G
        self.real_label = float(real_label)  # < 1: one-sided label smoothing (Salimans et al. 2016)

    def step(self, real, z):
        """One discriminator update (real vs. generated) then one generator update; returns both losses."""
        G, D, be = self.G, self.D, self.G.backend
        n = len(real)
        ones, zeros = be.xp.ones((n, 1), dtype=G.dtype), be.xp.zeros((n, 1), dtype=G.dtype)
        fake = G.net.forward(be.asarray(z), train=True)
        loss_real = D.loss(real, ones * self.real_label)
        D.backward()
        grads = {k: g.copy() for k, g in D.grads.items()}  # the next backward may reuse its buffers
        loss_fake = D.loss(fake, zeros)
        D.backward()
        self.opt_D.step(D.params, {k: g + D.grads[k] for k, g in grads.items()})
        # generator: make the (updated) discriminator call its images real; its own cache is still fake's
        loss_G = self.bce.forward(D.net.forward(fake, train=True), ones)
        G.net.backward_params(D.net.backward(self.bce.backward()))  # the noise's gradient: unused
        self.opt_G.step(G.params, G.grads)
        if self.average is not None:
            self.average.update(self.sampler, G)
        return float(loss_real + loss_fake), float(loss_G)


def sample(G, n, rng, batch_size=500):
    """``n`` generated images as a NumPy (n, 1, 28, 28) array in [-1, 1] (inference-mode BatchNorm)."""
    out = []
    for i in range(0, n, batch_size):
        y = G.predict(G.noise(min(batch_size, n - i), rng))
        out.append(G.backend.asnumpy(y))
    return np.concatenate(out)


def report(G, classifier, fixed_z, args, tag=None):
    """Score ``args.samples`` fresh samples; with ``tag``, also write the sample grid for ``fixed_z``."""
    if tag is not None:
        grid = G.backend.asnumpy(G.predict(fixed_z))
        imagegrid.save_grid((grid + 1) / 2, os.path.join(args.out, f"samples_{tag}.png"), cols=8, zoom=2)
    images = (sample(G, args.samples, np.random.default_rng(args.seed + 1)) + 1) / 2  # the classifier's [0, 1]
    return metrics.classifier_score(classifier.predict, images.astype(classifier.dtype))


def copy_of(G):
    """A second generator holding the same weights and running statistics (the average starts there)."""
    twin = Generator(**G.config, backend=G.backend)
    twin.load_state_dict(G.state_dict())
    return twin


def networks(args):
    """(trained generator, averaged generator, discriminator): fresh, or those of ``--init``."""
    if not args.init:
        G = Generator(widths=args.g_widths, seed=args.seed)
        return G, copy_of(G), Discriminator(widths=args.d_widths, seed=args.seed + 1)
    G, D = (xpnet.load(os.path.join(args.init, f"{name}.npz")) for name in ("generator", "discriminator"))
    saved = os.path.join(args.init, "generator_average.npz")
    return G, xpnet.load(saved) if os.path.exists(saved) else copy_of(G), D


def train_epoch(gan, x, rng, args, spent):
    """One pass over ``x`` (or until the budget, ``spent`` seconds of it on ``args.clock`` used before, runs out).

    Returns (losses per step, CPU seconds, wall seconds, whether the budget ran out)."""
    G, order, losses, done = gan.G, rng.permutation(len(x)), [], False
    clock = CLOCKS[args.clock]
    start, start_cpu, start_wall = clock(), time.process_time(), time.perf_counter()
    for i in range(0, len(x) - args.batch_size + 1, args.batch_size):
        losses.append(gan.step(x[order[i:i + args.batch_size]], G.noise(args.batch_size, rng)))
        if spent + clock() - start > args.minutes * 60:
            done = True
            break
    G.backend.synchronize()
    return losses, time.process_time() - start_cpu, time.perf_counter() - start_wall, done


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    classifier = xpnet.load(args.classifier)
    (x, _), _ = load_mnist(flatten=False)
    x = x[:args.limit] * 2 - 1  # tanh's range
    G, G_average, D = networks(args)
    schedule = optim.Cosine(args.epochs * (len(x) // args.batch_size)) if args.lr_decay == "cosine" else None
    gan = GAN(G, D, args.lr, args.beta1, G_average, args.ema, args.real_label, schedule, args.lr_d,
              args.ema_start)
    rng = np.random.default_rng(args.seed)
    fixed_z = G.noise(64, np.random.default_rng(args.seed + 2))
    source = f"the weight average (decay {args.ema:g})" if gan.average else "the trained generator"
    print(f"DCGAN on {backends.current().name}: generator {G.num_params():,} and discriminator "
          f"{D.num_params():,} parameters, {len(x)} images, batch {args.batch_size}, samples from {source}",
          flush=True)
    history, trained, trained_wall, wall = [], 0.0, 0.0, time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        losses, cpu, cpu_wall, done = train_epoch(gan, x, rng, args, trained_wall if args.clock == "wall" else trained)
        trained, trained_wall = trained + cpu, trained_wall + cpu_wall
        score = report(gan.sampler, classifier, fixed_z, args, f"epoch{epoch}")
        of_trained = report(G, classifier, fixed_z, args) if gan.average else score
        loss_D, loss_G = np.mean(losses, axis=0)
        history.append({"epoch": epoch, "steps": len(losses), "loss_D": loss_D, "loss_G": loss_G,
                        "train_cpu_seconds": trained, "train_wall_seconds": trained_wall, **score,
                        "trained_generator": of_trained})
        print(f"epoch {epoch}{' (budget reached)' if done else ''}: {len(losses)} steps, loss D {loss_D:.3f} "
              f"G {loss_G:.3f}; {score['confident']:.1%} of {args.samples} samples classified with confidence "
              f">= 0.9, class entropy {score['entropy']:.3f} nats (trained generator: "
              f"{of_trained['confident']:.1%}, {of_trained['entropy']:.3f}); training {trained:.0f} CPU s, "
              f"{trained_wall:.0f} s wall", flush=True)
        if done:
            break
    for model, name in ((G, "generator"), (gan.sampler, "generator_average"), (D, "discriminator")):
        model.save(os.path.join(args.out, f"{name}.npz"))
    result = {"args": vars(args), "backend": backends.current().name, "wall_seconds": time.perf_counter() - wall,
              "final": history[-1], "history": history}
    with atomic_write(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(result, f, indent=1, default=float)


if __name__ == "__main__":
    main()
