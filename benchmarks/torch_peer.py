"""PyTorch twin of an xpnet network, for ``train --compare torch``. torch is optional: imported lazily.

The twin is built layer by layer from the xpnet model (same kernels, strides, padding, pooling,
dropout, widths) and starts from copies of its weights, so both sides do the same arithmetic in
float32; its eval-mode scores are checked against xpnet's before timing.
"""

import importlib
import os

import numpy as np

from xpnet import backends

TORCH_PIN = "torch==2.13.0"
INSTALL_HINT = (f"--compare torch needs PyTorch, which is not installed here; install it with "
                f"`pip install {TORCH_PIN}` (CPU build; for CUDA pick the wheel for your CUDA version)")


def missing():
    """None when torch imports, else a message saying how to install it."""
    try:
        importlib.import_module("torch")
    except ImportError:
        return INSTALL_HINT
    return None


def _torch():
    return importlib.import_module("torch")


def configure(threads):
    """Match xpnet's setting: ``threads`` intra-op threads, and strict float32 (no TF32) unless CuPy uses TF32.

    Returns:
        dict describing what was set, for the JSON file.
    """
    torch = _torch()
    torch.set_num_threads(int(threads))
    precision = "tf32" if os.environ.get("CUPY_TF32", "0") == "1" else "ieee"
    if hasattr(torch.backends, "fp32_precision"):
        torch.backends.fp32_precision = precision
    else:  # older torch
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "fp32_precision": precision}


def _twin_layer(layer, nn, flat):
    """The torch module(s) for one xpnet layer, and whether the output is flat afterwards."""
    kind = type(layer).__name__
    if kind == "Conv2D":
        return [nn.Conv2d(layer.C, layer.FN, (layer.KH, layer.KW), layer.stride, layer.pad)], flat
    if kind == "Affine":
        head = [] if flat else [nn.Flatten()]
        return head + [nn.Linear(layer.in_features, layer.out_features)], True
    if kind == "ReLU":
        return [nn.ReLU()], flat
    if kind == "MaxPool2D":
        return [nn.MaxPool2d((layer.KH, layer.KW), layer.stride, layer.pad)], flat
    if kind == "AvgPool2D":
        return [nn.AvgPool2d((layer.KH, layer.KW), layer.stride, layer.pad, count_include_pad=True)], flat
    if kind == "Dropout":
        return [nn.Dropout(layer.ratio)], flat
    if kind == "LocalResponseNormalization":  # torch divides alpha by size
        return [nn.LocalResponseNorm(layer.size, layer.alpha * layer.size, layer.beta, layer.k)], flat
    raise NotImplementedError(f"no PyTorch twin for xpnet layer {kind}")


def twin(model, device):
    """A ``torch.nn.Sequential`` with ``model``'s architecture and a copy of its weights, on ``device``."""
    torch = _torch()
    nn = torch.nn
    modules, flat = [], False
    for layer in model.net:
        parts, flat = _twin_layer(layer, nn, flat)
        if layer.params:
            W = model.backend.asnumpy(layer.params["W"])
            b = model.backend.asnumpy(layer.params["b"])
            with torch.no_grad():
                parts[-1].weight.copy_(torch.from_numpy(W.T.copy() if W.ndim == 2 else W))
                parts[-1].bias.copy_(torch.from_numpy(b))
        modules += parts
    return nn.Sequential(*modules).to(device=device, dtype=torch.float32)


def device_of(backend_name):
    """The torch device matching an xpnet backend: ``"cuda"`` for cuda, else ``"cpu"``."""
    return "cuda" if backend_name == "cuda" else "cpu"


def unavailable(device):
    """None when torch can run on ``device``, else why not (a CPU-only torch build asked for CUDA)."""
    if device == "cuda" and not _torch().cuda.is_available():
        return f"torch {_torch().__version__} cannot use CUDA here (a CPU-only build, or no driver)"
    return None


def timer_factory(device):
    """A timer like ``backend.timer``: CUDA events (synchronized) on the GPU, perf_counter on the CPU."""
    if device == "cpu":
        return backends.CPUTimer
    torch = _torch()

    class CudaEventTimer:
        def __enter__(self):
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
            self._start.record()
            return self

        def __exit__(self, *exc):
            self._end.record()
            self._end.synchronize()
            self.elapsed_ms = self._start.elapsed_time(self._end)
            return False

    return CudaEventTimer


def training_step(net, x, t, lr=1e-3):
    """A zero-argument callable doing one Adam step of ``net`` on (x, t) (host arrays, copied once)."""
    torch = _torch()
    device = next(net.parameters()).device
    xt = torch.as_tensor(x, device=device)
    tt = torch.as_tensor(t, device=device, dtype=torch.long)
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = torch.nn.CrossEntropyLoss()
    net.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(net(xt), tt).backward()
        opt.step()

    return step


def max_score_difference(model, net, x):
    """Largest |xpnet - torch| over eval-mode scores of host batch ``x`` (a check that the twin is one)."""
    torch = _torch()
    ours = model.backend.asnumpy(model.predict(x, train=False))
    net.eval()
    with torch.no_grad():
        theirs = net(torch.as_tensor(x, device=next(net.parameters()).device)).cpu().numpy()
    return float(np.max(np.abs(ours - theirs)))


def inference(net, x):
    """A zero-argument callable running ``net`` on host batch ``x`` in eval mode without autograd."""
    torch = _torch()
    xt = torch.as_tensor(x, device=next(net.parameters()).device)
    net.eval()

    def forward():
        with torch.no_grad():
            return net(xt)

    return forward
