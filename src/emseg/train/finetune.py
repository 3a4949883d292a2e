"""Fine-tuning a pretrained model (``TrainConfig.init``): which parameters train (``freeze``), the
learning rate of the loaded ones (``init_lr_scale``), and BatchNorm statistics re-estimated on the
new data before the first step (``adabn_batches``, AdaBN: Li et al., "Revisiting batch
normalization for practical domain adaptation", 2016).

``freeze``: ``none``; ``encoder`` (the encoder and the bottleneck keep their weights: the features
of the pretrained model, a new decoder learns to use them); ``all_but_head`` (only the last 1x1
convolution trains, as Mekuč et al. 2020 fine-tune). The BatchNorm layers of frozen parts keep
their statistics too (they run in eval mode while the rest trains): the statistics the model was
trained with, or those AdaBN estimated on the new data.
"""

from __future__ import annotations

__all__ = ["FREEZE", "frozen_prefixes", "freeze_parameters", "set_train_mode", "param_groups",
           "adapt_batchnorm"]

FREEZE = ("none", "encoder", "all_but_head")
_PARTS = {"none": (), "encoder": ("encoder.", "pools.", "bottleneck."),
          "all_but_head": ("encoder.", "pools.", "bottleneck.", "upsamplers.", "decoder.")}


def frozen_prefixes(freeze) -> tuple:
    """The parameter-name prefixes of the U-Net parts ``freeze`` keeps fixed.

    Examples
    --------
    >>> frozen_prefixes("encoder")
    ('encoder.', 'pools.', 'bottleneck.')
    """
    if freeze not in FREEZE:
        raise ValueError(f"freeze must be one of {FREEZE}; got {freeze!r}")
    return _PARTS[freeze]


def freeze_parameters(model, freeze) -> int:
    """Make the parameters of the frozen parts untrainable (``requires_grad`` False); how many tensors."""
    prefixes = frozen_prefixes(freeze)
    n = 0
    for name, p in model.named_parameters():
        if name.startswith(prefixes):
            p.requires_grad_(False)
            n += 1
    return n


def set_train_mode(model, freeze="none"):
    """``model.train()``, with the BatchNorm layers of the frozen parts in eval mode (their statistics kept)."""
    import torch

    model.train()
    prefixes = frozen_prefixes(freeze)
    if prefixes:
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and (name + ".").startswith(prefixes):
                m.eval()
    return model


def param_groups(model, pretrained, lr, init_lr_scale=1.0) -> list:
    """AdamW parameter groups: the trainable tensors loaded from ``init`` (names in ``pretrained``)
    at ``lr * init_lr_scale``, the others (new ones: a new head) at ``lr``; empty groups left out. With
    ``init_lr_scale`` 1, one group in the model's order (the optimizer state of runs made before this option)."""
    if init_lr_scale == 1.0:
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr}] if params else []
    loaded, new = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (loaded if name in pretrained else new).append(p)
    groups = [{"params": new, "lr": lr}, {"params": loaded, "lr": lr * init_lr_scale}]
    return [g for g in groups if g["params"]]


def adapt_batchnorm(model, batches) -> int:
    """Re-estimate every BatchNorm layer's running statistics on ``batches`` (input tensors), AdaBN.

    The statistics are reset and replaced by their plain average over the batches (momentum None
    while they run); the weights do not change. Returns the number of BatchNorm layers.
    """
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    was_training, momenta = model.training, [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)
    return len(norms)
