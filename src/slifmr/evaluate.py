"""`python -m slifmr.evaluate ckpt_path=... dataset=...`: test a checkpoint.

The model is rebuilt from the hyper-parameters stored in the checkpoint, so the eval config
only has to name the dataset (the same one, with the same split settings, as in training).
"""

from __future__ import annotations

from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from slifmr.config import register_resolvers
from slifmr.callbacks.self_loop import SelfLoopCallback
from slifmr.runner import finish_loggers, instantiate_loggers, print_metrics

register_resolvers()


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.setup("test")
    ckpt = torch.load(cfg.ckpt_path, map_location="cpu", weights_only=False)
    # the checkpoint names its class (RecModel.on_save_checkpoint), so `model=` need not match
    target = ckpt.get("slifmr_model_class") or ckpt["hyper_parameters"].get("_target_") or cfg.model._target_
    model_cls = hydra.utils.get_class(target)
    model = model_cls.load_from_checkpoint(cfg.ckpt_path, map_location="cpu")
    if model.meta["n_items"] != datamodule.meta["n_items"] or model.meta["n_users"] != datamodule.meta["n_users"]:
        raise ValueError(
            f"checkpoint {cfg.ckpt_path} was trained on {model.meta['n_users']} users x {model.meta['n_items']} "
            f"items, but dataset '{datamodule.name}' has {datamodule.meta['n_users']} x {datamodule.meta['n_items']}"
        )
    loggers = instantiate_loggers(cfg.get("logger"), cfg)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers, callbacks=[SelfLoopCallback()])
    try:
        results = trainer.test(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, verbose=False)
        metrics = {k: float(v) for k, v in results[0].items()}
        print_metrics(metrics, prefix="test/")
        return metrics
    finally:
        finish_loggers(loggers)


@hydra.main(version_base="1.3", config_path="pkg://slifmr.conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
