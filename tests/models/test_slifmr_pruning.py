"""Pruning is a training-time augmentation: evaluation and the self-loop see the whole graphs."""

import torch

from slifmr.data.datamodule import RecDataModule
from slifmr.models.slifmr import SLIFMR


def _setup(shared_data, tmp_path):
    dm = RecDataModule(name="tiny", path=str(shared_data / "ml-100k-kg-tiny"), kcore=0, prune_ratio=0.5,
                       cache_dir=str(tmp_path / "c"))
    dm.setup()
    torch.manual_seed(0)
    model = SLIFMR(dm.meta, embedding_dim=8)
    model.attach(dm.graphs)
    return dm, model


def _items_at_epochs_0_and_1(dm, model):
    with torch.no_grad():
        a = model.embeddings()[1]
        dm.graphs.set_epoch(1)
        return a, model.embeddings()[1]


def test_eval_embeddings_do_not_depend_on_the_pruning_sample(shared_data, tmp_path):
    dm, model = _setup(shared_data, tmp_path)
    model.eval()
    a, b = _items_at_epochs_0_and_1(dm, model)
    torch.testing.assert_close(a, b)
    items = model.item_representations()
    torch.testing.assert_close(items, b)


def test_training_embeddings_use_the_epoch_sample(shared_data, tmp_path):
    dm, model = _setup(shared_data, tmp_path)
    model.train()
    a, b = _items_at_epochs_0_and_1(dm, model)
    assert not torch.allclose(a, b)
    assert model.training  # item_representations restores the mode it found
    model.item_representations()
    assert model.training
