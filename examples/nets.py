"""A network of your own, trained through the framework's ClassificationModule (examples/conf/model/mlp.yaml).

Any ``nn.Module`` whose ``forward`` maps a batch of images to class scores will do; its top-level
children become the optimizer's named parameter groups (here ``hidden`` and ``output``).
"""

from torch import nn


class MLP(nn.Module):
    def __init__(self, in_features: int = 32 * 32, hidden: int = 64, num_classes: int = 10):
        super().__init__()
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU())
        self.output = nn.Linear(hidden, num_classes)

    def forward(self, images):
        return self.output(self.hidden(images))
