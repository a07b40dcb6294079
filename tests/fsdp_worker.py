"""One rank of tests/test_fsdp.py, launched by torchrun: the preset's FSDP wrapping of GPTLightningModule, on CPU.

Lightning 2.6's FSDPStrategy refuses the CPU accelerator, so this wraps the module with torch's FSDP directly,
the way the strategy does (the whole LightningModule, one unit per transformer Block, use_orig_params=True,
configure_model before wrapping, configure_optimizers after), and compares every result with an unsharded copy
doing the same arithmetic on the global batch. Exits non-zero on any difference.
"""

from __future__ import annotations

import copy
import json
import sys
import types

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.distributed.fsdp.wrap import ModuleWrapPolicy

from gpt_lightning.model import Block
from gpt_lightning.train.module import GPTLightningModule

TOL = dict(rtol=1e-4, atol=1e-6)
CLIP = 1e-3


def clean(name: str) -> str:
    return name.replace("_fsdp_wrapped_module.", "")


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    hp = dict(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32, compile=False, learning_rate=1e-2)
    hp.update(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})  # architecture options (test_fsdp.py)
    module = GPTLightningModule(**hp)
    reference = copy.deepcopy(module)  # unsharded, on the global batch
    x = torch.randint(0, 64, (world * 2, 16), generator=torch.Generator().manual_seed(1))
    y = torch.roll(x, -1, dims=1)

    module.configure_model()
    root = FSDP(module, auto_wrap_policy=ModuleWrapPolicy({Block}), use_orig_params=True, device_id=torch.device("cpu"))
    module.trainer = types.SimpleNamespace(model=root, precision="32-true")  # what the module reads
    units = [m for m in root.modules() if isinstance(m, FSDP)]
    assert len(units) == 1 + hp["n_layer"], f"expected a root unit and one per Block, got {len(units)}"
    # the tie survives wrapping: wte and lm_head are one Parameter, held by the root unit (not a Block's)
    tied = module.model.transformer.wte.weight is module.model.lm_head.weight
    assert tied == module.model.config.tie_embeddings

    optimizer = module.configure_optimizers()["optimizer"]
    ref_optimizer = reference.configure_optimizers()["optimizer"]
    assert [len(g["params"]) for g in optimizer.param_groups] == [
        len(g["params"]) for g in ref_optimizer.param_groups
    ], "decay groups differ under FSDP: the flattened 1-D shards were taken for biases"

    _, loss = root(x[rank * 2 : rank * 2 + 2], y[rank * 2 : rank * 2 + 2])  # this rank's share
    loss.backward()
    _, ref_loss = reference.model(x, y)
    ref_loss.backward()

    module.configure_gradient_clipping(optimizer, CLIP, "norm")
    torch.nn.utils.clip_grad_norm_(reference.parameters(), CLIP)
    with FSDP.summon_full_params(root, with_grads=True):
        grads = {clean(n): p.grad.clone() for n, p in module.model.named_parameters()}
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads.values()]))
    torch.testing.assert_close(norm, torch.tensor(CLIP), **TOL)  # clipped by the norm over all shards
    for name, p in reference.model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, **TOL, msg=lambda m, name=name: f"grad {name}: {m}")

    optimizer.step()
    ref_optimizer.step()
    with FSDP.summon_full_params(root):
        for name, p in reference.model.named_parameters():
            got = {clean(n): q for n, q in module.model.named_parameters()}[name]
            torch.testing.assert_close(got, p, **TOL, msg=lambda m, name=name: f"param {name}: {m}")
    print(f"rank {rank}: FSDP OK", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
