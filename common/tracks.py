"""What an unlearning run of each track starts from, built once for stage 04 (ViT), stage 05 (ResNet) and the
tuner (common.tune): the original to unlearn, the method context (`Ctx`), the evaluation inputs and gold's cost.

  vit     class-wise (reference A): stage 03's ViT original, forget = stage 01's `forget` (a whole class); methods
          train on the inputs 03 trained with (resize + normalise, no augmentation)
  resnet  sample-wise (reference B): stage 02's ResNet-18 original, forget = `sample_forget`; methods train on the
          original's own inputs (augmentation and normalisation from its checkpoint)
`ctx.unseen` holds stage 01's test_unseen rows: the only not-trained-on images a method may look at.
"""
from __future__ import annotations

import copy
from types import SimpleNamespace

import torch

from common.data import resnet_transform, stage_dir, to_device, vit_transform
from common.io import PipelineError, load_json, load_torch
from common.models import RESNET, build_model, load_model
from common.unlearn import Ctx

TRACKS = {"vit": dict(stage="03_train_vit_refs", cmd="python 03_train_vit_refs.py (or make all)", forget="forget",
                      retain="retain"),
          "resnet": dict(stage="02_train_resnet", cmd="python 02_train_resnet.py (or make all)",
                         forget="sample_forget", retain="sample_retain")}


def load_track(track: str, cfg, device: str, data: dict, splits: dict) -> SimpleNamespace:
    """The original (on `device`, the model every method starts from), its checkpoint, the reference stage's
    metrics, the `Ctx` of the track and the evaluation transform. One-line errors name the stage to re-run."""
    spec = TRACKS[track]
    ref_dir = stage_dir(cfg.results, spec["stage"])
    refs = load_json(ref_dir / "metrics.json", f"stage {spec['stage'][:2]} metrics", spec["cmd"])
    if "gold" not in refs.get("models", {}):
        raise PipelineError(f"{spec['stage']} trained no gold model, so there is no budget or target: re-run "
                            f"{spec['cmd']} with --train-gold true")
    model, ckpt = load_model(ref_dir / "original.pt", device, spec["cmd"])
    on_device = {s: to_device(data[f"{s}_images"], data[f"{s}_labels"], device) for s in ("train", "test")}
    if track == "resnet":
        first = load_torch(ref_dir / "first_batch.pt", "forget batch", spec["cmd"])
        if not torch.equal(first["indices"], splits["sample_forget"]):
            raise PipelineError(f"{ref_dir / 'first_batch.pt'} does not match stage 01's sample_forget: re-run {spec['cmd']}")
        norm = ckpt["config"].get("norm", "cifar")
        augment = ckpt["config"].get("augment", True)  # the original's inputs: methods train on the same
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        model = model.to(memory_format=fmt)
        eval_tf = resnet_transform(False, cfg.channels_last, norm)
        train_tf = resnet_transform(augment, cfg.channels_last, norm)

        def fresh():
            return build_model(RESNET, **ckpt["model_args"]).to(device, memory_format=fmt)
    else:
        norm, augment = None, False
        eval_tf = train_tf = vit_transform(ckpt["model_args"]["img_size"])  # 03 trains without augmentation

        def fresh():  # a random-init ViT of the same shape (Bad Teacher's incompetent teacher)
            return build_model(ckpt["model_name"], **dict(ckpt["model_args"], pretrained=False, weights_file="")).to(device)
    unseen = splits["test_unseen"].to(on_device["test"][0].device)
    ctx = Ctx(track=track, images=on_device["train"][0], labels=on_device["train"][1], forget=splits[spec["forget"]],
              retain=splits[spec["retain"]], unseen=(on_device["test"][0][unseen], on_device["test"][1][unseen]),
              teacher=copy.deepcopy(model).eval().requires_grad_(False), fresh_model=fresh,
              num_classes=ckpt["model_args"]["num_classes"], train_transform=train_tf, eval_transform=eval_tf,
              cfg=cfg, device=device, gen=torch.Generator().manual_seed(cfg.seed))
    return SimpleNamespace(model=model, ckpt=ckpt, refs=refs, ctx=ctx, eval_transform=eval_tf, on_device=on_device,
                           gold_units=refs["models"]["gold"]["units"], ref_dir=ref_dir, ref_stage=spec["stage"],
                           ref_cmd=spec["cmd"], norm=norm, augment=augment)
