"""``xpnet train``: one run (or an ensemble's members) from a :class:`~xpnet.cli.config.TrainConfig`."""

import contextlib
import os
import time
from types import SimpleNamespace

from xpnet.cli.build import open_run_dir, resolve_out_dir
from xpnet.cli.config import TrainConfig
from xpnet.cli.data import limit, load_dataset
from xpnet.cli.resume import check_resume_args
from xpnet.errors import TrainingError, TrainingInterrupted


def configure(args, argv):
    """The checked configuration, and the MPI world for ``--distributed`` (None otherwise)."""
    config = TrainConfig.from_args(args, argv)
    if not config.distributed:
        return config, None
    from xpnet import distributed

    return config, distributed.init()


def run_train(config, world=None):
    if config.ensemble > 1:
        from xpnet.cli.ensemble import train_ensemble

        return train_ensemble(config, train_one)
    train_one(config, world)
    return None


def train_one(config, world=None):
    """Train one model as ``config`` says; returns ``(model_path, history)`` (None on ranks other than 0).

    The run directory stays locked (:class:`xpnet.rundir.RunLock`) until this returns.
    """
    with contextlib.ExitStack() as hold:
        return _train_one(config, world, hold)


def _train_one(config, world, hold):
    from xpnet.training import Trainer

    be = _local_backend(config, world)
    out_dir, resume_path, lr = _place(config, world, be)
    if resume_path:  # before any data is read
        check_resume_args(resume_path, SimpleNamespace(**config.record(lr=lr)))
    train, test, classes = load_dataset(config.dataset, flatten=config.model == "mlp")
    train = limit(train, config.limit)
    model, precision = _model(config, train, classes, be)
    optimizer = _optimizer(config, len(train[0]), world, lr)
    console = None
    if world is None or world.is_root:
        console = open_run_dir(hold, out_dir, resume_path, config.resume_command(out_dir))
    record = config.record(lr=lr, backend=be.name, device=be.device, out=out_dir)
    trainer = Trainer(model, optimizer, train, test, epochs=config.epochs, batch_size=config.batch_size,
                      seed=config.seed, out_dir=out_dir, progress=config.progress, config=record,
                      distribution=_distribution(world, model), augment=config.make_augment(), precision=precision,
                      log=console.write if console else None)
    say = console.write if console else _quiet
    if resume_path:
        trainer.resume(resume_path)
        say(f"resumed from {resume_path} at epoch {trainer.epoch}")
    say(f"training {config.model} ({model.num_params():,} parameters) on {be.name} ({be.device}), "
        f"{len(train[0])} images, output in {out_dir}")
    start = time.perf_counter()
    try:
        history = trainer.fit()
    except TrainingInterrupted as e:
        raise TrainingInterrupted(e.epoch, e.step, e.checkpoint, config.resume_command(out_dir), e.signum) from None
    if world is not None and not world.is_root:
        return None  # rank 0 alone writes the model and reports
    path = _save_model(config, model, precision, out_dir)
    wall = time.perf_counter() - start
    imgs = sum(h["images_per_s"] * h["seconds"] for h in history) / max(sum(h["seconds"] for h in history), 1e-9)
    say(f"wall time {wall:.1f} s, {imgs:.0f} train images/s; saved {path}")
    say(f"test accuracy: {history[-1]['test_acc']:.4f}")
    return path, history


def _local_backend(config, world):
    """The backend; on a distributed GPU run, this rank's GPU is made current first."""
    from xpnet import backends

    if world is not None and backends.may_use_gpu(config.backend or os.environ.get("XPNET_BACKEND") or "numpy"):
        world.use_local_gpu()  # before the CUDA backend starts on the default device
    return backends.get(config.backend) if config.backend else backends.current()


def _place(config, world, be):
    """``(out_dir, resume_path, lr)``: where the run writes and what it resumes, and the learning rate used.

    Alone, the output directory is checked now and created once the data and the model are ready (no empty
    directories). Distributed, rank 0 resolves it for every rank, the allreduce path is chosen and the
    learning rate scaled by the number of ranks.
    """
    if world is None:
        return (*resolve_out_dir(config, create=False), config.lr)
    from xpnet.distributed import scale_lr

    out_dir, resume_path = world.bcast_object(resolve_out_dir(config) if world.is_root else None)
    engine = world.bind(be, path=config.grad_path)
    lr = scale_lr(config.lr, world.size, config.scale_lr)
    if world.is_root:
        print(f"distributed: {world.size} ranks x batch {config.batch_size} = global batch "
              f"{world.size * config.batch_size}; lr {lr:g} (--lr {config.lr:g}, --scale-lr {config.scale_lr}); "
              f"gradients averaged by {engine.describe()}")
    return out_dir, resume_path, lr


def _model(config, train, classes, be):
    """The model, sized from the data, and its precision policy.

    Under ``--dtype mixed`` the model is built in float32, float32 copies of its parameters become the
    policy's master weights, and the model is cast to float16.
    """
    from xpnet import models
    from xpnet.training import FullPrecision, MixedPrecision

    input_dim = train[0].shape[1:]
    kwargs = {"input_size": int(input_dim[0])} if config.model == "mlp" else {"input_dim": list(input_dim)}
    kwargs.update(config.model_kwargs)
    dtype = "float32" if config.dtype == "mixed" else config.dtype
    try:
        model = models.build(config.model, output_size=classes, seed=config.seed, dtype=dtype, backend=be, **kwargs)
    except MemoryError as e:  # the model itself, not a batch, does not fit: --batch-size is no remedy
        given = ", ".join(config.options.get("model_arg") or []) or "the defaults"
        raise TrainingError(f"out of memory building the {config.model} model ({e}); its arguments ({given}) ask "
                            "for more memory than there is; choose smaller --model-arg values") from None
    if config.dtype != "mixed":
        return model, FullPrecision()
    precision = MixedPrecision(model.params)
    return model.astype("float16"), precision


def _optimizer(config, examples, world, lr):
    """The optimizer, its schedule's steps per epoch counted over the global batch."""
    steps_per_epoch = -(-examples // (config.batch_size * (world.size if world else 1)))
    return config.make_optimizer(steps_per_epoch, lr)


def _distribution(world, model):
    """How the Trainer shares the work: over the ranks of ``world`` for ``--distributed``, else alone."""
    if world is None:
        return None
    from xpnet.distributed import DataParallel

    return DataParallel(world, model)


def _save_model(config, model, precision, out_dir):
    """Write ``out_dir/model.npz`` (float32 master weights under mixed precision); returns its path."""
    path = os.path.join(out_dir, "model.npz")
    if config.dtype == "mixed":
        model.astype("float32").load_state_dict({**model.state_dict(), **precision.master_weights()})
    try:
        model.save(path)
    except OSError as e:
        raise TrainingError(f"could not write {path}: {e.strerror or e}; the last epoch's checkpoint is intact; "
                            f"to write the model file, run: {config.resume_command(out_dir)}") from e
    return path


def _quiet(*args, **kwargs):
    """``print`` for ranks other than 0."""
