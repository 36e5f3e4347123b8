"""The model inside an `xpnet train` checkpoint, saved as a model file: python checkpoint_to_model.py CKPT OUT.npz"""
import sys

from xpnet.models import REGISTRY
from xpnet.serialization import read_npz

arrays, meta = read_npz(sys.argv[1], "xpnet-checkpoint")
m = REGISTRY[meta["model"]["arch"]](**meta["model"]["config"])
m.load_state_dict({k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")})
m.save(sys.argv[2])
print(f"{sys.argv[2]}: {m.arch} after epoch {meta['epoch']} of the run in {sys.argv[1]}")
