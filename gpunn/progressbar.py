"""A per-step progress bar for :func:`gpunn.fit` that works in terminals and notebooks."""

import sys

from tqdm.auto import tqdm

from gpunn._checks import check_bool
from gpunn.callbacks import Callback


class ProgressBar(Callback):
    """One ``tqdm.auto`` bar per epoch, advanced every step, with the running mean loss.

    ``tqdm.auto`` draws a widget in Jupyter (with ipywidgets installed) and text elsewhere. The
    bar needs each step's loss on the host: a device read per step (see
    :mod:`gpunn.callbacks`); ``fit(verbose=1)`` shows a per-epoch bar without that cost.
    In data-parallel training rank 0 shows it.

    Args:
        leave: keep each epoch's finished bar on screen (False: only the current one).
        file: where a text bar goes (default ``sys.stderr``).
    """

    def __init__(self, leave=True, file=None):
        self.leave, self.file = check_bool("leave", leave), file
        self.bar, self._sum, self._rows = None, 0.0, 0

    def on_epoch_begin(self, epoch, logs=None):
        if (self.params or {}).get("rank", 0) != 0:
            return
        epochs = self.params["epochs"]
        self.bar = tqdm(total=self.params["steps"], desc=f"epoch {epoch}/{epochs}",
                        unit="step", leave=self.leave,
                        file=sys.stderr if self.file is None else self.file)
        self._sum, self._rows = 0.0, 0

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is None:
            return
        if logs.get("applied", True):
            self._sum += logs["loss"] * logs["size"]
            self._rows += logs["size"]
        self.bar.update(1)
        if self._rows:
            self.bar.set_postfix(loss=f"{self._sum / self._rows:.4g}", refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is None:
            return
        shown = {key: f"{logs[key]:.4g}" for key in ("loss", "val_loss", "val_accuracy")
                 if key in logs}
        self.bar.set_postfix(shown, refresh=False)
        self.bar.close()
        self.bar = None

    def on_train_end(self, logs=None):
        if self.bar is not None:  # stopped mid-epoch
            self.bar.close()
            self.bar = None
