"""The subcommands' arguments (train, eval, info) and eval and info themselves."""

import time

from xpnet import ensemble
from xpnet.cli import export
from xpnet.cli.config import check_positive, plain
from xpnet.cli.data import check_labels_fit, load_dataset
from xpnet.cli.train import configure, run_train
from xpnet.errors import DataError
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
    p.add_argument("--grad-path", default="auto", choices=("auto", "nccl", "staged"),
                   help="with --distributed on GPUs: NCCL, or MPI staged through host memory; auto: NCCL unless "
                        "a rank lacks it or two ranks share a GPU (the first line printed says which and why)")
    p.set_defaults(func=run_train, configure=configure)


def add_eval(sub):
    p = sub.add_parser("eval", help="test accuracy of a saved model or of the book's parameters")
    p.add_argument("model", nargs="?", help="a model file saved by xpnet (.npz), an exported .onnx file (run by "
                                            "onnxruntime) or an ensemble manifest (.json, or a directory holding "
                                            "ensemble.json)")
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
    export.add_eval_args(p)
    p.set_defaults(func=run_eval, configure=plain)


def add_info(sub):
    p = sub.add_parser("info", help="backend, device, versions and BLAS")
    p.add_argument("--backend", default=None)
    p.set_defaults(func=run_info, configure=plain)


def _backend(name):
    from xpnet import backends

    return backends.get(name) if name else backends.current()


def run_eval(args, world=None):
    import xpnet

    check_positive(batch_size=args.batch_size, max_images=args.max_images)
    be = _backend(args.backend)
    if bool(args.model) == bool(args.book_params):
        raise ValueError("give either a MODEL file or --book-params FILE")
    if export.is_onnx(args.model or ""):
        return export.run_eval_onnx(args)
    if args.compare:
        raise ValueError("--compare applies to an .onnx MODEL")
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


def run_info(args, world=None):
    import platform
    import sys

    import xpnet
    from xpnet import backends

    be = _backend(args.backend)
    print(f"xpnet {xpnet.__version__}, Python {sys.version.split()[0]} on {platform.platform()}")
    print(f"backends available: {', '.join(backends.available())}")
    reason = backends.unavailable_reason("cuda")
    if reason:
        print(f"cuda: not usable: {reason}")
    for k, v in be.info().items():
        print(f"{k}: {v}")
