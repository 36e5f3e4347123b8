"""Suite ``infer``: DeepConvNet inference throughput (eval-mode forward) per backend and batch size.

With ``--compare torch`` the identical PyTorch network (``net.eval()`` under ``torch.no_grad()``)
is timed in the same run, in alternating turns with xpnet's ``model.predict(x)``.
"""

import numpy as np

from benchmarks import machine, torch_peer, train
from xpnet import backends
from xpnet.models import DeepConvNet

METHOD = ("One inference = model.predict(x) (train=False: dropout off, scores before softmax) on a fixed "
          "random batch already on the device. Timed with the backend's timer() after warm-up; images/s = "
          "batch / median time. With --compare torch the PyTorch twin (same layers and weights, float32, "
          "torch.set_num_threads = xpnet's CPU threads) runs net(x) in eval mode under torch.no_grad(), "
          "alternating with xpnet in turns of 5 timed calls, each opened by one untimed call; "
          "ratio = xpnet images/s / torch images/s.")


def run(settings):
    """Measure every (backend, batch size); returns the suite's JSON-ready result."""
    threads, source = machine.blas_threads()
    out = {"method": METHOD, "model": "deep_convnet", "input": list(train.INPUT), "dtype": "float32",
           "blas_threads": threads, "blas_threads_source": source, "compare": settings.compare, "rows": [],
           "title": None, "plot_name": "infer_throughput.png",
           "plot_title": "DeepConvNet inference throughput (eval-mode forward)"}
    if settings.compare == "torch":
        out["torch"] = torch_peer.configure(threads)
    for name in settings.backends:
        for batch in settings.infer_batches():
            out["rows"].append(_measure(name, batch, settings))
    out["title"] = (f"DeepConvNet inference (eval-mode forward), float32, input "
                    f"{'x'.join(map(str, train.INPUT))}, threads {threads}")
    return out


def _measure(name, batch, settings):
    be = backends.get(name)
    x = np.random.default_rng(0).random((batch, *train.INPUT), dtype=np.float32)
    model = DeepConvNet(input_dim=train.INPUT, dtype="float32", backend=name)
    xd = be.asarray(x)
    contenders = {"xpnet": (lambda: model.predict(xd), be.timer)}
    row = {"backend": name, "batch": batch}
    device = torch_peer.device_of(name)
    if settings.compare == "torch" and torch_peer.unavailable(device):
        row["torch_skipped"] = torch_peer.unavailable(device)
    elif settings.compare == "torch":
        net = torch_peer.twin(model, device)
        row["torch_device"] = device
        row["max_score_difference"] = torch_peer.max_score_difference(model, net, x)
        contenders["torch"] = (torch_peer.inference(net, x), torch_peer.timer_factory(device))
    return train.finish(row, contenders, batch, settings)


render = train.render
plot = train.plot
