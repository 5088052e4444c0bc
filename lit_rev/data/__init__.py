"""Shared data layer of every slice.

Image sources (embedded and torchvision); the DataModules, all built on
:class:`BaseDataModule`: images, ImageNet, and the tabular fairness sets (``AdultDataModule``,
``GermanDataModule``, ``COMPASDataModule``); and checksummed data files (their helpers in
:mod:`lit_rev.data.files`).
"""

from lit_rev.data.base import BaseDataModule
from lit_rev.data.datamodule import ImageDataModule
from lit_rev.data.files import DataFileError
from lit_rev.data.imagenet import ImageNetDataModule
from lit_rev.data.imagenet32 import ImageNet32
from lit_rev.data.images import (
    ConstantImages,
    Digits,
    ImageSource,
    InMemorySource,
    LFWCrops,
    MNIST5k,
    NaturalPatches,
    UniformNoise,
)
from lit_rev.data.tabular import (
    AdultDataModule,
    COMPASDataModule,
    GermanDataModule,
    TabularDataModule,
)
from lit_rev.data.transforms import Grayed, UpsideDown
from lit_rev.data.vision import (
    CIFAR10,
    CIFAR100,
    DTD,
    MNIST,
    SVHN,
    CelebA,
    FashionMNIST,
    Places365,
)

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "DTD",
    "MNIST",
    "SVHN",
    "AdultDataModule",
    "BaseDataModule",
    "COMPASDataModule",
    "CelebA",
    "ConstantImages",
    "DataFileError",
    "Digits",
    "FashionMNIST",
    "GermanDataModule",
    "Grayed",
    "ImageDataModule",
    "ImageNet32",
    "ImageNetDataModule",
    "ImageSource",
    "InMemorySource",
    "LFWCrops",
    "MNIST5k",
    "NaturalPatches",
    "Places365",
    "TabularDataModule",
    "UniformNoise",
    "UpsideDown",
]
