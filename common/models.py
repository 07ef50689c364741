"""Models built by name from plain constructor args, so a checkpoint rebuilds without the script that trained it.

- `resnet18_cifar`: torchvision resnet18(num_classes=10) with a 3x3 stride-1 stem and no max-pool (32 px inputs).
- `vit_tiny_patch16_224` (or any timm ViT): `timm.create_model`, ImageNet-pretrained by default, its head replaced
  by a fresh `num_classes` Linear (timm drops the 1000-class head when num_classes differs); `img_size` is passed
  through (timm resamples the position embeddings); a local weights file goes through
  `pretrained_cfg_overlay=dict(file=...)`.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn as nn

from common.io import PipelineError, load_checkpoint

RESNET = "resnet18_cifar"


def resnet18_cifar(num_classes: int = 10, width: int = 64) -> nn.Module:
    """`width` = layer1's channels (64: the ResNet-18 of every profile but smoke; the stages double it per stage as
    torchvision does). A narrower net is the same code at a fraction of the FLOPs (width 16: 1/16), for the smoke run."""
    from torchvision.models import resnet18
    from torchvision.models.resnet import BasicBlock

    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()  # keep 32x32 resolution into layer1
    if width != 64:
        model.inplanes, model.bn1 = width, nn.BatchNorm2d(width)
        model.layer1 = model._make_layer(BasicBlock, width, 2)
        model.layer2 = model._make_layer(BasicBlock, 2 * width, 2, stride=2)
        model.layer3 = model._make_layer(BasicBlock, 4 * width, 2, stride=2)
        model.layer4 = model._make_layer(BasicBlock, 8 * width, 2, stride=2)
        model.fc = nn.Linear(8 * width, num_classes)
        for m in model.modules():  # torchvision's initialisation of the rebuilt layers
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model


def vit(name: str, num_classes: int = 10, pretrained: bool = True, img_size: int = 224,
        weights_file: str = "") -> nn.Module:
    import timm

    kwargs = dict(num_classes=num_classes, img_size=img_size)
    if pretrained and weights_file:
        if not Path(weights_file).is_file():
            raise PipelineError(f"weights file {weights_file} not found: give an existing --weights-file or --pretrained false")
        kwargs["pretrained_cfg_overlay"] = dict(file=str(Path(weights_file).resolve()))
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except (OSError, ConnectionError, RuntimeError) as e:
        if not pretrained:
            raise
        raise PipelineError(
            f"could not get ImageNet weights for {name} ({type(e).__name__}; no network?): pass --weights-file "
            "<local .safetensors/.pth> or --pretrained false (random init)") from None


def build_model(name: str, **args) -> nn.Module:
    if name == RESNET:
        return resnet18_cifar(**args)
    if name.startswith("vit_") or name.startswith("deit_"):
        return vit(name, **args)
    raise PipelineError(f"unknown model {name!r}: use {RESNET} or a timm ViT name such as vit_tiny_patch16_224")


def load_model(path, device: str = "cpu", make: str = "") -> tuple[nn.Module, dict]:
    """Rebuild a model from a checkpoint (never re-downloading weights) and load its state_dict."""
    ckpt = load_checkpoint(path, make)
    args = dict(ckpt["model_args"])
    if "pretrained" in args:
        args["pretrained"], args["weights_file"] = False, ""  # the state_dict holds the weights
    model = build_model(ckpt["model_name"], **args)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device), ckpt


def autocast(device: str, enabled: bool):
    """bf16 autocast on CPU and CUDA (weights and optimiser state stay fp32); a no-op when disabled."""
    if not enabled:
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
