"""pytorchvideo 0.1.5 imports ``torchvision.transforms.functional_tensor``, which torchvision
removed (it is ``_functional_tensor`` now). Import this module before ``pytorchvideo.transforms``.
"""

import sys

import torchvision.transforms._functional_tensor as _functional_tensor

sys.modules.setdefault("torchvision.transforms.functional_tensor", _functional_tensor)
