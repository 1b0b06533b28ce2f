"""`python -m slifmr.evaluate ckpt_path=... dataset=...`: test a checkpoint.

The model is rebuilt from the hyper-parameters stored in the checkpoint, so the eval config
only has to name the dataset (the same one, with the same split settings, as in training).
"""

from __future__ import annotations

from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig

from slifmr.checkpoints import CLASS_KEY, AtomicCheckpointIO, CheckpointError, check_data, read_checkpoint, \
    stored_fingerprint
from slifmr.config import register_resolvers, upgrade_hparams
from slifmr.callbacks.self_loop import SelfLoopCallback
from slifmr.resume import CONFIG_KEY
from slifmr.runner import finish_loggers, instantiate_loggers, print_metrics, report_errors
from slifmr.warnings_filter import quiet_third_party

register_resolvers()


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    quiet_third_party()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    ckpt = read_checkpoint(cfg.ckpt_path)  # first: weights only, nothing in the file runs
    datamodule = hydra.utils.instantiate(cfg.dataset, _convert_="all")
    datamodule.setup("test")
    check_data(stored_fingerprint(ckpt), cfg.ckpt_path, datamodule.fingerprint)
    # the checkpoint names its class (RecModel.on_save_checkpoint), so `model=` need not match
    target = ckpt.get(CLASS_KEY) or ckpt["hyper_parameters"].get("_target_") or cfg.model._target_
    if not str(target).startswith("slifmr.") and target != cfg.model.get("_target_"):  # imports run code
        raise CheckpointError(f"names model class '{target}', which is not a slifmr model "
                              "(set model._target_ to it to load it anyway)", cfg.ckpt_path)
    try:
        model_cls = hydra.utils.get_class(target)
    except (ImportError, ValueError) as exc:
        raise CheckpointError(f"names model class '{target}', which cannot be imported: {exc}", cfg.ckpt_path) from exc
    try:
        hparams = ckpt.get("hyper_parameters") or {}
        upgraded = upgrade_hparams(hparams, ckpt.get(CONFIG_KEY))  # an old run's null prune_ratio etc.
        changed = {k: v for k, v in upgraded.items() if k not in hparams or hparams[k] != v}
        model = model_cls.load_from_checkpoint(cfg.ckpt_path, map_location="cpu", weights_only=True, **changed)
    except (KeyError, TypeError, RuntimeError) as exc:  # hyper-parameters or weights do not fit the class
        raise CheckpointError(f"cannot rebuild {target} from it: {type(exc).__name__}: {exc}", cfg.ckpt_path) from exc
    if model.meta["n_items"] != datamodule.meta["n_items"] or model.meta["n_users"] != datamodule.meta["n_users"]:
        raise CheckpointError(
            f"was trained on {model.meta['n_users']} users x {model.meta['n_items']} items, but dataset "
            f"'{datamodule.name}' has {datamodule.meta['n_users']} x {datamodule.meta['n_items']}", cfg.ckpt_path)
    loggers = instantiate_loggers(cfg.get("logger"), cfg)
    # the weights are loaded above and the self-loop graph is put back here, so trainer.test gets no
    # ckpt_path: with one, Lightning asks for every callback whose state the checkpoint holds
    model.attach(datamodule.graphs)
    SelfLoopCallback().restore_test_graph(ckpt, datamodule.graphs, model)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers, plugins=[AtomicCheckpointIO()])
    try:
        results = trainer.test(model, datamodule=datamodule, verbose=False)
        metrics = {k: float(v) for k, v in results[0].items()}
        print_metrics(metrics, prefix="test/")
        return metrics
    finally:
        finish_loggers(loggers)


@hydra.main(version_base="1.3", config_path="pkg://slifmr.conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with report_errors():
        evaluate(cfg)


if __name__ == "__main__":
    from slifmr.overrides import run_cli

    run_cli(main, "eval")
