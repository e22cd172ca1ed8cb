"""Early stopping on the validation loss, shared by the network trainings (``cluster-nn``,
:mod:`pyexport.training.nn`; the EFG model, :mod:`pyexport.fit_efg`): the state of the lowest
validation loss so far is kept, and training stops after ``patience`` epochs without a lower one."""
import torch


def _copy_state(model: torch.nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


class EarlyStopping:
    """Track the best validation loss of ``model``, starting from its loss before training
    (epoch 0)."""

    def __init__(self, model: torch.nn.Module, initial_val_loss: float, patience: int):
        self.patience = patience
        self.best_val = initial_val_loss
        self.best_epoch = 0
        self.best_state = _copy_state(model)
        self.stale = 0

    def update(self, model: torch.nn.Module, val_loss: float, epoch: int) -> bool:
        """Record an epoch's validation loss (keeping the state if it is the lowest); True when
        training should stop."""
        if val_loss < self.best_val:
            self.best_val, self.best_epoch, self.stale = val_loss, epoch, 0
            self.best_state = _copy_state(model)
        else:
            self.stale += 1
        return self.stale >= self.patience

    def restore(self, model: torch.nn.Module) -> None:
        """Load the best state into ``model``."""
        model.load_state_dict(self.best_state)
