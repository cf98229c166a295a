"""Early stopping on a validation score: the best model state so far, and when to stop.

The epoch loops of SASRec (``model/sasrec.py``) and of the ranker (``reward/training.py``) share
it: after each validation they call :meth:`EarlyStopping.update`, stop once :attr:`~EarlyStopping.stop`
is set, and end with :meth:`EarlyStopping.finish`, which loads the kept state.
"""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch.nn as nn


class EarlyStopping:
    """A copy of the model state with the best validation score (higher is better) and the count
    of validations since; :attr:`stop` once ``patience`` validations in a row were no better."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best = -np.inf
        self.best_state = None
        self.bad = 0

    def update(self, model: nn.Module, score: float | None) -> bool:
        """Record the validation ``score`` of ``model``'s current state; returns whether the state
        is kept (its score beats every earlier one). ``score=None`` means there is nothing to
        validate on: the state is kept and ``best`` stays as it is, so training runs to its last
        epoch and ends with the last state."""
        if score is not None and not score > self.best:
            self.bad += 1
            return False
        if score is not None:
            self.best = score
        self.best_state = copy.deepcopy(model.state_dict())
        self.bad = 0
        return True

    @property
    def stop(self) -> bool:
        return self.bad >= self.patience

    def finish(self, model: nn.Module, records: list) -> pd.DataFrame:
        """Load the kept state into ``model`` and put it in eval mode; returns ``records`` (one
        dict per epoch) as the training history."""
        model.load_state_dict(self.best_state)
        model.eval()
        return pd.DataFrame(records)
