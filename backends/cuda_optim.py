"""The CUDA backend's fused optimizer step: one kernel per flat buffer, arguments the same every step.

The learning rate and the step count live in a small float64 device buffer per flat buffer (kept in the
optimizer's workspace dict for it, :data:`~xpnet.backends.cuda_optim_src.SCALARS_SIZE` slots). The host
remembers what the device holds and copies ``[lr, steps taken]`` over (one 16-byte host-to-device copy)
only when that is not what the device will use: on the first step, after a checkpoint is loaded, when a
schedule or the user changes the learning rate. Adam's step count moves on on the device
(:data:`~xpnet.backends.cuda_optim_src.ADAM_SCALARS`, one more launch), so a constant learning rate
means no copy at all in a steady step and every launch could be replayed from a CUDA graph.
"""

import numpy as np

from xpnet.backends import cuda_optim_src


class CudaFusedOptimizer:
    """Mixed into :class:`~xpnet.backends.cuda_backend.CudaBackend` (``xp`` and ``_kernels`` are its)."""

    fused_optimizer = True

    def fused_update(self, rule, p, g, state, scalars, lr, step, sumsq=None, ws=None):
        """The rule's fused kernel (:mod:`~xpnet.backends.cuda_optim_src`) over the flat buffers: one launch
        (two for Adam and AdamW), reading this step's values from the device (see the module)."""
        ws = {} if ws is None else ws
        s = self._step_scalars(ws, float(lr), int(step), rule in cuda_optim_src.COUNTED)
        if rule in cuda_optim_src.COUNTED:  # (l2, clip, beta1, beta2, eps), AdamW's decoupled decay after
            decay = scalars[5] if rule == "adamw" else 0.0
            scalars = scalars[:5]
            self._kernels.adam_scalars(float(scalars[2]), float(scalars[3]), float(decay), s, size=1)
        kernel = getattr(self._kernels, f"fused_{rule}")
        kernel(g, g if sumsq is None else sumsq, s, *scalars, p, *(state[k] for k in cuda_optim_src.STATE[rule]))
        return True

    def _step_scalars(self, ws, lr, step, counted):
        """The buffer's device scalars, holding ``lr`` and, for a counted rule, ``step - 1`` steps taken."""
        s = ws.get("scalars")
        if s is None:
            s = ws["scalars"] = self.xp.zeros(cuda_optim_src.SCALARS_SIZE, dtype=np.float64)
            ws["held"] = None
        taken = step - 1 if counted else 0
        if ws["held"] != (lr, taken):
            s[:2].set(np.array([lr, taken], dtype=np.float64), stream=self.xp.cuda.get_current_stream())
        ws["held"] = (lr, taken + 1 if counted else 0)  # what the device holds once this step's kernels ran
        return s
