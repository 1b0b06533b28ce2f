from types import SimpleNamespace

from slifmr.models.slifmr import SLIFMR

META = {"n_users": 3, "n_items": 4, "n_entities": 0, "n_relations": 0, "features": {}, "n_kg_relations": 1}


def _model(warmup: int) -> SLIFMR:
    return SLIFMR(META, embedding_dim=8, use_kg=False, use_mm=False, consistency={"warmup_epochs": warmup})


def test_consistency_ramp_is_linear_then_one():
    m = _model(4)
    seen = []
    for epoch in range(7):
        m._trainer = SimpleNamespace(current_epoch=epoch)
        seen.append(m.consistency_ramp())
    assert seen == [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0]


def test_no_warmup_is_full_weight():
    m = _model(0)
    m._trainer = SimpleNamespace(current_epoch=0)
    assert m.consistency_ramp() == 1.0
