"""Typed stage configs, profiles and `--field value` parsing.

Every stage has one dataclass here. A profile is a preset of that same dataclass (a dict of field values), never
a second code path:
  smoke  tiny settings for the tests, seconds per stage
  cpu    real data on 2 CPU cores, minutes; caps the images per class so run time does not grow with the dataset
  paper  the settings of reference A (ViT) and reference B (ResNet/GAN), meant for a GPU
  auto   = paper when CUDA is available, else cpu (the default)
Precedence: dataclass defaults < profile preset < command-line overrides. Unknown fields and bad values are
errors (exit 2, one line).
"""
from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass

from common.io import PipelineError

PROFILES = ("smoke", "cpu", "paper", "auto")


@dataclass
class Common:
    profile: str = "auto"  # smoke | cpu | paper | auto (= paper on CUDA, else cpu)
    seed: int = 42  # reference A's seed
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    results: str = "results"  # root of the artefact tree
    wandb: bool = False  # mirror log lines to Weights & Biases (off by default; honours WANDB_MODE=offline)
    amp: bool = True  # bf16 autocast on CPU and CUDA; weights stay fp32


@dataclass
class PrepareConfig(Common):
    source: str = "cifar10"  # cifar10 (torchvision) | kaggle (train.7z or train/ + trainLabels.csv)
    data_dir: str = "data"
    cache_dir: str = "data/cache"  # where train.7z is extracted (never into data_dir)
    test_fraction: float = 0.2  # kaggle only: reference B's seeded 80/20 split
    forget_class: int = 0  # class-wise forgetting (reference A): 0 = airplane
    forget_size: int = 128  # sample-wise forgetting (reference B): one batch
    forget_fraction: float = 0.0  # > 0 overrides forget_size, e.g. 0.1 = the literature's random 10 %
    max_train_per_class: int = 0  # 0 = no cap
    max_test_per_class: int = 0


@dataclass
class ResNetConfig(Common):
    epochs: int = 10  # reference B: 10 epochs (it reached 84.81 % test on full CIFAR-10)
    batch_size: int = 128
    eval_batch_size: int = 256  # 2-core CPU: 256 evaluates faster per image than 512
    lr: float = 0.1  # one-cycle peak learning rate (SGD, Nesterov momentum)
    pct_start: float = 0.25  # share of the steps spent warming the LR up to its peak
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    channels_last: bool = True
    train_gold: bool = True  # also retrain on sample_retain (the reference for every unlearning number)


@dataclass
class ViTRefsConfig(Common):
    model: str = "vit_tiny_patch16_224"
    pretrained: bool = True  # ImageNet weights through timm; no network -> --weights-file or --pretrained false
    weights_file: str = ""  # local timm weights (.safetensors / .pth / .bin)
    img_size: int = 224
    epochs: int = 3
    batch_size: int = 64
    eval_batch_size: int = 256
    lr: float = 1e-4  # SGD, momentum 0.9 (reference A)
    momentum: float = 0.9


@dataclass
class ViTUnlearnConfig(Common):
    methods: str = "finetune,gradient_ascent,two_stage"  # comma-separated names from the METHODS dict of 04
    epochs: int = 5
    batch_size: int = 64
    eval_batch_size: int = 256
    lr: float = 1e-4
    momentum: float = 0.9
    tsne_per_group: int = 500  # retain and forget train images per t-SNE panel (each)


@dataclass
class GanConfig(Common):
    epochs: int = 10  # reference B: 10 epochs
    steps_per_epoch: int = 20  # generator steps per epoch (each: next forget batch, cycled, + one retain batch)
    batch_size: int = 128  # forget, retain and real batches
    n_critic: int = 5  # critic steps per generator step (WGAN-GP)
    critic_warmup: int = 100  # critic steps before the first generator step (cheap: no ResNet pass)
    lambda_gp: float = 10.0
    # Weight of retain cross-entropy in the generator loss; 0 = reference B. Measured on the real subset (cpu
    # profile, forget / retain / test accuracy %): 0 -> 10.2 / 10.3 / 11.7 (collapse to chance), 0.3 -> 50.8 / 55.2
    # / 53.5, 1 -> 57.8 / 60.7 / 58.7; original 64.1 / 64.3 / 61.4, gold 64.1 / 64.0 / 62.1.
    lambda_retain: float = 1.0
    lr_g: float = 1e-4  # Adam on the whole ResNet-18 (generator)
    lr_d: float = 1e-3  # Adam on the small critic MLP
    critic_hidden: int = 64  # width of the critic's two hidden layers
    eval_subset: int = 0  # retain / test rows scored after each epoch (0 = all); final metrics always use all
    eval_batch_size: int = 256
    channels_last: bool = True


@dataclass
class AttackConfig(Common):
    max_per_group: int = 0  # cap on members / non-members per half (0 = all)
    classifier: str = "hgb"  # attack model: hgb (histogram gradient boosting) | logreg | rf (random forest)


@dataclass
class ReportConfig(Common):
    pass


# Profile presets: only the fields that differ from the dataclass defaults.
PRESETS: dict[type, dict[str, dict]] = {
    PrepareConfig: {
        "smoke": dict(forget_size=32),
        # ~800 train / 200 test images per class: the real 9k subset is not cut, full CIFAR-10 is capped to it.
        "cpu": dict(max_train_per_class=850, max_test_per_class=250),
        "paper": dict(),
    },
    ResNetConfig: {
        "smoke": dict(epochs=1, batch_size=64),
        # 02 + 05 + 06 in <= 12 min on 2 cores (~160 img/s bf16): 5 epochs x 2 models x ~45 s. Batch 64 at lr 0.05
        # doubles the updates at the same img/s: 43.1 % test after 2 epochs vs 33.3 % for batch 128 at lr 0.1.
        "cpu": dict(epochs=5, batch_size=64, lr=0.05),
        "paper": dict(),
    },
    ViTRefsConfig: {
        "smoke": dict(pretrained=False, img_size=32, epochs=2, batch_size=32, lr=1e-2),
        # cpu: no weights can be downloaded here, so random init; 03 + 04 must fit in 10 min on 2 cores. Measured on
        # the 7.3k real subset (SGD momentum 0.9, batch 64, bf16, test acc after 3 / 10 epochs): 32 px trains at
        # ~5.5 s/epoch vs ~22 s at 64 px and is as accurate (lr 1e-2: 33.9 % vs 32.0 % at 3 epochs), so 32 px
        # (CIFAR's own size, no resize; 2x2 patches of 16 px). lr: 1e-4 (reference A) 33.4 / 36.1 %, 1e-3
        # 35.7 / 40.7 %, 1e-2 33.9 / 40.1 %, 3e-2 29.3 / 36.1 %; AdamW 1e-3 was worse (30.2 % at 3). From scratch
        # on 7.3k un-augmented images every setting plateaus near 40 % by ~10 epochs (1e-3 then overfits: 38.5 %
        # at 15), so 10 epochs at lr 1e-3 (10x reference A). Measured: 03 116 s + 04 52 s wall on the real subset.
        "cpu": dict(pretrained=False, img_size=32, epochs=10, lr=1e-3),
        "paper": dict(),  # reference A: pretrained, 224 px, 3 epochs, SGD lr 1e-4 momentum 0.9, batch 64
    },
    ViTUnlearnConfig: {
        "smoke": dict(epochs=1, batch_size=32, tsne_per_group=30, lr=1e-2),
        "cpu": dict(lr=1e-3),  # reference A's 5 epochs and t-SNE 500 + 500; lr = the cpu references' lr (see above)
        "paper": dict(),  # reference A: 5 epochs, SGD lr 1e-4 momentum 0.9, batch 64, t-SNE 500 + 500
    },
    GanConfig: {
        "smoke": dict(epochs=2, steps_per_epoch=2, batch_size=32, n_critic=2),
        # 40 generator steps (~1.3 s each with the retain batch) + evaluation: ~1.5 min of the 12 min budget.
        "cpu": dict(epochs=5, steps_per_epoch=8, eval_subset=512),
        "paper": dict(),
    },
    AttackConfig: {"smoke": dict(), "cpu": dict(), "paper": dict()},
    ReportConfig: {"smoke": dict(), "cpu": dict(), "paper": dict()},
}


def resolve_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise PipelineError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    if profile != "auto":
        return profile
    import torch

    return "paper" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PipelineError(f"--device {device} asked for, but torch sees no CUDA GPU: use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise PipelineError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")
    return device


def _convert(name: str, text: str, tp):
    """Turn the command-line string `text` into the field's type `tp` (int, float, str, bool)."""
    if tp is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise PipelineError(f"--{name.replace('_', '-')} takes true or false, not {text!r}")
    try:
        return tp(text)
    except ValueError:
        raise PipelineError(f"--{name.replace('_', '-')} takes a {tp.__name__}, not {text!r}") from None


def _split_argv(argv: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or arg == "--":
            raise PipelineError(f"unexpected argument {arg!r}: options are --field value")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(argv):
                raise PipelineError(f"--{key} needs a value")
            value = argv[i + 1]
            i += 1
        pairs[key.replace("-", "_")] = value
        i += 1
    return pairs


def parse_config(cls, argv: list[str] | None = None):
    """Build `cls` from its defaults, the chosen profile's preset and `--field value` overrides."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: --field value ... ; fields of {cls.__name__} (default):")
        for f in dataclasses.fields(cls):
            print(f"  --{f.name.replace('_', '-'):22s} {f.default!r}")
        raise SystemExit(0)
    pairs = _split_argv(argv)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(pairs) - known)
    if unknown:
        names = ", ".join("--" + u.replace("_", "-") for u in unknown)
        raise PipelineError(f"unknown option(s) {names} for {cls.__name__}: run with --help to list the fields")
    profile = resolve_profile(pairs.get("profile", "auto"))
    values = dict(PRESETS.get(cls, {}).get(profile, {}))
    values.update({k: _convert(k, v, hints[k]) for k, v in pairs.items()})
    values["profile"] = profile
    return cls(**values)


def config_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def print_config(stage: str, cfg) -> None:
    print(f"[{stage}] config ({cfg.profile} profile):")
    for k, v in config_dict(cfg).items():
        print(f"  {k:22s} {v!r}")
    sys.stdout.flush()
