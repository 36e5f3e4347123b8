"""The typed configuration of one ``xpnet train`` run, built and validated once from the parsed arguments."""

import dataclasses
import math
import shlex
from types import MappingProxyType

import numpy as np

from xpnet import optim

NOT_RECORDED = ("func", "configure")  # the parser's hooks; every other argument is recorded in metrics.json


def check_positive(**values):
    """Raise ValueError naming the option (``--batch-size``) unless each value is None or positive and finite."""
    for k, v in values.items():
        if v is not None and not v > 0:
            raise ValueError(f"--{k.replace('_', '-')} must be positive, got {v}")
        if v is not None and not math.isfinite(v):
            raise ValueError(f"--{k.replace('_', '-')} must be finite, got {v}")


def plain(args, argv):
    """The ``configure`` step of a command that reads its parsed arguments as they are: ``(args, None)``."""
    return args, None


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs from its command line, checked; derived runs use :meth:`member`.

    Attributes mirror ``xpnet train``'s options (``--batch-size`` is ``batch_size``), plus:
        model_kwargs: the ``--model-arg`` items as the model's constructor arguments.
        transforms: the ``--augment`` transforms (empty for 'none'); each run seeds its own pipeline.
        argv: the command line's words after ``xpnet`` (to name the command that resumes the run).
        options: every parsed argument as given, for the run's record (:meth:`record`).
    """

    model: str
    model_kwargs: MappingProxyType
    dataset: str
    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    weight_decay: float
    schedule: str
    warmup_epochs: float
    augment: str
    transforms: tuple
    ensemble: int
    backend: str
    dtype: str
    seed: int
    out: str
    resume: object  # None, True (the --out directory) or a directory
    limit: int
    progress: bool
    distributed: bool
    scale_lr: str
    grad_path: str
    argv: tuple
    options: MappingProxyType

    @classmethod
    def from_args(cls, args, argv=()):
        """Check the arguments of ``xpnet train`` (before any data is read) and return the configuration."""
        from xpnet.augment import parse_transforms
        from xpnet.cli.build import check_model_args, model_args

        check_positive(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, ensemble=args.ensemble)
        if not (args.warmup_epochs >= 0 and math.isfinite(args.warmup_epochs)):
            raise ValueError(f"--warmup-epochs must be a finite number >= 0, got {args.warmup_epochs}")
        if args.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {args.seed}")
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        optim.find(args.optimizer)
        optim.check_common(lr=args.lr, weight_decay=args.weight_decay)
        if args.augment.strip().lower() not in ("", "none") and args.model == "mlp":
            raise ValueError("--augment needs image input; the mlp model trains on flattened images")
        transforms = parse_transforms(args.augment)
        kwargs = model_args(args.model, args.model_arg)
        check_model_args(args.model, kwargs)
        if args.ensemble > 1 and args.distributed:
            raise ValueError("--ensemble cannot be combined with --distributed; train the members one by one")
        if not args.distributed and args.scale_lr != "none":
            raise ValueError("--scale-lr needs --distributed")
        if not args.distributed and args.grad_path != "auto":
            raise ValueError("--grad-path needs --distributed")
        options = {k: v for k, v in vars(args).items() if k not in NOT_RECORDED}
        return cls(model=args.model, model_kwargs=MappingProxyType(kwargs), dataset=args.dataset, epochs=args.epochs,
                   batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer, weight_decay=args.weight_decay,
                   schedule=args.schedule, warmup_epochs=args.warmup_epochs, augment=args.augment,
                   transforms=tuple(transforms), ensemble=args.ensemble, backend=args.backend, dtype=args.dtype,
                   seed=args.seed, out=args.out, resume=args.resume, limit=args.limit, progress=not args.no_progress,
                   distributed=args.distributed, scale_lr=args.scale_lr, grad_path=args.grad_path,
                   argv=tuple(argv),
                   options=MappingProxyType(options))

    def member(self, **changes):
        """A copy with ``changes`` (an ensemble member: its seed, output directory, resume flag)."""
        return dataclasses.replace(self, **changes)

    def record(self, **updates):
        """The arguments as recorded in metrics.json and checkpoints: as parsed, with this run's values."""
        out = {k: getattr(self, k, v) for k, v in self.options.items()}
        out["no_progress"] = not self.progress
        out.update(updates)
        return out

    def make_optimizer(self, steps_per_epoch, lr=None):
        """The optimizer and its schedule for ``steps_per_epoch`` updates per epoch (``lr``: instead of --lr)."""
        total = self.epochs * steps_per_epoch
        warm = int(round(self.warmup_epochs * steps_per_epoch))
        schedule = None
        if self.schedule == "step":
            schedule = optim.StepDecay(max(1, total // 3), 0.1)
        elif self.schedule == "cosine":
            schedule = optim.Cosine(max(1, total - warm))
        if warm:
            schedule = optim.Warmup(warm, schedule)
        return optim.get(self.optimizer, lr=self.lr if lr is None else lr, weight_decay=self.weight_decay,
                         schedule=schedule)

    def make_augment(self):
        """The ``--augment`` pipeline (None for 'none'), seeded from ``--seed`` apart from the shuffle's stream."""
        from xpnet.augment import Augment

        if not self.transforms:
            return None
        seed = int(np.random.SeedSequence([self.seed, 0xA06]).generate_state(1)[0])
        return Augment(*self.transforms, seed=seed)

    def resume_command(self, out_dir):
        """The command line that continues this run: the same arguments plus ``--out DIR --resume``."""
        words = ["xpnet", *self.argv]
        if not any(w == "--out" or w.startswith("--out=") for w in self.argv):
            words += ["--out", out_dir]
        if not any(w == "--resume" or w.startswith("--resume=") for w in self.argv):
            words.append("--resume")
        return shlex.join(words)
