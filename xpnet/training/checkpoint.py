"""Training checkpoints: model, optimizer and precision state, RNG states, epoch and history in one atomic .npz."""

import contextlib
import json

import numpy as np

from xpnet.errors import FileFormatError
from xpnet.metacheck import check_checkpoint_meta, check_weights
from xpnet.models import REGISTRY
from xpnet.serialization import FORMAT_VERSION, model_meta, read_npz, write_npz
from xpnet.training.parts import FullPrecision

FORMAT = "xpnet-checkpoint"


def save_checkpoint(path, model, optimizer, iterator, epoch, history, extra=None, augment=None, precision=None):
    """Write everything needed to continue training after ``epoch`` to ``path``, atomically.

    ``precision``: the Trainer's precision policy (None: :class:`~xpnet.training.parts.FullPrecision`).
    """
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for pname, st in opt.pop("state").items():
        for k, v in st.items():
            arrays[f"optim/{pname}/{k}"] = v
    prec = (precision or FullPrecision()).state_dict()
    for name, v in prec.pop("arrays", {}).items():
        arrays[f"precision/{name}"] = v
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model_meta(model),
        "optimizer": opt,
        "precision": prec,
        "epoch": int(epoch),
        "history": history,
        "rng": {"model": model.get_rng_state(), "iterator": iterator.get_state(),
                "augment": augment.get_state() if augment is not None else None,
                "backend": model.backend.name, "device": model.backend.device},
        "extra": extra or {},
        "frozen": sorted(model.frozen),
    }
    json.dumps(meta)  # fail here, before writing, if anything is not serialisable
    write_npz(path, arrays, meta)


def load_checkpoint(path):
    """Return ``(model_state, optimizer_state_dict, meta)`` from a checkpoint file.

    ``meta["precision"]`` is the precision policy's state dict, its arrays included.
    """
    arrays, meta = read_npz(path, FORMAT)
    check_checkpoint_meta(path, meta, REGISTRY)
    check_weights(path, arrays)  # parameters, buffers and optimizer state alike: finite real floats
    model_state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    opt = dict(meta["optimizer"])
    state = {}
    for k, v in arrays.items():
        if k.startswith("optim/"):
            pname, key = k[len("optim/"):].rsplit("/", 1)
            state.setdefault(pname, {})[key] = np.asarray(v)
    opt["state"] = state
    prec = dict(meta.get("precision") or {"type": FullPrecision.__name__})
    prec["arrays"] = {k[len("precision/"):]: np.asarray(v) for k, v in arrays.items() if k.startswith("precision/")}
    if opt.get("type") == "MixedPrecision":  # written before precision was its own part: split it out
        opt, prec = _split_mixed(opt)
    meta["precision"] = prec
    return model_state, opt, meta


def _split_mixed(opt):
    """``(optimizer state, precision state)`` from an optimizer state that wrapped both (``"inner"`` the
    optimizer's type; the masters as ``"<name>#master"`` entries of its state)."""
    state = dict(opt["state"])
    masters = {k[: -len("#master")]: state.pop(k)["w"] for k in list(state) if k.endswith("#master")}
    prec = {"type": "MixedPrecision", "loss_scaler": opt["loss_scaler"], "arrays": masters}
    rest = {k: v for k, v in opt.items() if k not in ("inner", "loss_scaler")}
    return {**rest, "type": opt.get("inner"), "state": state}, prec


def restore(path, model, optimizer, iterator, augment=None, precision=None):
    """Load a checkpoint into live objects; returns ``(epoch, history, meta)``.

    ``precision``: the Trainer's precision policy (None: full precision, which has nothing to load).

    The model's frozen parameter names (:meth:`~xpnet.models.Model.freeze`) are restored too.

    Raises:
        FileFormatError: the file is missing, damaged, or holds another model or optimizer; or it was saved
            on another device kind and holds device random streams (Dropout, augmentation) that cannot
            continue here.
    """
    model_state, opt_state, meta = load_checkpoint(path)
    arch = meta["model"].get("arch")
    if arch != model.arch:
        raise FileFormatError(f"{path}: holds a {arch!r} model, not {model.arch!r}; resume with the model it "
                              "was trained with")
    if opt_state.get("type") != type(optimizer).__name__:
        raise FileFormatError(f"{path}: holds {opt_state.get('type')} optimizer state, not "
                              f"{type(optimizer).__name__}; resume with the optimizer it was trained with")
    precision = precision or FullPrecision()
    prec_state = meta["precision"]
    if prec_state.get("type") != type(precision).__name__:
        raise FileFormatError(f"{path}: holds {prec_state.get('type')} training state, not "
                              f"{type(precision).__name__}; resume with the precision it was trained with")
    _check_same_device(path, meta["rng"], model, augment)
    with _field(path, "model"):
        model.load_state_dict(model_state)
    with _field(path, "optimizer"):
        optimizer.load_state_dict(opt_state)
    with _field(path, "precision"):
        precision.load_state_dict(prec_state)
    with _field(path, "rng.model"):
        model.set_rng_state(meta["rng"]["model"])
    with _field(path, "rng.iterator"):
        iterator.set_state(meta["rng"]["iterator"])
    if "frozen" in meta:  # older checkpoints have no frozen names: the model's own set stays as it is
        model.unfreeze()
        if meta["frozen"]:
            with _field(path, "frozen"):
                model.freeze(*meta["frozen"])
    if augment is not None:
        with _field(path, "rng.augment"):
            augment.set_state(meta["rng"].get("augment"))
    return meta["epoch"], meta["history"], meta


@contextlib.contextmanager
def _field(path, field):
    """Turn a value the live object rejects into a FileFormatError naming the file and the field."""
    try:
        yield
    except FileFormatError as e:
        raise FileFormatError(f"{path}: field {field!r}: {e}") from None
    except (ValueError, TypeError, KeyError, OverflowError) as e:
        raise FileFormatError(f"{path}: field {field!r}: {type(e).__name__}: {e}") from None
def _saved_backend(rng):
    """The backend a checkpoint's random streams belong to (older files: NumPy's PCG64 states say numpy)."""
    if "backend" in rng:
        return rng["backend"], rng.get("device", "?")
    states = list((rng.get("model") or {}).values()) + [rng.get("augment")]
    if any(isinstance(st, dict) and st.get("bit_generator") == "PCG64" for st in states):
        return "numpy", "cpu"
    return None, None


def _check_same_device(path, rng, model, augment):
    """Refuse, before anything is loaded, device random streams another device kind cannot continue.

    NumPy's PCG64 and CuPy's generator are different streams; neither state means anything to the other,
    so a resumed Dropout or augmentation would either fail at its first draw or quietly restart from its seed.
    The shuffling generator lives on the host and moves freely; a model without random layers and no
    augmentation resumes on any device.
    """
    saved, device = _saved_backend(rng)
    here = model.backend
    streams = [st for st in (rng.get("model") or {}).values() if st is not None]
    if augment is not None and rng.get("augment") is not None:
        streams.append(rng["augment"])
    if saved is None or saved == here.name or not streams:
        return
    raise FileFormatError(f"{path}: saved on backend '{saved}' ({device}) but resumed on '{here.name}' "
                          f"({here.device}): its Dropout/augmentation random streams cannot continue on another "
                          f"device kind; resume with --backend {saved}")
