"""``xpnet export MODEL.npz OUT.onnx`` and ``xpnet eval MODEL.onnx [--compare MODEL.npz]`` (onnxruntime)."""

import time

from xpnet.cli.config import plain
from xpnet.cli.data import load_dataset
from xpnet.errors import DataError


def add_export(sub):
    p = sub.add_parser("export", help='write a saved model as ONNX (opset 17; needs pip install "xpnet[onnx]")')
    p.add_argument("model", help="a model file saved by xpnet (.npz)")
    p.add_argument("out", help="the .onnx file to write (replaced only if xpnet wrote it)")
    p.add_argument("--batch", type=int, default=None, help="a fixed batch size (default: a dynamic batch axis)")
    p.set_defaults(func=run_export, configure=plain)


def add_eval_args(p):
    """The options ``xpnet eval`` has for an ``.onnx`` MODEL."""
    p.add_argument("--compare", metavar="MODEL.npz",
                   help="with an .onnx MODEL: run this xpnet model on the same images too and report how many "
                        "top classes agree and the largest |logit difference|")


def is_onnx(path):
    return str(path).lower().endswith(".onnx")


def run_export(args, world=None):
    import xpnet
    from xpnet.onnx import OPSET

    if args.batch is not None and args.batch < 1:
        raise ValueError(f"--batch must be positive, got {args.batch}")
    model = xpnet.load(args.model, backend="numpy")
    proto = model.to_onnx(args.out, batch=args.batch)
    batch = "dynamic batch" if args.batch is None else f"batch {args.batch}"
    print(f"wrote {args.out}: {model.arch}, {len(proto.graph.node)} nodes, opset {OPSET}, {batch}, {model.dtype}")


def run_eval_onnx(args):
    """``xpnet eval MODEL.onnx``: test accuracy through onnxruntime; ``--compare`` checks it against xpnet."""
    from xpnet.onnx import OnnxModel

    for flag, value in (("--book-params", args.book_params), ("--dtype", args.dtype),
                        ("--misclassified", args.misclassified)):
        if value:
            raise ValueError(f"{flag} does not apply to an .onnx model")
    onnx_model = OnnxModel(args.model)
    _, (x, t), _ = load_dataset(args.dataset, flatten=len(onnx_model.input_shape) == 2)
    if len(onnx_model.input_shape) > 2 and tuple(x.shape[1:]) != onnx_model.input_shape[1:]:
        raise DataError(f"the model expects inputs {onnx_model.input_shape[1:]}, the dataset has {tuple(x.shape[1:])}")
    start = time.perf_counter()
    acc = onnx_model.accuracy(x, t, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    print(f"onnxruntime {_ort_version()} (CPU): {len(x)} images in {seconds:.2f} s ({len(x) / seconds:.0f} images/s)")
    print(f"test accuracy: {acc:.4f}")
    if args.compare:
        _compare(args, onnx_model, x, t)


def _compare(args, onnx_model, x, t):
    import xpnet
    from xpnet import backends
    from xpnet.onnx import compare
    from xpnet.serialization import content_sha256

    be = backends.get(args.backend) if args.backend else backends.current()
    model = xpnet.load(args.compare, backend=be)
    if onnx_model.meta.get("xpnet.sha256") not in (None, content_sha256(model)):
        print(f"note: {args.compare} holds other weights than the ones {args.model} was exported from")
    stats = compare(onnx_model, model, x, t, batch_size=args.batch_size)
    print(f"xpnet on {be.name}: test accuracy {stats['accuracy_xpnet']:.4f}")
    print(f"argmax agreement: {stats['argmax_agree']}/{stats['n']}; max |logit difference| "
          f"{stats['max_abs_diff']:.3g} (largest |logit| {stats['max_abs_score']:.3g})")


def _ort_version():
    from xpnet.onnx.deps import require

    return require("onnxruntime").__version__
