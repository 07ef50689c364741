"""Boundary shrink (Chen et al., "Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the Decision
Space", CVPR 2023): for every forget image find its nearest wrong-class neighbour with one FGSM step on the frozen
original, take the class the original gives that neighbour, and fine-tune on the forget images with that label
(the decision boundary shrinks around them).

Official defaults: OPTML-Group/Unlearn-Saliency, Classification/unlearn/boundary_sh.py `boundary_shrink_iter` and
`FGSM_perturb`, unlearn/impl.py, arg_parser.py (the same harness as its SalUn, RL and l1-sparse): forget rows only;
SGD lr 0.01, momentum 0.9, weight decay 5e-4, 10 epochs, batch 256 (decreasing_lr 91,136: constant in 10 epochs),
train mode, the training inputs (its forget loader keeps the train transform: `augment` as_trained). Neighbour search
on a frozen copy of the original in eval mode (`test_model`, this harness's teacher): an untargeted FGSM step on the
CE of the TRUE label in pixel space [0, 1], x_adv = round(clamp(x + 0.1 sign(grad), 0, 1) x 255) / 255 (bound 0.1,
"hard coding in the paper"); the neighbour label = argmax of the original on x_adv, not masked (when the step does
not cross the boundary the true label is used, as there). Loss: CE of the model on the clean image with that label.
The authors' code (TY-LEE-KR/Boundary-Unlearning-Code, AllCNN) runs lr 1e-5, no weight decay, batch 64, no
augmentation: SEARCH_SPACE spans its lr.
Sample-wise: Unlearn-Saliency's main_random.py runs it on random forget sets too (its paper's random-forgetting
tables list BS), so it runs on both tracks.
Pixel space: the inputs reach the method normalised (and, on the ViT, resized); the normalisation is an affine map
per channel, read off the evaluation transform, so the step, clamp and rounding act on the [0, 1] pixels of the
image the network sees.
Cost per step: 3 units a row (the model) + 1 (the original on x) + 2 (its backward to the input) + 1 (the
original on x_adv) = 7 x batch units. Schedule: fixed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from common.methods._base import epoch_passes, forward

KIND = "literature"
SOURCE = "official defaults: OPTML-Group/Unlearn-Saliency Classification/unlearn/boundary_sh.py + impl.py + arg_parser.py"
SETTINGS = dict(augment="as_trained", lr=0.01, epochs=10, batch_size=256, momentum=0.9, weight_decay=5e-4, bound=0.1)
PRESETS = {"smoke": dict(epochs=1, batch_size=32)}
SEARCH_SPACE = dict(lr=("log", 1e-5, 1e-1), epochs=("int", 1, 10), bound=("float", 0.02, 0.3))
SCHEDULE = "fixed"


def units_per_step(s, ctx) -> int:
    return 7 * min(s.batch_size, len(ctx.forget))


def pixel_map(ctx) -> tuple[torch.Tensor, torch.Tensor]:
    """(offset, scale) per channel with network input = offset + scale x pixel, pixel in [0, 1]: the evaluation
    transform of an all-0 and an all-255 image (resizing keeps a constant image constant)."""
    c, h, w = ctx.images.shape[1:]
    z = ctx.eval_transform(torch.tensor([0, 255], dtype=torch.uint8, device=ctx.images.device).view(2, 1, 1, 1)
                           .expand(2, c, h, w).contiguous())
    lo, hi = z[0, :, 0, 0], z[1, :, 0, 0]
    return lo.view(1, -1, 1, 1), (hi - lo).view(1, -1, 1, 1)


def fgsm_neighbour(teacher, x: torch.Tensor, y: torch.Tensor, bound: float, offset, scale, ctx) -> torch.Tensor:
    """FGSM_perturb: one untargeted step of size `bound` on the CE of the true label, in pixel space, clamped to
    [0, 1] and rounded to 8 bits; returned as network input."""
    pixels = ((x - offset) / scale).detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(forward(teacher, offset + scale * pixels, ctx), y)
        grad, = torch.autograd.grad(loss, pixels)
    ctx.budget.charge_backward(len(x))  # the input gradient's backward through the frozen original
    adv = torch.round((pixels + bound * grad.sign()).clamp(0.0, 1.0) * 255) / 255
    return (offset + scale * adv).detach()


def neighbour_labels(ctx, x: torch.Tensor, y: torch.Tensor, offset, scale) -> torch.Tensor:
    """The class the frozen original gives each forget image's FGSM neighbour (the true class if none is crossed)."""
    x_adv = fgsm_neighbour(ctx.teacher, x, y, ctx.s.bound, offset, scale, ctx)
    with torch.no_grad():
        return forward(ctx.teacher, x_adv, ctx).argmax(dim=1)


def run(model, ctx) -> list[dict]:
    s = ctx.s
    offset, scale = pixel_map(ctx)
    opt = ctx.sgd(model.parameters())
    ctx.set_mode(model)

    def terms(batch):
        x, y = batch
        adv_y = neighbour_labels(ctx, x, y, offset, scale)
        return dict(loss=F.cross_entropy(forward(model, x, ctx), adv_y), crossed=(adv_y != y).float().mean())

    return epoch_passes(ctx, s.epochs, ctx.steps_per_pass(ctx.forget, s.batch_size),
                        lambda: ctx.loader(ctx.forget, s.batch_size), opt, terms)
