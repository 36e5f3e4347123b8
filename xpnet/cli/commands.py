"""The subcommands: train, eval, info."""

import contextlib
import math
import os
import shlex
import time

from xpnet import ensemble
from xpnet.cli.data import check_labels_fit, limit, load_dataset
from xpnet.errors import DataError, TrainingError, TrainingInterrupted
from xpnet.models import REGISTRY

MODELS = tuple(name for name in REGISTRY if name != "alexnet")  # AlexNet expects 3x227x227 images
EVAL_DTYPES = ("float64", "float32", "float16", "bfloat16")


def add_train(sub):
    p = sub.add_parser("train", help="train a model (defaults: the book's DeepConvNet, Adam 0.001, "
                                     "batch 100, 20 epochs)")
    p.add_argument("--model", default="deep_convnet", choices=MODELS)
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a constructor argument of the model, repeatable, VALUE in JSON: --model-arg width=0.25 "
                        "--model-arg 'blocks=[2,2,2]' (see help(xpnet.models.<Model>))")
    p.add_argument("--dataset", default="mnist", help="'mnist' or a directory of IDX files")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=100,
                   help="examples per step; with --distributed, per rank (global batch = this x ranks)")
    p.add_argument("--lr", type=float, default=0.001,
                   help="learning rate; with --distributed, the base that --scale-lr scales")
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--schedule", default="none", choices=("none", "step", "cosine"))
    p.add_argument("--warmup-epochs", type=float, default=0.0)
    p.add_argument("--augment", default="none", metavar="SPEC",
                   help="augment training batches on their device: 'default' (rotate=10,shift=2,scale=0.1) or "
                        "key=value,... with rotate (degrees), shift (pixels), scale, crop (padding), flip "
                        "(probability), brightness, contrast; default none")
    p.add_argument("--ensemble", type=int, default=1, metavar="K",
                   help="train K models with seeds seed..seed+K-1 in OUT/member<k>, then evaluate the average "
                        "of their softmax outputs (manifest OUT/ensemble.json)")
    p.add_argument("--backend", default=None, help="numpy (cpu), cuda (gpu) or auto; default $XPNET_BACKEND")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64", "float16", "mixed"),
                   help="mixed: float16 activations and GEMMs, float32 master weights, dynamic loss scaling")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output directory (default runs/<timestamp>)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="DIR",
                   help="continue from DIR/checkpoint.npz (default: --out)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI ranks: launch with 'mpiexec -n N xpnet train --distributed ...' "
                        "(needs xpnet[dist]); one GPU per rank; rank 0 logs, evaluates and saves")
    p.add_argument("--scale-lr", default="none", choices=("none", "linear", "sqrt"),
                   help="with --distributed: lr used = --lr x 1, x ranks, or x sqrt(ranks) (default none)")
    p.set_defaults(func=run_train)


def add_eval(sub):
    p = sub.add_parser("eval", help="test accuracy of a saved model or of the book's parameters")
    p.add_argument("model", nargs="?", help="a model file saved by xpnet (.npz) or an ensemble manifest "
                                            "(.json, or a directory holding ensemble.json)")
    p.add_argument("--book-params", metavar="FILE", help="the book's deep_convnet_params.pkl")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--backend", default=None)
    p.add_argument("--dtype", default=None, choices=EVAL_DTYPES,
                   help="compute in this dtype (default: the saved model's); bfloat16 says why it is unsupported")
    p.add_argument("--misclassified", metavar="FILE",
                   help="draw the misclassified test images with their true/predicted labels (.png, .pdf, .svg; "
                        "the book's Figure 8.2)")
    p.add_argument("--max-images", type=int, default=20, help="with --misclassified: how many to draw (default 20)")
    p.set_defaults(func=run_eval)


def add_info(sub):
    p = sub.add_parser("info", help="backend, device, versions and BLAS")
    p.add_argument("--backend", default=None)
    p.set_defaults(func=run_info)


def _backend(name):
    from xpnet import backends

    return backends.get(name) if name else backends.current()


def _check_positive(**values):
    for k, v in values.items():
        if v is not None and not v > 0:
            raise ValueError(f"--{k.replace('_', '-')} must be positive, got {v}")
        if v is not None and not math.isfinite(v):
            raise ValueError(f"--{k.replace('_', '-')} must be finite, got {v}")


def _resume_command(argv, out_dir):
    """The command line that continues this run: the same arguments plus ``--out DIR --resume``."""
    words = ["xpnet", *argv]
    if not any(w == "--out" or w.startswith("--out=") for w in argv):
        words += ["--out", out_dir]
    if not any(w == "--resume" or w.startswith("--resume=") for w in argv):
        words.append("--resume")
    return shlex.join(words)


def run_train(args):
    from xpnet.cli.build import check_model_args, make_augment, make_optimizer, model_args

    _check_positive(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, ensemble=args.ensemble)
    if not (args.warmup_epochs >= 0 and math.isfinite(args.warmup_epochs)):
        raise ValueError(f"--warmup-epochs must be a finite number >= 0, got {args.warmup_epochs}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    make_optimizer(args, steps_per_epoch=1)  # reject bad arguments before any data is fetched
    make_augment(args)
    check_model_args(args.model, model_args(args.model, args.model_arg))
    if args.ensemble > 1:
        from xpnet.cli.ensemble import train_ensemble

        return train_ensemble(args, train_one)
    train_one(args)
    return None


def train_one(args):
    """Train one model as ``args`` says; returns ``(model_path, history)`` (None on ranks other than 0).

    The run directory stays locked (:class:`xpnet.rundir.RunLock`) until this returns.
    """
    with contextlib.ExitStack() as hold:
        return _train_one(args, hold)


def _train_one(args, hold):
    from xpnet.cli.build import make_augment, open_run_dir, resolve_out_dir
    from xpnet.cli.resume import check_resume_args
    from xpnet.training import Trainer

    world = _start_world(args)
    be = _backend(args.backend)
    if world is None:  # checked now, created once the data and the model are ready (no empty directories)
        out_dir, resume_path = resolve_out_dir(args, create=False)
    else:  # every rank needs the output directory and the scaled lr before building
        out_dir, resume_path = _distributed_setup(args, world, be, resolve_out_dir)
    if resume_path:
        check_resume_args(resume_path, args)  # before any data is read
    train, test, classes = load_dataset(args.dataset, flatten=args.model == "mlp")
    train = limit(train, args.limit)
    model, optimizer = _build(args, train, classes, be, world)
    console = None
    if world is None or world.is_root:
        console = open_run_dir(hold, out_dir, resume_path, _resume_command(getattr(args, "argv", []), out_dir))
    config = {k: v for k, v in vars(args).items() if k not in ("func", "argv", "world")}
    config.update(backend=be.name, device=be.device, out=out_dir)
    trainer = Trainer(model, optimizer, train, test, epochs=args.epochs, batch_size=args.batch_size,
                      seed=args.seed, out_dir=out_dir, progress=not args.no_progress, config=config, world=world,
                      augment=make_augment(args), log=console.write if console else None)
    say = console.write if console else _quiet
    if resume_path:
        trainer.resume(resume_path)
        say(f"resumed from {resume_path} at epoch {trainer.epoch}")
    say(f"training {args.model} ({model.num_params():,} parameters) on {be.name} ({be.device}), "
          f"{len(train[0])} images, output in {out_dir}")
    start = time.perf_counter()
    try:
        history = trainer.fit()
    except TrainingInterrupted as e:
        e.resume_command = _resume_command(getattr(args, "argv", []), out_dir)
        raise
    if world is not None and not world.is_root:
        return None  # rank 0 alone writes the model and reports
    path = _save_model(args, model, optimizer, out_dir)
    wall = time.perf_counter() - start
    imgs = sum(h["images_per_s"] * h["seconds"] for h in history) / max(sum(h["seconds"] for h in history), 1e-9)
    say(f"wall time {wall:.1f} s, {imgs:.0f} train images/s; saved {path}")
    say(f"test accuracy: {history[-1]['test_acc']:.4f}")
    return path, history


def _build(args, train, classes, be, world):
    """The model (sized from the data) and its optimizer; ``--dtype mixed`` wraps it for float16 compute."""
    from xpnet import models
    from xpnet.cli.build import make_optimizer, model_args
    from xpnet.training import MixedPrecision

    input_dim = train[0].shape[1:]
    kwargs = {"input_size": int(input_dim[0])} if args.model == "mlp" else {"input_dim": list(input_dim)}
    mixed = args.dtype == "mixed"
    kwargs.update(model_args(args.model, args.model_arg))
    model = models.build(args.model, output_size=classes, seed=args.seed, dtype="float32" if mixed else args.dtype,
                         backend=be, **kwargs)
    steps_per_epoch = -(-len(train[0]) // (args.batch_size * (world.size if world else 1)))
    optimizer = make_optimizer(args, steps_per_epoch)
    return model, (MixedPrecision(optimizer).attach(model) if mixed else optimizer)


def _save_model(args, model, optimizer, out_dir):
    """Write ``out_dir/model.npz`` (float32 master weights under mixed precision); returns its path."""
    path = os.path.join(out_dir, "model.npz")
    if args.dtype == "mixed":
        optimizer.copy_masters_to(model)
    try:
        model.save(path)
    except OSError as e:
        raise TrainingError(f"could not write {path}: {e.strerror or e}; the last epoch's checkpoint is intact; "
                            f"to write the model file, run: {_resume_command(getattr(args, 'argv', []), out_dir)}"
                            ) from e
    return path


def _quiet(*args, **kwargs):
    """``print`` for ranks other than 0."""


def _start_world(args):
    """The MPI world for ``--distributed`` (kept on ``args`` so an error on any rank aborts them all)."""
    if not getattr(args, "distributed", False):
        if getattr(args, "scale_lr", "none") != "none":
            raise ValueError("--scale-lr needs --distributed")
        return None
    from xpnet import backends, distributed

    args.world = world = distributed.init()
    if backends.resolve_name(args.backend or os.environ.get("XPNET_BACKEND") or "numpy") != "numpy":
        world.use_local_gpu()  # before the CUDA backend starts on the default device
    return world


def _distributed_setup(args, world, be, resolve_out_dir):
    """Rank 0 resolves the output directory for all; pick the allreduce path; scale the learning rate.

    Returns rank 0's ``(out_dir, resume_path)``.
    """
    from xpnet.distributed import scale_lr

    out_dir, resume_path = world.bcast_object(resolve_out_dir(args) if world.is_root else None)
    engine = world.bind(be)
    base, args.lr = args.lr, scale_lr(args.lr, world.size, args.scale_lr)
    if world.is_root:
        print(f"distributed: {world.size} ranks x batch {args.batch_size} = global batch "
              f"{world.size * args.batch_size}; lr {args.lr:g} (--lr {base:g}, --scale-lr {args.scale_lr}); "
              f"gradients averaged by {engine.describe()}")
    return out_dir, resume_path


def run_eval(args):
    import xpnet

    _check_positive(batch_size=args.batch_size, max_images=args.max_images)
    be = _backend(args.backend)
    if bool(args.model) == bool(args.book_params):
        raise ValueError("give either a MODEL file or --book-params FILE")
    if args.book_params:
        from xpnet.book import load_book_params

        model = load_book_params(args.book_params, backend=be)
    elif ensemble.is_manifest(args.model):
        return _eval_ensemble(args, be)
    else:
        model = xpnet.load(args.model, backend=be)
    flatten = model.arch == "mlp"
    _, (x, t), _ = load_dataset(args.dataset, flatten=flatten)
    if tuple(x.shape[1:]) != tuple(model.config.get("input_dim", x.shape[1:])):
        raise DataError(f"the model expects inputs {tuple(model.config['input_dim'])}, the dataset has "
                        f"{tuple(x.shape[1:])}")
    check_labels_fit(f"{args.dataset}: test", t, int(model.config.get("output_size", 10)),
                     "the model's classes")
    if args.dtype:
        model.astype(args.dtype)
    be.synchronize()
    start = time.perf_counter()
    acc = model.accuracy(x, t, batch_size=args.batch_size)  # reads the count back: the device is done
    seconds = time.perf_counter() - start
    print(f"{model.dtype} on {be.name}: {len(x)} images in {seconds:.2f} s ({len(x) / seconds:.0f} images/s)")
    print(f"test accuracy: {acc:.4f}")
    if args.misclassified:
        from xpnet.viz import misclassified, plot_misclassified

        idx, pred = misclassified(model, x, t, batch_size=args.batch_size)
        drawn, total = plot_misclassified(x[idx], t[idx], pred, args.misclassified, max_images=args.max_images)
        print(f"drew {drawn} of {total} misclassified images in {args.misclassified}")


def _eval_ensemble(args, be):
    from xpnet.cli.ensemble import report

    if args.dtype or args.misclassified:
        raise ValueError("--dtype and --misclassified apply to one model; evaluate the members one by one")
    members = ensemble.load(args.model, backend=be)
    _, (x, t), _ = load_dataset(args.dataset, flatten=members.models[0].arch == "mlp")
    check_labels_fit(f"{args.dataset}: test", t, int(members.models[0].config.get("output_size", 10)),
                     f"the ensemble {args.model}'s classes")
    report(members, x, t, args.batch_size)


def run_info(args):
    import platform
    import sys

    import xpnet
    from xpnet import backends

    be = _backend(args.backend)
    print(f"xpnet {xpnet.__version__}, Python {sys.version.split()[0]} on {platform.platform()}")
    print(f"backends available: {', '.join(backends.available())}")
    for k, v in be.info().items():
        print(f"{k}: {v}")
