"""``xpnet train --ensemble K`` and ``xpnet ensemble MODEL...``: train and evaluate averaged models."""

import os
import time

from xpnet.cli.config import check_positive, plain
from xpnet.cli.data import check_labels_fit, load_dataset
from xpnet.console import say


def add_ensemble(sub):
    p = sub.add_parser("ensemble", help="evaluate the average of several saved models' softmax outputs")
    p.add_argument("models", nargs="+", help="model files (.npz) or ensemble manifests (.json or a directory)")
    p.add_argument("--save", metavar="FILE", help="write an ensemble manifest (.json) naming these model files")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--backend", default=None)
    p.set_defaults(func=run_ensemble, configure=plain)


def train_ensemble(config, train_one):
    """Train members ``OUT/member<k>`` with seeds ``seed + k`` (resuming or skipping finished ones), then
    save ``OUT/ensemble.json`` and print each member's and the ensemble's test accuracy.

    Args:
        config: the run's :class:`~xpnet.cli.config.TrainConfig`. train_one: trains one member's config.
    """
    from xpnet.cli.build import resolve_out_dir
    from xpnet.ensemble import Ensemble

    if config.resume is not None:
        out = config.out if config.resume is True else config.resume
        if not out or not os.path.isdir(out):
            raise FileNotFoundError(2, "no ensemble run to resume", out or "(none given)")
    else:
        out, _ = resolve_out_dir(config.member(resume=None))
    argv = list(config.argv)
    if "--out" not in argv and not any(w.startswith("--out=") for w in argv):
        argv += ["--out", out]  # so an interrupted member names the command that resumes the whole ensemble
    paths, start = [], time.perf_counter()
    for k in range(config.ensemble):
        member = os.path.join(out, f"member{k}")
        path = os.path.join(member, "model.npz")
        paths.append(path)
        if config.resume is not None and os.path.exists(path):
            say(f"member {k + 1}/{config.ensemble}: already trained ({path})")
            continue
        resume = True if config.resume is not None and os.path.exists(os.path.join(member, "checkpoint.npz")) else None
        say(f"member {k + 1}/{config.ensemble}: seed {config.seed + k}")
        train_one(config.member(seed=config.seed + k, out=member, resume=resume, ensemble=1, argv=tuple(argv)))
    ensemble = Ensemble.from_files(paths, backend=config.backend)
    ensemble.save(os.path.join(out, "ensemble.json"))
    _, (x, t), _ = load_dataset(config.dataset, flatten=config.model == "mlp")
    report(ensemble, x, t, 1000)
    say(f"ensemble wall time {time.perf_counter() - start:.1f} s; manifest {os.path.join(out, 'ensemble.json')}")


def run_ensemble(args, world=None):
    from xpnet import ensemble as ens

    check_positive(batch_size=args.batch_size)
    models, paths = [], []
    for p in args.models:
        group = ens.load(p, backend=args.backend) if ens.is_manifest(p) else ens.Ensemble.from_files([p], args.backend)
        models += group.models
        paths += group.paths
    ensemble = ens.Ensemble(models, paths)
    _, (x, t), _ = load_dataset(args.dataset, flatten=models[0].arch == "mlp")
    check_labels_fit(f"{args.dataset}: test", t, int(models[0].config.get("output_size", 10)), "the models' classes")
    report(ensemble, x, t, args.batch_size)
    if args.save:
        ensemble.save(args.save)
        say(f"saved {args.save}")


def report(ensemble, x, t, batch_size):
    """Print every member's test accuracy, then the ensemble's."""
    width = max(len(os.path.relpath(p)) for p in ensemble.paths)
    for path, model, acc in zip(ensemble.paths, ensemble.models, ensemble.member_accuracies(x, t, batch_size)):
        say(f"  {os.path.relpath(path):<{width}}  {model.arch:<15} test accuracy {acc:.4f}")
    start = time.perf_counter()
    acc = ensemble.accuracy(x, t, batch_size)
    say(f"ensemble of {len(ensemble)} ({time.perf_counter() - start:.1f} s)")
    say(f"test accuracy: {acc:.4f}")
