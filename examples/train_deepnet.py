"""The book's ch08/train_deepnet.py, written with xpnet.

Trains the DeepConvNet of Figure 8.1 on MNIST (Adam, lr 0.001, batch 100, 20 epochs) and saves it.
Runs on the backend XPNET_BACKEND selects (numpy by default, cuda for the GPU).

    python examples/train_deepnet.py [--epochs 20] [--out runs/deepnet]
"""

import argparse

from xpnet import backends, optim
from xpnet.datasets import load_mnist
from xpnet.models import DeepConvNet
from xpnet.training import Trainer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", default="runs/deepnet")
    args = parser.parse_args()

    (x_train, t_train), (x_test, t_test) = load_mnist(flatten=False)
    network = DeepConvNet()
    print(f"DeepConvNet, {network.num_params():,} parameters, on {backends.current().device}")
    trainer = Trainer(network, optim.Adam(lr=0.001), (x_train, t_train), (x_test, t_test),
                      epochs=args.epochs, batch_size=100, out_dir=args.out)
    history = trainer.fit()
    network.save(f"{args.out}/deep_convnet_params.npz")
    print(f"=============== Final Test Accuracy ===============\ntest acc: {history[-1]['test_acc']:.4f}")


if __name__ == "__main__":
    main()
