"""C3D, the plain 3D ConvNet of Tran et al. 2015, with the key names of the common PyTorch port.

D. Tran, L. Bourdev, R. Fergus, L. Torresani, M. Paluri. "Learning Spatiotemporal Features
with 3D Convolutional Networks." ICCV 2015 (arXiv:1412.0767).

Eight 3×3×3 convolutions (stride 1, padding 1, bias, ReLU), five max-pools and three fully
connected layers, for 16×112×112 clips::

    conv1   64  ─ pool1 1×2×2    (N, 64, 16, 56, 56)
    conv2  128  ─ pool2 2×2×2    (N, 128, 8, 28, 28)
    conv3a/b 256 ─ pool3 2×2×2   (N, 256, 4, 14, 14)
    conv4a/b 512 ─ pool4 2×2×2   (N, 512, 2, 7, 7)
    conv5a/b 512 ─ pool5 2×2×2, spatial padding 1   (N, 512, 1, 4, 4) → 8192
    fc6 4096, ReLU, dropout 0.5 ─ fc7 4096, ReLU, dropout 0.5 ─ fc8 (487 Sports-1M classes)

pool5's spatial padding is the Sports-1M port's: Caffe rounds pool outputs up (windows
0-1, 2-3, 4-5, 6 of the 7×7 map), the Keras and PyTorch ports pad 7×7 to 8×8 instead (windows
-1-0, 1-2, 3-4, 5-6); both give 4×4. The flattened pool5 is exactly the 8192 inputs of fc6, so
the model only accepts clips whose pool5 is 512×1×4×4 (16×112×112).

Parameter keys are those of DavideA/c3d-pytorch (``C3D_model.py``), whose ``c3d.pickle``
Sports-1M weights (a flat state dict) load with ``strict=True``: ``conv1``, ``conv2``,
``conv3a``, ``conv3b``, ``conv4a``, ``conv4b``, ``conv5a``, ``conv5b``, ``fc6``, ``fc7``,
``fc8``, each ``.weight`` and ``.bias``. Pooling, ReLU and dropout hold no parameters.

The paper's feature is fc6 (post-ReLU): :meth:`C3D.forward_features` returns it and
``feature_dim`` is 4096. :meth:`C3D.feature_layers` also offers the conv5b map, pool5 and fc7.
The classifier is ``fc8`` (there is no ``fc`` attribute; use :meth:`C3D.reset_classifier`).

Example:
    >>> from feat3d.backbones import get_backbone
    >>> model = get_backbone("c3d", num_classes=487).eval()
    >>> model.feature_layers()["pool5"], model.feature_dim
    (8192, 4096)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from feat3d.backbones.registry import Backbone, register_backbone

__all__ = ["C3D", "SPORTS1M_CLASSES", "c3d"]

#: Sports-1M classes of the published weights.
SPORTS1M_CLASSES = 487

# (name, input channels, output channels) of the 3×3×3 convs, in order.
_CONVS: tuple[tuple[str, int, int], ...] = (
    ("conv1", 3, 64),
    ("conv2", 64, 128),
    ("conv3a", 128, 256),
    ("conv3b", 256, 256),
    ("conv4a", 256, 512),
    ("conv4b", 512, 512),
    ("conv5a", 512, 512),
    ("conv5b", 512, 512),
)
_POOL5_SIZE = 512 * 1 * 4 * 4


def _conv(in_channels: int, out_channels: int) -> nn.Conv3d:
    return nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1)


class C3D(Backbone):
    """C3D with the DavideA/c3d-pytorch key layout.

    Args:
        num_classes: Rows of ``fc8``.
        dropout: Dropout probability after fc6 and fc7 (active in training mode only).
    """

    def __init__(self, num_classes: int = SPORTS1M_CLASSES, *, dropout: float = 0.5) -> None:
        super().__init__()
        self.arch_kwargs = {"num_classes": num_classes}
        self.num_classes = num_classes
        self.feature_dim = 4096
        self.default_feature_layer = "fc6"  # Tran et al. 2015: fc6 activations are "C3D"

        self.conv1 = _conv(3, 64)
        self.pool1 = nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.conv2 = _conv(64, 128)
        self.pool2 = nn.MaxPool3d(kernel_size=2, stride=2)
        self.conv3a = _conv(128, 256)
        self.conv3b = _conv(256, 256)
        self.pool3 = nn.MaxPool3d(kernel_size=2, stride=2)
        self.conv4a = _conv(256, 512)
        self.conv4b = _conv(512, 512)
        self.pool4 = nn.MaxPool3d(kernel_size=2, stride=2)
        self.conv5a = _conv(512, 512)
        self.conv5b = _conv(512, 512)
        self.pool5 = nn.MaxPool3d(kernel_size=2, stride=2, padding=(0, 1, 1))
        self.fc6 = nn.Linear(_POOL5_SIZE, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)
        self.dropout = nn.Dropout(p=dropout)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))  # for the pooled conv5 layer

        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.005)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc8.weight, 0, 0.01)

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Convolutions up to conv5b.

        Args:
            x: Normalized clips, float ``(N, 3, 16, 112, 112)``.

        Returns:
            The conv5b map after its ReLU, ``(N, 512, 2, 7, 7)`` for 16×112×112 clips.
        """
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = self.pool3(F.relu(self.conv3b(F.relu(self.conv3a(x)))))
        x = self.pool4(F.relu(self.conv4b(F.relu(self.conv4a(x)))))
        return F.relu(self.conv5b(F.relu(self.conv5a(x))))

    def _pool5(self, trunk: torch.Tensor) -> torch.Tensor:
        pooled = self.pool5(trunk)
        if pooled.shape[1:] != (512, 1, 4, 4):
            raise ValueError(
                f"C3D needs pool5 of 512×1×4×4 = {_POOL5_SIZE} values (16×112×112 clips); "
                f"this input gives {'×'.join(str(d) for d in pooled.shape[1:])}"
            )
        return torch.flatten(pooled, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """fc6 activations after ReLU, the paper's C3D feature.

        Args:
            x: Normalized clips, float ``(N, 3, 16, 112, 112)``.

        Returns:
            ``(N, 4096)``.

        Raises:
            ValueError: The clip size does not give a 512×1×4×4 pool5.
        """
        return F.relu(self.fc6(self._pool5(self.forward_trunk(x))))

    def forward_head(self, feats: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """fc8(dropout(ReLU(fc7(dropout(fc6))))) on fc6 features.

        Args:
            feats: ``(N, 4096)`` output of :meth:`forward_features`.
            pre_logits: Return ``feats`` unchanged.

        Returns:
            Logits ``(N, num_classes)``, or ``feats`` when ``pre_logits``.
        """
        if pre_logits:
            return feats
        return self.fc8(self.dropout(self._fc7(feats)))

    def _fc7(self, fc6: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc7(self.dropout(fc6)))

    def feature_layers(self) -> dict[str, int]:
        """Layers :meth:`forward_layers` can return, with their width per clip.

        ``conv5`` is the conv5b map (average-pooled to 512 unless ``pool=False``), ``pool5``
        the flattened max-pool5 output, ``fc6``/``fc7`` the activations after ReLU, ``logits``
        the fc8 output.
        """
        return {
            "conv5": 512,
            "pool5": _POOL5_SIZE,
            "fc6": 4096,
            "fc7": 4096,
            "logits": self.num_classes,
        }

    def forward_layers(
        self, x: torch.Tensor, layers: tuple[str, ...], *, pool: bool = True
    ) -> dict[str, torch.Tensor]:
        """Several layers in one pass, computing only as far as the deepest one asked for.

        Args:
            x: Normalized clips, float ``(N, 3, 16, 112, 112)``.
            layers: Names from :meth:`feature_layers`.
            pool: With ``False``, ``conv5`` is returned unpooled, ``(N, 512, 2, 7, 7)``.

        Returns:
            One tensor per requested layer.

        Raises:
            ValueError: A layer C3D does not have, or a clip size that does not fit fc6.
        """
        self.check_layers(layers)
        order = list(self.feature_layers())
        deepest = max(order.index(name) for name in layers) if layers else -1
        out: dict[str, torch.Tensor] = {}
        if deepest < 0:
            return out
        trunk = self.forward_trunk(x)
        if "conv5" in layers:
            out["conv5"] = torch.flatten(self.avgpool(trunk), 1) if pool else trunk
        if deepest >= order.index("pool5"):
            out["pool5"] = self._pool5(trunk)
        if deepest >= order.index("fc6"):
            out["fc6"] = F.relu(self.fc6(out["pool5"]))
        if deepest >= order.index("fc7"):
            out["fc7"] = self._fc7(out["fc6"])
        if deepest >= order.index("logits"):
            out["logits"] = self.fc8(self.dropout(out["fc7"]))
        return {name: out[name] for name in layers}

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc8`` by a freshly initialized ``Linear(4096, num_classes)``.

        Args:
            num_classes: Rows of the new classifier.
        """
        self.fc8 = nn.Linear(4096, num_classes)
        nn.init.normal_(self.fc8.weight, 0, 0.01)
        nn.init.zeros_(self.fc8.bias)
        self.num_classes = num_classes
        self.arch_kwargs = {**self.arch_kwargs, "num_classes": num_classes}


# num_params with 400 classes, like every registry entry (79,991,015 with Sports-1M's 487:
# the Keras port's model summary); gmacs: multiply-accumulates ×1e9 for one 16×112×112
# clip, torch.utils.flop_counter. Both re-measured in tests/backbones/test_res3d_c3d.py.


@register_backbone(
    "c3d",
    family="c3d",
    block="plain",
    layers=(1, 2, 2, 2),
    widths=(128, 256, 512, 512),
    feature_dim=4096,
    default_meta="c3d-sports1m",
    formats=("c3d", "feat3d"),
    stem="conv 3×3×3 to 64, ReLU, max-pool 1×2×2",
    num_params=79634576,
    gmacs=38.549,
    paper="Tran et al., ICCV 2015, arXiv:1412.0767",
)
def c3d(*, num_classes: int = SPORTS1M_CLASSES) -> C3D:
    """C3D (Tran et al., 2015) with DavideA/c3d-pytorch's key names.

    Args:
        num_classes: Rows of ``fc8``; 487 for the Sports-1M weights.

    Returns:
        A randomly initialized CPU model.
    """
    return C3D(num_classes)
