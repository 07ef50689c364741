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
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class Common:
    profile: str = "auto"  # smoke | cpu | paper | auto (= paper on CUDA, else cpu)
    seed: int = 42  # reference A's seed
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    results: str = "results"  # root of the artefact tree
    wandb: bool = False  # mirror log lines to Weights & Biases (off by default; honours WANDB_MODE=offline)
    # auto | bf16 | fp32: the compute precision of training steps (bf16 = autocast; weights and optimiser state
    # stay fp32). auto = bf16 where the hardware computes in bf16 natively, else fp32 (common.config.native_bf16).
    precision: str = "auto"

    @property
    def amp(self) -> bool:
        """bf16 autocast on? Only once the stage resolved `precision` (resolve_precision) for its device."""
        if self.precision not in ("bf16", "fp32"):
            raise PipelineError(f"precision {self.precision!r} is not resolved: call common.config.resolve_precision")
        return self.precision == "bf16"


@dataclass
class PrepareConfig(Common):
    source: str = "cifar10"  # cifar10 (torchvision) | kaggle (train.7z or train/ + trainLabels.csv)
    split_seed: int = 42  # the forget draws and membership sets of stage 01 (not --seed): the same for every training seed
    # the data's cut that must be the same rows in every tree (reported and tuning): kaggle's train/test split, the
    # per-class caps, the three test pools and the sample-wise row pool. Independent of the forget split and class.
    pool_seed: int = 42
    # "report": the problem the report scores. "tune": the tuning problem (results/tune/, common.tune): it forgets
    # class --tune-forget-class and, sample-wise, a set drawn from pool rows outside the reported forget set;
    # every pool and the data are the same rows as the reported problem's.
    problem: str = "report"
    tune_forget_class: int = 1  # the tuning problem's forgotten class (tune on class 1, report on class 0)
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
    width: int = 64  # layer1's channels: 64 = ResNet-18 (every profile but smoke, which runs the same code at 16)
    train_gold: bool = True  # also retrain on sample_retain (the reference for every unlearning number)
    noise_gold: bool = False  # also train `gold_2`: gold's recipe with training seed + 10000 (gold vs gold: the noise floor, the equivalence check)


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
    noise_gold: bool = False  # also train `gold_2`: gold's recipe with training seed + 10000 (gold vs gold: the noise floor, the equivalence check)


@dataclass
class UnlearnConfig(Common):
    """Fields shared by both unlearning drivers (04 ViT, 05 ResNet). Every method's own settings are added as
    fields `<method>_<setting>` from its file in common/methods/ (common.unlearn.with_method_settings), so
    `--<method>-<setting> value` overrides them and --help lists them."""
    methods: str = "all"  # "all" or comma-separated names of common.methods.METHODS
    # compute budget per method, as a fraction of gold's training cost in counted units (images forward + 2 x images
    # backward, common.unlearn; 0 = no limit). Wall time is measured (RTE) but decides nothing.
    budget: float = 0.1
    budgets: str = ""  # trade-off curve: e.g. "0.05,0.1,0.2,0.5,1" evaluates every method at each fraction too
    # BatchNorm mode of every literature method's gradient steps (gan and retain_only included): "train", as the
    # official codes of FT, GA, l1-sparse, RL, SalUn, SCRUB, NegGrad+ (MIA notebook) and Bad Teacher run; "eval"
    # (frozen statistics, as xcadet/deepunlearn's NegGrad+) is the option. The reproductions keep their reference's.
    bn: str = "train"
    # profile `paper`: also run the references' methods with no budget, as the references did (metrics
    # "reproduction"); the comparison table uses the budget. Comma-separated names ("" = none).
    reproduce: str = ""
    # "tuned": each method runs at the settings `make tune` chose for this profile and track (<tuned_dir>/<profile>
    # .json), where an entry is present and current (tuned for this method file, profile and data; a stale entry is
    # reported and not used); official defaults elsewhere. "official": the methods' official defaults only.
    # Settings given on the command line win over both.
    settings: str = "tuned"
    tuned_dir: str = "common/tuned"  # relative paths are relative to the repository root
    eval_batch_size: int = 256
    channels_last: bool = False


@dataclass
class ViTUnlearnConfig(UnlearnConfig):
    tsne_per_group: int = 320  # retain and forget train images per t-SNE panel (each; reference A: 320 + 320)
    # relearn time (common.probes): the same fixed fine-tune of every model on forget-class train rows
    relearn_rows: int = 32  # seeded sample of forget-class train rows
    relearn_retain_ratio: int = 9  # retain train rows per forget row: the class's natural share (10 %), so the
    # fine-tune does not tip the head toward the forget class (at 1:3 the curve swung 26-72 %; on forget rows alone
    # every model reached 100 % by predicting class 0 everywhere: measured on the real subset, seed 42)
    relearn_steps: int = 40  # SGD steps (momentum 0.9), identical for every model
    relearn_batch_size: int = 32
    relearn_every: int = 5  # score forget-class test_eval rows every this many steps (and at 0 and the end)
    relearn_lr: float = 0.0  # 0 = stage 03's training lr (the recipe that taught the original the class)


@dataclass
class ResNetUnlearnConfig(UnlearnConfig):
    pass


@dataclass
class TuneConfig(Common):
    """common.tune: Optuna studies on the tuning problem (results/tune/, stage 01 --problem tune)."""
    results: str = "results/tune"  # the tuning tree: its own 01-03 (tuning seed, tuning forget sets), the journal
    action: str = "work"  # create (studies + official defaults as trial 0) | work (run trials) | collect (write settings)
    tracks: str = "vit,resnet"
    methods: str = "all"
    trials: int = 12  # complete trials per study that count (the first `trials` by trial number)
    worker: int = 0  # this worker's index: its TPE seed is sampler_seed + worker
    sampler_seed: int = 0
    startup_trials: int = 0  # TPE's random start-up trials; 0 = round(trials / 3)
    storage: str = ""  # "" = Optuna journal file <results>/studies.journal; or postgresql://user@host/db (RDB)
    heartbeat_s: int = 60  # RDB storage: a running trial's heartbeat; a worker silent for grace_s is failed + retried
    grace_s: int = 180
    retain_rows: int = 400  # the objective's fixed, seeded retain subsample (reported forget rows excluded)
    forget_rows: int = 500  # at most this many forget rows in the objective (class-wise forget sets are large)
    budget: float = 0.1  # every trial's budget: fraction of the tuning gold's counted cost (the report's default)
    tuned_dir: str = "common/tuned"  # collect: writes <tuned_dir>/<profile>.json
    command: str = ""  # the command that filled the studies, recorded beside the chosen settings (make sets it)


@dataclass
class AttackConfig(Common):
    max_per_group: int = 0  # cap on members / non-members per half (0 = all)
    classifier: str = "hgb"  # attack model: hgb (histogram gradient boosting) | logreg | rf (random forest)


@dataclass
class ReportConfig(Common):
    seeds: str = ""  # training seeds whose trees <results>/seed-<s>/ to aggregate ("" = every seed-* tree found,
    # or <results> itself as a single tree when there is none)
    tracks: str = "vit resnet"  # the tracks this run made (the Makefile's TRACKS): the others' stages are not missing
    # the per-example audit over the trees (`make audit K=8`, common.audit_report): sample-wise track, >= 3 trees
    # of one split; its intervals resample the forget examples (audit_boot times), its floor relabels the models
    audit: bool = False
    audit_boot: int = 1000
    audit_permutations: int = 1000  # random within-tree swaps, used only past K = 14 (below, all 2^(K-1) enumerated)


# Profile presets: only the fields that differ from the dataclass defaults.
PRESETS: dict[type, dict[str, dict]] = {
    PrepareConfig: {
        # 200 sample-wise rows: the smoke ResNet trains and evaluates fewer (its evaluation passes are fp32)
        "smoke": dict(forget_size=32, sample_per_class=20),
        # ~800 train / 200 test images per class: the real 9k subset is not cut, full CIFAR-10 is capped to it.
        # ResNet track: 200 rows per class, a random 10 % of them forgotten (the literature's setting): few enough
        # rows for 02 to memorise them on 2 cores (see ResNetConfig's cpu comment), so unlearning is measurable.
        # cpu (sized for 2 cores without native bf16, issue 25): 100 test images per class (1,000: 100 unseen, 100
        # val, 800 eval; every model's evaluation pass is fp32, so test rows cost every model of both tracks), and
        # the ResNet track on 100 rows per class (1,000, a random 10 % = 100 forgotten). Was 250 test / 200 rows.
        "cpu": dict(max_train_per_class=850, max_test_per_class=100, sample_per_class=100, forget_fraction=0.1),
        "paper": dict(forget_size=64),  # reference B: the forget set is one batch of 64 random training images
    },
    ResNetConfig: {
        # width 16: 1/16 of ResNet-18's FLOPs, so the smoke ResNet stages, tuning trials and audit take seconds
        "smoke": dict(epochs=1, batch_size=32, optimizer="sgd", schedule="onecycle", lr=0.05, weight_decay=5e-4,
                      norm="cifar", width=16),
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
        # Issue 25 (2 cores without native bf16: ~36 img/s for a ResNet-18 step in fp32): 1,000 rows (100 per class),
        # 6 epochs, batch 32, one-cycle to lr 0.02: 6,000 images per model against 16,000. Screened at training seed
        # 44 (the seed whose gold underfit before; original only, fit = eval-mode accuracy on its own rows, val =
        # test_val; 2-core EPYC with AVX512-BF16, bf16): lr 0.05 batch 16: fit 55.8 % / val 37.0; lr 0.1 batch 32:
        # 37.8 / 27.0; lr 0.05 batch 32: ~58 % running train accuracy (stopped); Adam 2e-3: 74.6 / 47.0; Adam 1e-3:
        # 97.9 / 39.0; lr 0.01 batch 32: 97.3 / 39.0; lr 0.02 batch 32: 98.2 / 42.0 (chosen: the best val among
        # those that fit); batch 64, 8 epochs, lr 0.05: 77.6 / 34.0; lr 0.02: 100.0 / 37.0 (8,000 images). A high lr
        # is what kept the old recipe from fitting at some seeds. Then the 9-seed table (README, "The cpu recipe").
        "cpu": dict(epochs=6, batch_size=32, optimizer="sgd", schedule="onecycle", lr=0.02, weight_decay=5e-4,
                    label_smoothing=0.0, augment=False, norm="cifar"),
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
        # Issue 25: 4 epochs, not 10 (stage 03 trains 3 models; at fp32 on 2 cores ~374 img/s, 10 epochs were ~10 min).
        # From the sweep above, 3 epochs at lr 1e-3 gave 35.7 % and 10 gave 40.7 %: 4 keeps most of it (not re-swept).
        "cpu": dict(pretrained=False, img_size=32, epochs=4, lr=1e-3),
        "paper": dict(),  # reference A: pretrained, 224 px, 3 epochs, SGD lr 1e-4 momentum 0.9, batch 64
    },
    # Method settings live in each method's file (common/methods/<name>.py: SETTINGS and PRESETS).
    ViTUnlearnConfig: {
        "smoke": dict(tsne_per_group=30, budget=0.5, budgets="0.1,0.5", relearn_rows=8, relearn_steps=4,
                      relearn_batch_size=8, relearn_every=2),  # smoke golds are tiny: 0.1 buys ~2 steps
        "cpu": dict(),
        "paper": dict(reproduce="finetune,gradient_ascent,two_stage"),  # reference A ran them without a budget
    },
    ResNetUnlearnConfig: {
        # smoke: the curve's one point is the budgeted run itself (no extra evaluation: 13 fewer fp32 passes per
        # tree, half of the smoke stage 05); the re-run branches of the curve are smoke-tested by stage 04
        "smoke": dict(channels_last=True, budget=0.5, budgets="0.5"),
        "cpu": dict(channels_last=True),
        "paper": dict(channels_last=True, reproduce="gan_reference"),  # reference B ran it without a budget
    },
    AttackConfig: {"smoke": dict(), "cpu": dict(), "paper": dict()},
    TuneConfig: {"smoke": dict(retain_rows=100, forget_rows=100, budget=0.5), "cpu": dict(), "paper": dict()},
    ReportConfig: {"smoke": dict(audit_boot=100, audit_permutations=100), "cpu": dict(), "paper": dict()},
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


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux reports them (/proc/cpuinfo `flags`, or `Features` on Arm); empty elsewhere."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def native_bf16(device: str) -> tuple[bool, str]:
    """Does `device` compute in bf16 natively? The one place this is decided. Returns (answer, why).

    CUDA: torch.cuda.is_bf16_supported(including_emulation=False) (compute capability >= 8.0: Ampere and newer).
    x86 CPU: the instructions that compute in bf16, AVX512-BF16 or AMX-BF16 (oneDNN's bf16 kernels use them), in
    the CPU's flags (cpu_flags). oneDNN's own flag (torch.ops.mkldnn._is_mkldnn_bf16_supported) is not enough:
    it is true on any AVX512 CPU, where oneDNN converts to fp32 inside. Without them bf16 autocast is emulated:
    on a 2-core AVX2 EPYC (torch 2.14.1) a 1024^2 matmul ran at 1.0 GFLOP/s in bf16 against 153.6 in fp32; on a
    2-core EPYC with AVX512-BF16 at 345 in bf16 against 144 in fp32.
    Arm CPU: the BF16 extension (`bf16` in the flags), which is what oneDNN's flag checks there.
    Anything else (no flags to read): fp32. A timed probe would make the choice, and with it every result, depend
    on the machine's load; flags do not."""
    import platform

    import torch

    if device.startswith("cuda"):
        ok = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False))
        cc = torch.cuda.get_device_capability(torch.device(device)) if torch.cuda.is_available() else None
        return ok, f"CUDA compute capability {cc}: bf16 {'native' if ok else 'emulated or absent'} (>= 8.0 is native)"
    flags, machine = cpu_flags(), platform.machine().lower()
    if machine in ("x86_64", "amd64", "i386", "i686"):
        found = sorted(flags & {"avx512_bf16", "amx_bf16"})
        ok = bool(found)
        return ok, (f"x86 CPU, {torch.backends.cpu.get_cpu_capability()}, bf16 instructions: {', '.join(found) or 'none'}"
                    f" -> bf16 {'native' if ok else 'emulated'}")
    if machine in ("aarch64", "arm64"):
        ok = "bf16" in flags and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        return ok, f"Arm CPU, BF16 extension {'bf16' in flags} -> bf16 {'native' if ok else 'emulated'}"
    return False, f"{machine or 'unknown'} CPU: no bf16 flags to read -> fp32"


def resolve_precision(precision: str, device: str) -> str:
    """'bf16' or 'fp32' for `precision` (auto | bf16 | fp32) on `device`: auto = bf16 where native_bf16 says so.
    An explicit bf16 is honoured on any device (slow where emulated: that is the user's choice)."""
    if precision not in PRECISIONS:
        raise PipelineError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device)[0] else "fp32"


def resolve_runtime(cfg, quiet: bool = False) -> str:
    """Resolve the stage's device and, on it, its precision (in place: the manifest's config records the resolved
    value, `precision_requested` what was asked). Returns the device."""
    device = resolve_device(cfg.device)
    requested = getattr(cfg, "precision_requested", cfg.precision)
    cfg.precision = resolve_precision(requested, device)
    cfg.precision_requested = requested  # not a field: config_dict writes it beside the resolved value
    if not quiet:
        why = native_bf16(device)[1] if requested == "auto" else "asked for"
        print(f"[precision] {requested} -> {cfg.precision} on {device} ({why})", flush=True)
    return device


def precision_info(config: dict, device: str) -> dict:
    """The manifest's record of the precision: asked, resolved, and the hardware check that decided auto."""
    requested = config.get("precision_requested", config.get("precision", "auto"))
    resolved = resolve_precision(config.get("precision", "auto"), device)
    ok, why = native_bf16(device)
    return dict(requested=requested, resolved=resolved, native_bf16=ok, check=why)


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
    values = cls.preset(profile) if hasattr(cls, "preset") else dict(PRESETS.get(cls, {}).get(profile, {}))
    values.update({k: _convert(k, v, hints[k]) for k, v in pairs.items()})
    values["profile"] = profile
    cfg = cls(**values)
    cfg.cli_fields = frozenset(pairs)  # what the command line set (not a field): it wins over tuned settings too
    return cfg


def config_dict(cfg) -> dict:
    out = dataclasses.asdict(cfg)
    if hasattr(cfg, "precision_requested"):
        out["precision_requested"] = cfg.precision_requested
    return out


def print_config(stage: str, cfg) -> None:
    print(f"[{stage}] config ({cfg.profile} profile):")
    for k, v in config_dict(cfg).items():
        print(f"  {k:22s} {v!r}")
    sys.stdout.flush()
