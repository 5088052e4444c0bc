"""Shared data layer of every slice.

Image sources (embedded and torchvision); the DataModules, all built on
:class:`BaseDataModule`: images, ImageNet, and the tabular fairness sets (``AdultDataModule``,
``GermanDataModule``, ``COMPASDataModule``; ``Adult``, ``German``, ``COMPAS`` are their
deprecated former names); and checksummed data files.
"""

from lit_rev.data.base import BaseDataModule
from lit_rev.data.datamodule import ImageDataModule
from lit_rev.data.files import DataFileError, shipped_file, verified_path
from lit_rev.data.imagenet import ImageNetDataModule
from lit_rev.data.imagenet32 import ImageNet32
from lit_rev.data.images import (
    ConstantImages,
    Digits,
    ImageSource,
    ImageTensors,
    InMemorySource,
    LFWCrops,
    MNIST5k,
    NaturalPatches,
    UniformNoise,
)
from lit_rev.data.tabular import (
    COMPAS,
    Adult,
    AdultDataModule,
    COMPASDataModule,
    German,
    GermanDataModule,
    TabularDataModule,
)
from lit_rev.data.transforms import Grayed, UpsideDown, convert, quantize
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
    "COMPAS",
    "DTD",
    "MNIST",
    "SVHN",
    "Adult",
    "AdultDataModule",
    "BaseDataModule",
    "COMPASDataModule",
    "CelebA",
    "ConstantImages",
    "DataFileError",
    "Digits",
    "FashionMNIST",
    "German",
    "GermanDataModule",
    "Grayed",
    "ImageDataModule",
    "ImageNet32",
    "ImageNetDataModule",
    "ImageSource",
    "ImageTensors",
    "InMemorySource",
    "LFWCrops",
    "MNIST5k",
    "NaturalPatches",
    "Places365",
    "TabularDataModule",
    "UniformNoise",
    "UpsideDown",
    "convert",
    "quantize",
    "shipped_file",
    "verified_path",
]
