"""EarlyStopping: keeps the best state, counts validations without a better one, and without a
validation score keeps the last state."""
from __future__ import annotations

import torch
import torch.nn as nn

from adagrpo_core.model.early_stopping import EarlyStopping


def test_keeps_the_best_state_and_stops_after_patience():
    model, stopper = nn.Linear(2, 1), EarlyStopping(patience=2)
    records = []
    for epoch, score in enumerate([0.5, 0.7, 0.6, 0.7, 0.65]):
        with torch.no_grad():
            model.bias.fill_(epoch)
        records.append({"epoch": epoch, "best": stopper.update(model, score)})
        if stopper.stop:
            break
    assert [r["best"] for r in records] == [True, True, False, False]      # a tie is not better
    assert stopper.best == 0.7 and stopper.bad == 2
    history = stopper.finish(model, records)
    assert len(history) == 4 and float(model.bias.detach()) == 1.0 and not model.training


def test_without_a_score_the_last_state_is_kept_and_training_never_stops():
    model, stopper = nn.Linear(2, 1), EarlyStopping(patience=1)
    for epoch in range(3):
        with torch.no_grad():
            model.bias.fill_(epoch)
        assert stopper.update(model, None) and not stopper.stop
    stopper.finish(model, [])
    assert float(model.bias.detach()) == 2.0 and stopper.best == float("-inf")
