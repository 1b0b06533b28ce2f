"""Gaussian diffusion over interaction rows (DiffRec-style), shared by DiffMM and DiffKG.

Both HKUDS releases (``HKUDS/DiffMM`` and ``HKUDS/DiffKG``, ``Model.py``: ``GaussianDiffusion``,
``Denoise``) diffuse a whole binary row -- a user's item-interaction row (DiffMM) or an entity's
KG-adjacency row (DiffKG) -- with the same schedule, denoiser and SNR-weighted x0-prediction loss.
This module is our own implementation of those pieces as pure functions plus two small modules:

- schedule: ``1 - alpha_bar_t`` linear from ``scale * min`` to ``scale * max`` over ``steps``,
  ``beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}`` (capped at 0.999), ``beta_0`` fixed to 1e-4;
- forward noising ``q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)``;
- loss: the denoiser predicts ``x_0``; ``mean_cols (x_0 - x̂_0)^2`` weighted by
  ``SNR(t-1) - SNR(t)`` (1 at ``t = 0``), ``SNR(t) = alpha_bar_t / (1 - alpha_bar_t)``;
- reverse step: the posterior mean ``mu(x_t, x̂_0) = c1_t x̂_0 + c2_t x_t`` (plus
  ``exp(log_var / 2) * noise`` when sampling with noise and ``t > 0``); sampling starts from
  ``x_0`` itself (``sampling_steps = 0``) or from ``q(x_{s-1} | x_0)`` and always walks all
  ``steps`` reverse steps, as the releases do.

Everything is batched over rows; the only Python loop is over the handful of timesteps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def diffusion_betas(steps: int, noise_scale: float, noise_min: float, noise_max: float,
                    beta_fixed: bool = True) -> Tensor:
    """(steps,) float64 betas of the releases' ``get_betas`` (linear ``1 - alpha_bar``)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if noise_scale <= 0:
        raise ValueError(f"noise_scale must be > 0, got {noise_scale}")
    if not 0.0 <= noise_min <= noise_max < 1.0 / noise_scale:
        raise ValueError(f"need 0 <= noise_min <= noise_max < 1/noise_scale, got {noise_min}, {noise_max}")
    one_minus_ab = torch.linspace(noise_scale * noise_min, noise_scale * noise_max, steps, dtype=torch.float64)
    alpha_bar = 1.0 - one_minus_ab
    betas = torch.empty(steps, dtype=torch.float64)
    betas[0] = 1.0 - alpha_bar[0]
    if steps > 1:
        betas[1:] = (1.0 - alpha_bar[1:] / alpha_bar[:-1]).clamp_max(0.999)
    if beta_fixed:
        betas[0] = 1e-4
    return betas


class DiffusionSchedule(nn.Module):
    """The schedule's constants as (float32) buffers, so they follow the model's device."""

    def __init__(self, steps: int, noise_scale: float, noise_min: float, noise_max: float):
        super().__init__()
        self.steps = int(steps)
        betas = diffusion_betas(steps, noise_scale, noise_min, noise_max)
        ab = torch.cumprod(1.0 - betas, 0)
        ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
        post_var = betas * (1.0 - ab_prev) / (1.0 - ab)
        # log of the posterior variance with its first entry replaced by the second (t = 0 has 0)
        post_logvar = torch.log(torch.cat([post_var[1:2], post_var[1:]])) if steps > 1 else torch.log(post_var)
        snr = ab / (1.0 - ab)  # in float64: SNR(0) ~ 1e4 loses digits in float32 arithmetic
        weight = torch.cat([torch.ones(1, dtype=torch.float64), snr[:-1] - snr[1:]])
        consts = {
            "alpha_bar": ab,
            "weight": weight,
            "sqrt_ab": ab.sqrt(),
            "sqrt_one_minus_ab": (1.0 - ab).sqrt(),
            "post_coef_x0": betas * ab_prev.sqrt() / (1.0 - ab),
            "post_coef_xt": (1.0 - ab_prev) * (1.0 - betas).sqrt() / (1.0 - ab),
            "post_logvar": post_logvar,
        }
        for k, v in consts.items():
            self.register_buffer(k, v.float(), persistent=False)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``sqrt(ab_t) x0 + sqrt(1 - ab_t) noise``; x0, noise (B, n), t (B,) int64."""
        return self.sqrt_ab[t].unsqueeze(1) * x0 + self.sqrt_one_minus_ab[t].unsqueeze(1) * noise

    def loss_weight(self, t: Tensor) -> Tensor:
        """(B,) ``SNR(t-1) - SNR(t)``, 1 where ``t == 0`` (tabulated in float64)."""
        return self.weight[t]

    def posterior_mean(self, x0_hat: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        return self.post_coef_x0[t].unsqueeze(1) * x0_hat + self.post_coef_xt[t].unsqueeze(1) * xt


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """(B, dim) sinusoidal embedding ``[cos(t f), sin(t f)]``, ``f_j = 10000^(-j / (dim // 2))``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    arg = t.float().unsqueeze(1) * freqs.unsqueeze(0)
    emb = torch.cat([torch.cos(arg), torch.sin(arg)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class Denoiser(nn.Module):
    """The releases' ``Denoise`` MLP: ``[x | W_t temb(t)] -> hidden ... -> n`` with tanh between
    layers (none on the output); optional L2 row normalisation and dropout of the input."""

    def __init__(self, n: int, hidden: Sequence[int] = (1000,), time_dim: int = 10, norm: bool = False,
                 dropout: float = 0.5):
        super().__init__()
        hidden = [int(h) for h in hidden]
        self.time_dim, self.norm = int(time_dim), bool(norm)
        self.time_layer = nn.Linear(self.time_dim, self.time_dim)
        dims_in = [n + self.time_dim, *hidden]
        dims_out = [*hidden[::-1], n]
        # in-layers: n + t -> h1 -> ... -> h_last ; out-layers: h_last -> ... -> n
        self.in_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims_in[:-1], dims_in[1:]))
        self.out_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims_out[:-1], dims_out[1:]))
        self.drop = nn.Dropout(dropout)
        for lin in [self.time_layer, *self.in_layers, *self.out_layers]:  # the releases' init
            fan_out, fan_in = lin.weight.shape
            nn.init.normal_(lin.weight, 0.0, math.sqrt(2.0 / (fan_in + fan_out)))
            nn.init.normal_(lin.bias, 0.0, 0.001)

    def forward(self, x: Tensor, t: Tensor, dropout: bool = True) -> Tensor:
        """x (B, n), t (B,) -> x̂_0 (B, n)."""
        emb = self.time_layer(timestep_embedding(t, self.time_dim))
        if self.norm:
            x = F.normalize(x, dim=-1)
        if dropout:
            x = self.drop(x)
        h = torch.cat([x, emb], dim=-1)
        for lin in self.in_layers:
            h = torch.tanh(lin(h))
        for j, lin in enumerate(self.out_layers):
            h = lin(h)
            if j < len(self.out_layers) - 1:
                h = torch.tanh(h)
        return h


def diffusion_loss(denoiser: Denoiser, schedule: DiffusionSchedule, x0: Tensor) -> tuple[Tensor, Tensor]:
    """One training draw: ``t ~ U{0..steps-1}``, ``x_t ~ q(x_t | x_0)``, ``x̂_0 = denoiser(x_t, t)``.

    Returns ``(per-row weighted MSE (B,), x̂_0 (B, n))``; the releases average the first over the
    batch and add a term computed from ``x̂_0`` (their ``gc`` / ``ukgc`` loss)."""
    t = torch.randint(0, schedule.steps, (x0.shape[0],), device=x0.device)
    xt = schedule.q_sample(x0, t, torch.randn_like(x0))
    x0_hat = denoiser(xt, t)
    mse = (x0 - x0_hat).pow(2).mean(dim=1)  # (B,)
    return schedule.loss_weight(t) * mse, x0_hat


@torch.no_grad()
def p_sample(denoiser: Denoiser, schedule: DiffusionSchedule, x0: Tensor, sampling_steps: int = 0,
             sampling_noise: bool = False) -> Tensor:
    """The releases' ``p_sample``: start at ``x_0`` (``sampling_steps = 0``) or at a draw of
    ``q(x_{s-1} | x_0)``, then apply all ``steps`` reverse steps ``t = steps-1, ..., 0`` (the
    posterior mean with the denoiser's ``x̂_0``; no dropout). x0 (B, n) -> (B, n)."""
    n_rows = x0.shape[0]
    if sampling_steps > 0:
        t = torch.full((n_rows,), sampling_steps - 1, dtype=torch.long, device=x0.device)
        x = schedule.q_sample(x0, t, torch.randn_like(x0))
    else:
        x = x0
    for step in reversed(range(schedule.steps)):
        t = torch.full((n_rows,), step, dtype=torch.long, device=x0.device)
        mean = schedule.posterior_mean(denoiser(x, t, dropout=False), x, t)
        if sampling_noise and step > 0:
            mean = mean + torch.exp(0.5 * schedule.post_logvar[t]).unsqueeze(1) * torch.randn_like(x)
        x = mean
    return x


def epoch_row_chunks(n_rows: int, n_batches: int, device: torch.device | str) -> list[Tensor]:
    """A random permutation of ``0..n_rows-1`` cut into ``n_batches`` near-equal chunks: each row is
    diffused once per epoch, spread over the epoch's training steps (one chunk per step)."""
    n_batches = max(1, min(int(n_batches), n_rows))
    return list(torch.randperm(n_rows, device=device).tensor_split(n_batches))
