"""Command line: ``python -m benchmarks SUITE [options]``; :func:`main` is also callable in-process."""

import argparse
import sys
import time

from benchmarks import breakdown, conv, infer, launches, machine, precision, train
from benchmarks.report import write_json
from benchmarks.settings import Settings
from xpnet import backends

SUITES = {"breakdown": breakdown, "train": train, "infer": infer, "conv": conv, "precision": precision,
          "launches": launches}

EPILOG = """suites:
  breakdown  AlexNet forward (and DeepConvNet forward/backward) time per layer and per layer type,
             as tables and CPU|GPU pie charts like the book's Figure 8.14
  train      DeepConvNet training-step throughput (images/s) per backend and batch size;
             --compare torch times PyTorch's identical network in the same run
  infer      DeepConvNet inference throughput (eval-mode forward) at batch 100 and 1000 by default;
             --compare torch times PyTorch in the same run
  conv       every conv layer of DeepConvNet and AlexNet: GFLOP/s against the measured GEMM peak,
             and the split between im2col/col2im, GEMM and the rest
  precision  DeepConvNet inference speed and accuracy per dtype (float64, float32, float16; bfloat16
             listed as unsupported) per backend; XPNET_PRECISION_MODEL=model.npz gives MNIST accuracy
  launches   kernel launches, device allocations and host syncs per DeepConvNet training step on the
             CUDA backend, by phase (counted on the emulated device: the same on every machine)
  all        every suite

device-check (python -m benchmarks device-check --out DIR): on a GPU machine, the whole test suite on
  CUDA, every suite with --backend cuda --compare torch, a 2-epoch training and a profile of one step, in
  under 8 minutes (see benchmarks/device_check.py); without a GPU, one line and exit 0

examples:
  python -m benchmarks all --quick
  python -m benchmarks breakdown --json benchmarks/results/breakdown_cpu.json --plots benchmarks/results
  python -m benchmarks train --compare torch --batch-sizes 32,100,256
"""


def _batch_sizes(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive integers, got {text!r}")
    return values


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks", description="xpnet's benchmark suites.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", choices=[*SUITES, "all"])
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes and 2 repeats: checks that the suites run (seconds); numbers mean nothing")
    p.add_argument("--backend", default="all", choices=["numpy", "cuda", "all"],
                   help="backends to measure (default: all available here)")
    p.add_argument("--json", metavar="PATH", help="write every result and the machine description here")
    p.add_argument("--plots", metavar="DIR", help="write PNG figures into this folder")
    p.add_argument("--batch-sizes", type=_batch_sizes, metavar="N,N,...",
                   help="train: every size (default 32,100,256); breakdown/conv: the first one "
                        "(default 32 for AlexNet, 100 for DeepConvNet)")
    p.add_argument("--repeats", type=_positive, help="timed repeats (default 10 for breakdown/conv, 20 for train)")
    p.add_argument("--warmup", type=int, help="untimed runs first (default 2, train 3; 1 with --quick)")
    p.add_argument("--compare", choices=["torch"], help="train, infer: also time PyTorch (CPU or CUDA) in the same run")
    return p


def _backends(choice):
    """``(names to measure, {name: why unusable here})``; raises BackendError for an explicit cuda.

    CUDA is probed whatever the choice, so figures can say "not available on this machine" rather
    than "not selected" when a CPU-only run leaves their GPU half empty.
    """
    if choice == "cuda":
        backends.get("cuda")  # raises BackendError with the reason
        return ["cuda"], {}
    try:
        backends.get("cuda")
        missing = {}
    except Exception as e:  # no CuPy, no device, broken driver: all say why
        missing = {"cuda": str(e)}
    if choice == "numpy":
        return ["numpy"], missing
    return ["numpy"] + ([] if missing else ["cuda"]), missing


def main(argv=None):
    """Run the suites; returns the exit status (0 ok, 2 usage or missing dependency)."""
    args = parser().parse_args(argv)
    if args.warmup is not None and args.warmup < 0:
        parser().error("--warmup must be >= 0")
    suites = list(SUITES) if args.suite == "all" else [args.suite]
    if args.compare == "torch" and ("train" in suites or "infer" in suites):
        missing = train.torch_missing()
        if missing:
            print(missing, file=sys.stderr)
            return 2
    try:
        names, unavailable = _backends(args.backend)
    except Exception as e:
        print(f"--backend {args.backend}: {e}", file=sys.stderr)
        return 2
    settings = Settings(backends=names, unavailable=unavailable, quick=args.quick, repeats=args.repeats,
                        warmup=args.warmup, batch_sizes=args.batch_sizes, compare=args.compare,
                        json_path=args.json, plots_dir=args.plots)
    return run(suites, settings)


def run(suites, settings):
    """Run ``suites`` (names) under ``settings``, print their tables, write JSON and plots; returns 0."""
    desc = machine.describe(settings.backends)
    print("\n".join(machine.header_lines(desc)))
    for name, reason in settings.unavailable.items():
        print(f"{name}: not available ({reason})")
    if settings.quick:
        print("--quick: tiny sizes and repeats; the numbers only show that the benchmarks run")
    document = {"benchmark": "xpnet", "suites": suites, "quick": settings.quick, "settings": settings.as_dict(),
                "machine": desc, "results": {}}
    for name in suites:
        module, start = SUITES[name], time.perf_counter()
        result = module.run(settings)
        print(f"\n=== {name} ===\n{machine.summary_line(desc)}\n{module.render(result, settings.unavailable)}",
              flush=True)
        if settings.plots_dir:
            result["plots"] = module.plot(result, settings)
            print("plots: " + ", ".join(result["plots"]))
        result["seconds"] = round(time.perf_counter() - start, 3)
        document["results"][name] = result
    if settings.json_path:
        print(f"\nresults: {write_json(settings.json_path, document)}")
    return 0
