"""AdamW parameter groups: which parameters get weight decay (chapter 01's exercise, the reference).

Weight decay pulls weights towards 0. That regularises the matrices that mix features (linear layers),
but not the parameters whose size carries meaning: norm gains (1 at init), biases, and embedding rows
(a rare token's row would shrink at every step while its gradient is almost always 0). GPT-3, Llama
and most recipes since exclude norms and biases; many also exclude embeddings (and with them a head tied
to the token embedding), which is the rule here, and the one `minigpt.train.make_optimizer` trains with.
(nanoGPT's simpler rule, "every matrix decays", decays the embeddings too.)
"""

from __future__ import annotations

import torch.nn as nn


def decay_split(model: nn.Module) -> tuple[list[str], list[str]]:
    """(names that get weight decay, names that do not), in the order of model.named_parameters().

    Decay: parameters of 2 or more dimensions that are not the weight of an nn.Embedding. No decay:
    biases, norm gains (1-D), embedding tables, and a head tied to an embedding (it is the same tensor,
    listed once, under the embedding's name).
    """
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and id(p) not in embeddings else no_decay).append(name)
    return decay, no_decay


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """The two AdamW groups of decay_split: [{"params": decayed, "weight_decay": weight_decay},
    {"params": the rest, "weight_decay": 0.0}]."""
    params = dict(model.named_parameters())
    decay, no_decay = decay_split(model)
    return [{"params": [params[n] for n in decay], "weight_decay": weight_decay},
            {"params": [params[n] for n in no_decay], "weight_decay": 0.0}]


def accumulate_gradients(model: nn.Module, x, y, micro_batches: int) -> None:
    """Leave in model's .grad the gradient of the mean loss over the whole batch (x, y), computed in
    `micro_batches` pieces along the batch dimension (torch.tensor_split: pieces may differ in size by one).

    The model's loss is a mean over its micro-batch's tokens, so each piece's loss is weighted by its share of
    the batch (b_i / B), not by 1 / micro_batches: the sum is then exactly the big batch's mean. Gradients
    already in .grad are cleared first.
    """
    model.zero_grad(set_to_none=True)
    B = x.shape[0]
    for xs, ys in zip(x.tensor_split(micro_batches), y.tensor_split(micro_batches)):
        _, loss = model(xs, ys)
        (loss * (xs.shape[0] / B)).backward()
