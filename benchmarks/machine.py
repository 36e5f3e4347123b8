"""What the numbers were measured on: CPU, cores, BLAS and its threads, GPU, library versions, date."""

import datetime
import os
import platform
import subprocess
from importlib import metadata

import numpy as np

import xpnet
from xpnet import backends
from xpnet.backends.numpy_backend import cpu_model

_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores():
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    from xpnet.backends.cpu_threads import usable_cores

    return usable_cores()


def blas_threads():
    """``(threads, how it was found)``: the CPU threads xpnet's NumPy backend computes with.

    The NumPy backend's batch split when it is on (XPNET_NUM_THREADS; OpenBLAS then runs one thread in
    each), else NumPy's BLAS: asks it through threadpoolctl, else reads the usual environment variables,
    else assumes one thread per usable core.
    PyTorch is given the same number.
    """
    split = backends.get("numpy").splitter
    if split.threads > 1:
        return split.threads, "xpnet batch split (XPNET_NUM_THREADS or usable cores), OpenBLAS 1 thread each"
    from xpnet.backends.cpu_threads import blas_threads as asked

    if asked() is not None:
        return asked(), "threadpoolctl"
    for var in _THREAD_ENV:
        value = os.environ.get(var, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            return int(value), var
    return usable_cores(), "usable cores (default)"


def package_version(name):
    """Installed version of a distribution, or None; never imports it (torch stays unloaded)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def describe(backend_names):
    """A JSON-ready description of this machine and of the backends in ``backend_names``.

    Returns:
        dict with ``cpu``, ``cores``, ``blas``, ``blas_threads``, ``blas_threads_source``, ``platform``,
        ``python``, ``numpy``, ``xpnet``, ``torch`` (version or None), ``date`` (UTC, ISO 8601) and
        ``backends`` (each backend's ``info()``, which for cuda holds the GPU name and driver).
    """
    threads, source = blas_threads()
    infos = {name: _info(name) for name in backend_names}
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "blas": infos.get("numpy", _info("numpy")).get("blas", "unknown"),
        "blas_threads": threads,
        "blas_threads_source": source,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "xpnet": xpnet.__version__,
        "torch": package_version("torch"),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "backends": infos,
    }


def _info(name):
    info = dict(backends.get(name).info())
    if name == "cuda":
        info["tf32"] = os.environ.get("CUPY_TF32", "0")  # CuPy uses TF32 GEMMs only when this is "1"
        info["nvidia_driver"] = _nvidia_driver()
    return info


def _nvidia_driver():
    """The NVIDIA driver version from nvidia-smi (info() has only the CUDA API version), or None."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def header_lines(machine):
    """Human-readable lines for the top of every table."""
    lines = [
        f"CPU: {machine['cpu']} ({machine['cores']} usable cores); BLAS: {machine['blas']}, "
        f"{machine['blas_threads']} threads ({machine['blas_threads_source']})",
        f"numpy {machine['numpy']}, xpnet {machine['xpnet']}, torch {machine['torch'] or 'not installed'}, "
        f"Python {machine['python']}; {machine['platform']}; {machine['date']}",
    ]
    cuda = machine["backends"].get("cuda")
    if cuda:
        lines.append(f"GPU: {cuda.get('device')}; driver {cuda.get('nvidia_driver')} "
                     f"(CUDA API {cuda.get('cuda_driver')}), CUDA runtime {cuda.get('cuda_runtime')}, "
                     f"CuPy {cuda.get('cupy')}, TF32 {cuda.get('tf32')}")
    return lines


def summary_line(machine):
    """One line naming the machine, for the head of each suite's tables."""
    gpu = machine["backends"].get("cuda")
    device = f"; GPU {gpu.get('device')} (driver {gpu.get('nvidia_driver')})" if gpu else ""
    return (f"[{machine['cpu']}, {machine['cores']} cores, {machine['blas']} x{machine['blas_threads']} threads"
            f"{device}; numpy {machine['numpy']}, xpnet {machine['xpnet']}, torch {machine['torch'] or '-'}; "
            f"{machine['date']}]")
