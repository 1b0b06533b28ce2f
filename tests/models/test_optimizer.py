"""The models' Adam: fused where torch has the kernel, the same update as the default Adam."""

from __future__ import annotations

import torch

from slifmr.models.base import adam
from slifmr.models.mf import MF

META = {"n_users": 5, "n_items": 7, "n_entities": 7, "n_relations": 0, "features": {}}


def test_models_step_with_fused_adam_and_match_the_default_update():
    torch.manual_seed(0)
    model = MF(META, embedding_dim=8, lr=0.05)
    model.weight_decay = 1e-3  # exercised too (RecModel's L2 through Adam)
    opt = model.configure_optimizers()
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["fused"] is True
    ref_params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    ref = torch.optim.Adam(ref_params, lr=0.05, weight_decay=1e-3)  # torch's default (unfused) Adam
    for _ in range(5):
        grads = [torch.randn_like(p) for p in ref_params]
        for p, q, g in zip(model.parameters(), ref_params, grads):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    for p, q in zip(model.parameters(), ref_params):
        assert torch.allclose(p, q, atol=1e-6, rtol=1e-5)


def test_adam_falls_back_where_no_fused_kernel_exists():
    assert adam([torch.zeros(3, requires_grad=True)], lr=0.1).defaults["fused"] is True
    meta = [torch.nn.Parameter(torch.zeros(3, device="meta"))]
    assert not adam(meta, lr=0.1).defaults["fused"]
