"""What :func:`gpunn.fit` records: per-epoch loss, time, throughput, learning rate, validation.

The one definition of the record's fields: checkpoints, resume, callbacks' ``logs``, the
progress lines, CSV rows and TensorBoard read the names from here (:meth:`History.lists`,
:meth:`History.per_epoch`, :meth:`History.logs`).
"""

import os
import warnings
from dataclasses import asdict, dataclass, field, fields

# Old field names -> today's (one word for the loss value: "loss", never "cost"). Checkpoints
# written before the rename hold the old names; History.from_dict reads them.
RENAMED = {"cost": "loss", "step_cost": "step_loss"}
# Fields added since checkpoints were first written, and the value older files mean.
ADDED = {"weight_sum": None}


def _per_epoch(optional=False):
    """A list field with one entry per epoch (``optional``: may stay empty, e.g. no
    validation data)."""
    return field(default_factory=list, metadata={"per": "epoch", "optional": optional})


@dataclass
class History:
    """The record of one :func:`gpunn.fit` call; every per-epoch list has one entry per epoch.

    Attributes:
        epoch: epoch numbers, counting from 1.
        loss: mean training loss of the epoch (the mini-batch losses weighted by batch size,
            each taken before its update, as Keras reports it). ``cost`` is its deprecated
            alias.
        seconds: cumulative training wall time at the end of each epoch (validation, callbacks
            and progress output excluded).
        samples_per_second: training samples of the epoch divided by its wall time.
        lr: learning rate of the epoch's last step.
        val_loss: mean loss on ``validation_data`` after the epoch (empty without it).
        val_accuracy: accuracy on ``validation_data`` (empty without it or for regression).
        step_loss: loss of every mini-batch, in order (only with ``record_steps=True``);
            ``step_cost`` is its deprecated alias.
        skipped_steps: steps whose update was dropped for a non-finite loss or gradient
            (``on_nonfinite="skip"``), over all epochs.
        backend: name of the backend that trained.
        batch_size: rows per global mini-batch (fit's batch_size times the ranks).
        n_samples: training rows.
        weight_sum: the sum of the training rows' weights (``sample_weight`` times
            ``class_weight``), None when unweighted: a resumed fit must weight alike.
    """

    epoch: list = _per_epoch()
    loss: list = _per_epoch()
    seconds: list = _per_epoch()
    samples_per_second: list = _per_epoch()
    lr: list = _per_epoch()
    val_loss: list = _per_epoch(optional=True)
    val_accuracy: list = _per_epoch(optional=True)
    step_loss: list = field(default_factory=list, metadata={"per": "step"})
    skipped_steps: int = 0
    backend: str = ""
    batch_size: int = 0
    n_samples: int = 0
    weight_sum: float | None = None

    @classmethod
    def lists(cls):
        """Names of the list fields (per epoch and per step), in order."""
        return tuple(f.name for f in fields(cls) if "per" in f.metadata)

    @classmethod
    def per_epoch(cls, optional=None):
        """Names of the per-epoch lists; ``optional`` True/False: only those that may (not)
        stay empty."""
        return tuple(f.name for f in fields(cls) if f.metadata.get("per") == "epoch" and
                     (optional is None or f.metadata["optional"] == optional))

    @classmethod
    def from_dict(cls, saved):
        """A History from :meth:`as_dict`'s output, old field names (``cost``) included."""
        return cls(**cls.upgrade(saved))

    @staticmethod
    def upgrade(saved):
        """``saved`` (an :meth:`as_dict` dict) with old field names replaced by today's and
        fields added since filled in (``weight_sum``: None, unweighted)."""
        return {**ADDED, **{RENAMED.get(key, key): value for key, value in saved.items()}}

    def as_dict(self):
        """All fields as a dict of plain Python values (JSON-serializable)."""
        return asdict(self)

    def logs(self):
        """The callbacks' ``logs`` of the last epoch recorded: every non-empty per-epoch list's
        last value but ``epoch`` and ``samples_per_second`` (``loss``, ``seconds``, ``lr``,
        ``val_loss``, ``val_accuracy``), ``epoch_seconds`` (this epoch's time; ``seconds`` is
        the cumulative one) and ``cost`` (deprecated alias of ``loss``)."""
        logs = {name: getattr(self, name)[-1] for name in self.per_epoch()
                if name not in ("epoch", "samples_per_second") and getattr(self, name)}
        logs["cost"] = logs["loss"]
        if self.seconds:  # the epoch's own time: ``seconds`` is cumulative
            logs["epoch_seconds"] = self.seconds[-1] - (self.seconds[-2] if
                                                        len(self.seconds) > 1 else 0.0)
        return logs

    @property
    def cost(self):
        """Deprecated alias of :attr:`loss`."""
        warnings.warn("History.cost is deprecated: use History.loss", DeprecationWarning,
                      stacklevel=2)
        return self.loss

    @property
    def step_cost(self):
        """Deprecated alias of :attr:`step_loss`."""
        warnings.warn("History.step_cost is deprecated: use History.step_loss",
                      DeprecationWarning, stacklevel=2)
        return self.step_loss

    def rows(self):
        """One dict per epoch: ``epoch``, ``loss``, ``seconds``, ``samples_per_second``,
        ``lr`` and, when recorded, ``val_loss`` and ``val_accuracy``."""
        columns = {name: getattr(self, name) for name in self.per_epoch()}
        columns = {k: v for k, v in columns.items() if len(v) == len(self.epoch) and v}
        return [dict(zip(columns, values)) for values in zip(*columns.values())]

    def to_csv(self, path):
        """Write :meth:`rows` as CSV (a header, then one row per epoch) to ``path``.

        Returns:
            ``path``.
        """
        import csv

        rows = self.rows()
        with open(path, "w", newline="") as file:
            writer = csv.DictWriter(file, list(rows[0]) if rows else ["epoch"])
            writer.writeheader()
            writer.writerows(rows)
        return path

    def to_dataframe(self):
        """:meth:`rows` as a pandas DataFrame indexed by epoch (needs pandas)."""
        try:
            import pandas
        except ImportError as exc:
            raise ImportError("History.to_dataframe needs pandas: install the 'pandas' "
                              "extra, pip install 'gpunn[pandas]'") from exc
        frame = pandas.DataFrame(self.rows())
        return frame.set_index("epoch") if len(frame) else frame

    def panels(self):
        """Names of the panels :meth:`plot` draws: loss by epoch and by time, accuracy (if
        recorded), learning rate."""
        return ["loss", "loss_vs_time"] + (["accuracy"] if self.val_accuracy else []) + ["lr"]

    def plot(self, path=None, ax=None, image_format=None):
        """Draw the training curves with matplotlib; write an image to ``path`` if given.

        Panels (:meth:`panels`): training loss and validation loss by epoch, the same by
        training time, validation accuracy by epoch (when recorded), learning rate by epoch.

        Args:
            path: image file to write (a path or a binary file object), or None.
            ax: None for a new figure with every panel; a matplotlib Axes (the loss by epoch
                only) or a sequence of Axes (the panels in order, as many as given).
            image_format: ``"png"``, ``"pdf"``, ``"svg"``, ... (what matplotlib writes); None:
                from a path's suffix, PNG without one or for a file object.

        Returns:
            The matplotlib Figure drawn on.
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as exc:
            raise ImportError("History.plot needs matplotlib: install the 'plot' extra, "
                              "pip install -e '.[plot]'") from exc
        if not self.epoch:
            raise ValueError("History.plot: expected at least one recorded epoch, got none")
        panels = self.panels()
        if ax is None:
            figure = Figure(figsize=(4.5 * len(panels), 4), layout="constrained")
            axes = list(figure.subplots(1, len(panels)))
            figure.suptitle(f"gpunn on {self.backend}: batch size {self.batch_size}, "
                            f"{self.n_samples} samples")
        else:
            axes = list(ax) if hasattr(ax, "__iter__") else [ax]
            figure = axes[0].figure
        for axes_i, panel in zip(axes, panels):
            self._draw(axes_i, panel)
        if path is not None:
            if image_format is None:
                suffix = (os.path.splitext(os.fspath(path))[1].lstrip(".")
                          if isinstance(path, (str, os.PathLike)) else "")
                image_format = suffix.lower() or "png"
            figure.savefig(path, format=image_format, dpi=100)
        return figure

    def _draw(self, axes, panel):
        time = panel == "loss_vs_time"
        x = self.seconds if time else self.epoch
        if panel in ("loss", "loss_vs_time"):
            axes.plot(x, self.loss, marker=".", label="training loss")
            if self.val_loss:
                axes.plot(x, self.val_loss, marker=".", label="validation loss")
            axes.set_ylabel("loss")
            axes.set_yscale("log" if min(self.loss) > 0 else "linear")
            axes.legend()
        elif panel == "accuracy":
            axes.plot(x, self.val_accuracy, marker=".", label="validation accuracy")
            axes.set_ylabel("accuracy")
        else:
            axes.plot(x, self.lr, marker=".", label="learning rate")
            axes.set_ylabel("learning rate")
        axes.set_xlabel("training time (s)" if time else "epoch")
        axes.grid(True, alpha=0.3)
