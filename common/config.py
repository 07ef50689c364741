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
    split_seed: int = 42  # every split of stage 01 (not --seed): the same forget set for every training seed
    data_dir: str = "data"
    cache_dir: str = "data/cache"  # where train.7z is extracted (never into data_dir)
    test_fraction: float = 0.2  # kaggle only: reference B's seeded 80/20 split
    forget_class: int = 0  # class-wise forgetting (reference A): 0 = airplane
    forget_size: int = 128  # sample-wise forgetting (reference B): one batch
    forget_fraction: float = 0.0  # > 0 overrides forget_size, e.g. 0.1 = the literature's random 10 %
    sample_per_class: int = 0  # sample-wise track: train rows per class it uses (0 = every train row)
    unseen_fraction: float = 0.1  # share of test rows unlearning methods may look at (test_unseen), never scored
    val_fraction: float = 0.1  # share of test rows for hyper-parameter choice (test_val), never reported
    max_train_per_class: int = 0  # 0 = no cap
    max_test_per_class: int = 0


@dataclass
class ResNetConfig(Common):
    epochs: int = 10  # reference B: 10 epochs (it reached 84.81 % test on full CIFAR-10)
    batch_size: int = 64  # reference B
    eval_batch_size: int = 256  # 2-core CPU: 256 evaluates faster per image than 512
    optimizer: str = "adam"  # adam (reference B: Adam, default betas, no weight decay) | sgd (Nesterov momentum)
    schedule: str = "none"  # none (reference B: constant lr) | onecycle (per-batch one-cycle, cosine both ways)
    lr: float = 1e-3  # reference B's Adam lr; with onecycle the peak lr
    pct_start: float = 0.25  # onecycle: share of the steps spent warming the LR up to its peak
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0  # reference B: none
    label_smoothing: float = 0.0  # reference B: none
    norm: str = "reference_b"  # input normalisation: reference_b (std 0.2023, 0.1994, 0.2010) | cifar (true std)
    augment: bool = True  # random crop 32 (4 px padding) + horizontal flip, as reference B's transform
    channels_last: bool = True
    train_gold: bool = True  # also retrain on sample_retain (the reference for every unlearning number)
    noise_gold: bool = False  # also train `gold_2`: gold's recipe with training seed + 1 (the gold-vs-gold noise floor)


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
    noise_gold: bool = False  # also train `gold_2`: gold's recipe with training seed + 1 (the gold-vs-gold noise floor)


@dataclass
class UnlearnConfig(Common):
    """Fields shared by both unlearning drivers (04 ViT, 05 ResNet); per-method settings are `<method>_<name>`."""
    methods: str = "all"  # "all" or comma-separated names of common.methods.METHODS
    budget: float = 0.1  # compute budget per method: fraction of gold's training wall time (0 = no limit)
    grid: str = ""  # e.g. "lr=1e-3,1e-2": per method, pick the lr by the validation gap to gold (never test)
    epochs: int = 5  # passes for the epoch-based methods (reference A: 5)
    batch_size: int = 64
    eval_batch_size: int = 256
    lr: float = 1e-4  # SGD learning rate of every method without its own `<method>_lr` (0 = use this)
    momentum: float = 0.9
    weight_decay: float = 0.0
    channels_last: bool = False
    # per-method learning rates (0 = `lr`)
    finetune_lr: float = 0.0
    gradient_ascent_lr: float = 0.0
    two_stage_lr: float = 0.0
    # reference A's 2-stage
    tau: float = 1.15  # temperature of the logit similarity in l_con (reference A: 1.15)
    stage1_steps: int = 1  # SGD steps of stage 1 (KL to uniform on forget batches; reference A: ONE step)
    # GANs: `gan_reference` is reference B exactly (constants in common.methods); `gan` is the project's variant
    gan_steps: int = 40  # generator steps of `gan`
    gan_batch_size: int = 128  # forget / retain / real batch size of `gan`
    n_critic: int = 5  # critic steps per generator step (WGAN-GP)
    critic_warmup: int = 100  # `gan`: critic steps before the first generator step (cheap: no classifier pass)
    lambda_gp: float = 10.0
    # Weight of retain cross-entropy in `gan`'s generator loss (reference B: 0). Measured on the real subset (cpu
    # profile, 40 generator steps, forget / retain / test accuracy %): 0 -> 10.2 / 10.3 / 11.7 (collapse to chance),
    # 0.3 -> 50.8 / 55.2 / 53.5, 1 -> 57.8 / 60.7 / 58.7; original 64.1 / 64.3 / 61.4, gold 64.1 / 64.0 / 62.1.
    # (That sweep looked at test accuracy; a --grid run now picks on the validation rows instead.)
    lambda_retain: float = 1.0
    gan_lr: float = 1e-4  # `gan`: Adam on the whole classifier (the generator)
    gan_reference_lr: float = 1e-3  # reference B: Adam 1e-3 for generator and critic (a --grid may vary it)
    retain_only_lr: float = 1e-4  # the `gan` control: keep equal to gan_lr (its retain steps are gan's)
    lr_d: float = 1e-3  # `gan`: Adam on the critic
    critic_hidden: int = 64  # `gan`: width of the critic's two hidden layers
    # ---- literature methods (common/methods.py): fields below are theirs ----
    # `<method>_lr`: 0 = `lr`. The official codes' own learning rates (ResNet-18 on CIFAR-10) are noted per method;
    # they are not copied here because the two tracks' original models differ from theirs (pick with --grid).
    # NegGrad+ (Kurmanji et al., NeurIPS 2023; meghdadk/SCRUB: train_negrad in thirdparty/repdistiller/helper/
    # loops.py, settings in large_scale_ictest.ipynb / MIA_experiments.ipynb: SGD lr 0.01, 5-10 epochs)
    neggrad_plus_lr: float = 0.0
    neggrad_plus_beta: float = 0.9999  # weight of retain CE; forget CE gets 1 - beta (official large-scale: 0.9999)
    # Random labels, as SalUn's RL (OPTML-Group/Unlearn-Saliency Classification/unlearn/RL.py)
    random_label_lr: float = 0.0
    # False: per epoch a pass over forget (random wrong labels) then one over retain (RL.py's CIFAR-10 branch);
    # True: one shuffled pass over forget + retain (RL.py's CIFAR-100 branch)
    random_label_mixed: bool = False
    # SalUn (Fan et al., ICLR 2024; Unlearn-Saliency Classification/generate_mask.py + unlearn/RL.py; its README's
    # CIFAR-10 example: mask with_0.5.pt, SGD lr 0.013, 10 epochs)
    salun_lr: float = 0.0
    salun_fraction: float = 0.5  # share of all weights updated: those of largest |grad of forget CE| (README: 0.5)
    salun_mixed: bool = False  # as random_label_mixed, for SalUn's random-label passes
    # l1-sparse (Jia et al., NeurIPS 2023; OPTML-Group/Unlearn-Sparse unlearn/FT.py FT_l1, README: lr 0.01, 10 epochs)
    l1_sparse_lr: float = 0.0
    # l1 weight gamma at the first epoch (per weight, added to the batch-mean CE), decaying linearly to 0 over the
    # run. The official README leaves it as ${alpha}; 1e-4 is what the CIFAR-10 scripts built on that code run
    # (e.g. JingWu321/Scissorhands Classification/sh/main_0.2_cifar10.sh: --alpha 0.0001 --unlearn_lr 0.01).
    l1_sparse_alpha: float = 1e-4
    # SCRUB (Kurmanji et al., NeurIPS 2023; meghdadk/SCRUB large_scale_unlearning.ipynb, CIFAR-10 ResNet-18: SGD lr
    # 5e-4, momentum 0.9, weight decay 5e-4, 3 epochs)
    scrub_lr: float = 0.0
    scrub_msteps: int = 2  # epochs (the first ones) that start with a max-pass over forget (official: 2)
    scrub_temperature: float = 4.0  # distillation temperature T of KL(teacher || student) (official kd_T: 4)
    scrub_gamma: float = 0.99  # weight of retain CE in the min-step (official: 0.99)
    scrub_alpha: float = 0.001  # weight of retain KL to the teacher in the min-step (official: 0.001)
    scrub_forget_batch_size: int = 512  # forget batch of the max-pass (official forget loader: 512); 0 = batch_size
    # Bad Teacher (Chundawat et al., AAAI 2023; vikram2000b/bad-teaching-unlearning unlearn.py blindspot_unlearner and
    # CIFARSuper20_Rocket_Unlearn.ipynb: Adam lr 1e-4, batch 256, 1 epoch)
    bad_teacher_lr: float = 0.0
    bad_teacher_epochs: int = 1  # passes over forget + the retain subset (official: 1)
    bad_teacher_temperature: float = 1.0  # KL temperature (official KL_temperature: 1)
    bad_teacher_retain_fraction: float = 0.3  # seeded share of retain rows distilled from the original (official: 0.3)
    # SSD (Foster et al., AAAI 2024; if-loops/selective-synaptic-dampening src/ssd.py, forget_*_main.py)
    ssd_lr: float = 0.0  # unused: SSD takes no gradient step (kept for the uniform `<method>_lr` convention)
    # selection: dampen weights whose forget importance > alpha x all-rows importance (official CIFAR ResNet: 10,
    # i.e. selection_weighting 10 x model_size_scaler 1; its full-class ViT runs use scaler 0.5 -> 5, see PRESETS)
    ssd_alpha: float = 10.0
    ssd_lambda: float = 1.0  # dampening: weight x min(lambda x all-rows / forget importance, 1) (official: 1)
    # share of retain rows in the all-rows importance pass, seeded (1 = all of them, as the official code; lower
    # to save time: that pass costs about one epoch of forward + backward)
    ssd_retain_fraction: float = 1.0
    # ---- end of literature methods ----


@dataclass
class ViTUnlearnConfig(UnlearnConfig):
    tsne_per_group: int = 320  # retain and forget train images per t-SNE panel (each; reference A: 320 + 320)


@dataclass
class ResNetUnlearnConfig(UnlearnConfig):
    pass


@dataclass
class AttackConfig(Common):
    max_per_group: int = 0  # cap on members / non-members per half (0 = all)
    classifier: str = "hgb"  # attack model: hgb (histogram gradient boosting) | logreg | rf (random forest)


@dataclass
class ReportConfig(Common):
    seeds: str = ""  # training seeds whose trees <results>/seed-<s>/ to aggregate ("" = every seed-* tree found,
    # or <results> itself as a single tree when there is none)


# Profile presets: only the fields that differ from the dataclass defaults.
PRESETS: dict[type, dict[str, dict]] = {
    PrepareConfig: {
        "smoke": dict(forget_size=32),
        # ~800 train / 200 test images per class: the real 9k subset is not cut, full CIFAR-10 is capped to it.
        # ResNet track: 200 rows per class, a random 10 % of them forgotten (the literature's setting): few enough
        # rows for 02 to memorise them on 2 cores (see ResNetConfig's cpu comment), so unlearning is measurable.
        "cpu": dict(max_train_per_class=850, max_test_per_class=250, sample_per_class=200, forget_fraction=0.1),
        "paper": dict(forget_size=64),  # reference B: the forget set is one batch of 64 random training images
    },
    ResNetConfig: {
        "smoke": dict(epochs=1, optimizer="sgd", schedule="onecycle", lr=0.05, weight_decay=5e-4, norm="cifar"),
        # The project's cpu recipe (not reference B's: B's constant-lr Adam needs its 10 epochs, and its own code
        # took 1,015 s per model for 66.0 % on the real subset here): SGD + Nesterov, one-cycle to lr 0.05, batch 64
        # (43.1 % test after 2 epochs vs 33.3 % for batch 128 at lr 0.1). Chosen so that `original` measurably
        # memorises its forget set (issue: >= 10 points above gold, loss-attack AUC >= 0.60), on VALIDATION rows
        # (bench/memorisation_sweep.py, real subset, 250 rows per class, random 10 % forget, test_val rows):
        #   previous recipe (all 7.3k rows, 5 epochs, label smoothing 0.1, crop + flip): original = gold on the
        #     forget batch (64.1 vs 64.1 %), every attack at chance (AUC ~0.51);
        #   10 epochs, no smoothing, no augmentation: forget 100.0 % [100, 100] vs gold 50.0 % [44.0, 56.0],
        #     loss AUC forget-vs-val 0.908 [0.876, 0.938] vs gold 0.468 [0.411, 0.522]; val acc 55.5 vs 53.8 %;
        #     25-28 s per epoch and model (2 cores, ~95 img/s).
        # The margin is wide, so the cpu profile takes 200 rows per class and 8 epochs to fit 02 (with gold_2)
        # in ~8 min. Augmentation off: memorising the exact forget images is the point of this scenario.
        # Measured (real subset, seed 42): original forget 99.0 % [97.5, 100] vs gold 47.5 % [40.5, 54.0], loss-attack
        # forget AUC 0.888 vs 0.504. It gives up test accuracy: original 46.5 % (test_eval rows) against 61.4 % with
        # the previous recipe; 02 took 621 s for original + gold + gold_2 on these 2 cores.
        "cpu": dict(epochs=8, optimizer="sgd", schedule="onecycle", lr=0.05, weight_decay=5e-4, label_smoothing=0.0,
                    augment=False, norm="cifar"),
        "paper": dict(),  # reference B: Adam 1e-3, batch 64, 10 epochs, no wd / smoothing / schedule, B's constants
    },
    ViTRefsConfig: {
        "smoke": dict(pretrained=False, img_size=32, epochs=2, batch_size=32, lr=1e-2),
        # cpu: no weights can be downloaded here, so random init; 03 + 04 must fit in 10 min on 2 cores. Measured on
        # the 7.3k real subset (SGD momentum 0.9, batch 64, bf16, test acc after 3 / 10 epochs): 32 px trains at
        # ~5.5 s/epoch vs ~22 s at 64 px and is as accurate (lr 1e-2: 33.9 % vs 32.0 % at 3 epochs), so 32 px
        # (CIFAR's own size, no resize; 2x2 patches of 16 px). lr: 1e-4 (reference A) 33.4 / 36.1 %, 1e-3
        # 35.7 / 40.7 %, 1e-2 33.9 / 40.1 %, 3e-2 29.3 / 36.1 %; AdamW 1e-3 was worse (30.2 % at 3). From scratch
        # on 7.3k un-augmented images every setting plateaus near 40 % by ~10 epochs (1e-3 then overfits: 38.5 %
        # at 15), so 10 epochs at lr 1e-3 (10x reference A). Measured in the registry run (2 cores, real subset): 03
        # 360 s for original + gold + gold_2, 04 242 s for 13 methods at a budget of 11.1 s each.
        # Caveat: this sweep read the test split (before stage 01 carved `test_val`); a re-run should use test_val.
        "cpu": dict(pretrained=False, img_size=32, epochs=10, lr=1e-3),
        "paper": dict(),  # reference A: pretrained, 224 px, 3 epochs, SGD lr 1e-4 momentum 0.9, batch 64
    },
    ViTUnlearnConfig: {
        # ssd_alpha 5 in every ViT profile: SSD's official full-class runs scale its alpha (10) by 0.5 for a ViT
        # (model_size_scaler in if-loops/selective-synaptic-dampening src/forget_full_class_main.py); this track
        # forgets a full class with a ViT.
        "smoke": dict(epochs=1, batch_size=32, tsne_per_group=30, lr=1e-2, budget=0.0, gan_steps=2,
                      gan_batch_size=16, critic_warmup=5, n_critic=2, ssd_alpha=5.0),
        # lr = the cpu references' lr (10x reference A's, see ViTRefsConfig); reference A's 5 epochs, t-SNE 320 + 320.
        "cpu": dict(lr=1e-3, ssd_alpha=5.0),
        "paper": dict(ssd_alpha=5.0),  # reference A: 5 epochs, SGD lr 1e-4 momentum 0.9, batch 64, t-SNE 320 + 320
    },
    ResNetUnlearnConfig: {
        "smoke": dict(epochs=1, batch_size=32, lr=1e-2, budget=0.0, gan_steps=2, gan_batch_size=16,
                      critic_warmup=5, n_critic=2, channels_last=True),
        # SGD lr 1e-2 with weight decay 5e-4: the fine-tuning lr of SalUn's / SCRUB's ResNet-18 CIFAR-10 code.
        "cpu": dict(lr=1e-2, weight_decay=5e-4, channels_last=True),
        "paper": dict(lr=1e-2, weight_decay=5e-4, channels_last=True),
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
