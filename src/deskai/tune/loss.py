"""Cross-entropy over a huge vocabulary without ever holding all the logits.

Gemma 3's vocabulary has 262,144 tokens: the logits of one 1,024-token step are 1 GiB of float32,
and their softmax and gradient as much again — most of a plain training step's time and memory.
Here the loss is computed ``chunk`` positions at a time, and only at positions that have a label
(prompt tokens are masked, so their logits are never computed at all). The gradient with respect
to the hidden states is computed in the same pass (as Liger's fused linear cross-entropy does),
so backward is a multiplication by a stored ``(N, hidden)`` tensor. The output projection is
frozen (LoRA never trains it), so no gradient for it is ever formed.
"""

from __future__ import annotations

import torch

from deskai.tune.template import IGNORE

DEFAULT_CHUNK = 256  # positions per chunk: 256 x 262,144 float32 = 256 MiB at a time


class _ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                chunk: int, softcap: float | None) -> torch.Tensor:
        n = hidden.shape[0]
        total = hidden.new_zeros((), dtype=torch.float32)
        grad = torch.empty_like(hidden) if hidden.requires_grad else None
        for start in range(0, n, chunk):
            h = hidden[start:start + chunk]
            t = targets[start:start + chunk]
            # in the weights' dtype (bf16 on a GPU: the tensor cores' rate, float32
            # accumulation), then the softmax in float32 whatever the base
            logits = (h @ weight.T).float()
            squash = None
            if softcap:
                squash = torch.tanh(logits / softcap)
                logits = squash * softcap
            lse = torch.logsumexp(logits, dim=-1)
            rows = torch.arange(t.shape[0], device=logits.device)
            total += (lse - logits[rows, t]).sum()
            if grad is not None:
                # d(loss)/d(logits) = softmax - onehot, computed in place over the logits buffer
                probs = logits.sub_(lse[:, None]).exp_()
                probs[rows, t] -= 1.0
                if squash is not None:
                    probs.mul_(1.0 - squash * squash)
                grad[start:start + chunk] = (probs.to(weight.dtype) @ weight).to(hidden.dtype)
        ctx.save_for_backward(grad if grad is not None else hidden.new_empty(0))
        ctx.n = n
        return total / n

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * (grad_output / ctx.n), None, None, None, None


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *,
                          chunk: int = DEFAULT_CHUNK,
                          softcap: float | None = None) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy of ``hidden @ weight.T`` against ``labels`` (IGNORE skipped).

    ``hidden`` is ``(..., d)`` and ``labels`` the matching ``(...)`` targets, already shifted.
    Returns the loss and the number of positions it averages over.
    """
    if weight.requires_grad:
        raise ValueError("chunked_cross_entropy expects a frozen output projection")
    flat_labels = labels.reshape(-1)
    keep = flat_labels != IGNORE
    selected = hidden.reshape(-1, hidden.shape[-1])[keep]
    count = int(keep.sum())
    if count == 0:
        return hidden.sum() * 0.0, 0
    loss = _ChunkedCrossEntropy.apply(selected, weight, flat_labels[keep], chunk, softcap)
    return loss, count
