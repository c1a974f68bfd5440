"""A user's own OneFlow model, as ``ofconvert`` takes it (README, "Your own model").

    ofconvert examples/my_net.py:MyNet --weights ckpt --input-shape 3,64,64 --to onnx

Run as a script it stands in for the end of a training script: it builds MyNet,
gives it non-default weights and BatchNorm statistics, and saves the state dict
with OneFlow's own ``flow.save`` (a folder):

    python examples/my_net.py ckpt
"""
import sys

import oneflow as flow
import oneflow.nn as nn


class MyNet(nn.Module):
    """A small classifier: conv-BN-ReLU stages, global average pool, Linear."""

    def __init__(self, num_classes=10, width=16):
        super().__init__()
        chans = [3, width, 2 * width, 4 * width]
        layers = []
        for cin, cout in zip(chans, chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(chans[-1], num_classes)

    def forward(self, x):
        return self.fc(self.drop(self.features(x).mean((2, 3))))


def build(num_classes=10):
    """A factory works as well: ``ofconvert examples/my_net.py:build``."""
    return MyNet(num_classes=num_classes)


if __name__ == "__main__":
    flow.manual_seed(0)
    model = MyNet()
    model.train()
    with flow.no_grad():   # a few batches through train-mode BatchNorm: running statistics as after training
        for _ in range(4):
            model(flow.randn(8, 3, 64, 64))
    flow.save(model.state_dict(), sys.argv[1] if len(sys.argv) > 1 else "ckpt")
