"""What :func:`gpunn.fit` records: per-epoch cost, time, throughput, learning rate, validation."""

from dataclasses import asdict, dataclass, field


@dataclass
class History:
    """The record of one :func:`gpunn.fit` call; every list has one entry per epoch run.

    Attributes:
        epoch: epoch numbers, counting from 1.
        cost: mean training loss of the epoch (the mini-batch losses weighted by batch size,
            each taken before its update, as Keras reports it).
        seconds: cumulative training wall time at the end of each epoch (validation, callbacks
            and progress output excluded).
        samples_per_second: training samples of the epoch divided by its wall time.
        lr: learning rate of the epoch's last step.
        val_loss: mean loss on ``validation_data`` after the epoch (empty without it).
        val_accuracy: accuracy on ``validation_data`` (empty without it or for regression).
        step_cost: loss of every mini-batch, in order (only with ``record_steps=True``).
        skipped_steps: steps whose update was dropped for a non-finite loss or gradient
            (``on_nonfinite="skip"``), over all epochs.
        backend: name of the backend that trained.
        batch_size: rows per mini-batch.
        n_samples: training rows.
    """

    epoch: list = field(default_factory=list)
    cost: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    samples_per_second: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    step_cost: list = field(default_factory=list)
    skipped_steps: int = 0
    backend: str = ""
    batch_size: int = 0
    n_samples: int = 0

    def as_dict(self):
        """All fields as a dict of plain Python values (JSON-serializable)."""
        return asdict(self)

    def plot(self, path):
        """Write a PNG with two panels, cost vs epoch and cost vs seconds, to ``path``.

        Needs matplotlib (``pip install -e '.[plot]'``); the validation loss is drawn too when
        recorded.

        Args:
            path: file to write (PNG).
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as exc:
            raise ImportError("History.plot needs matplotlib: install the 'plot' extra, "
                              "pip install -e '.[plot]'") from exc
        if not self.epoch:
            raise ValueError("History.plot: expected at least one recorded epoch, got none")
        figure = Figure(figsize=(10, 4), layout="constrained")
        for axes, x, label in zip(figure.subplots(1, 2), (self.epoch, self.seconds),
                                  ("epoch", "training time (s)")):
            axes.plot(x, self.cost, marker=".", label="training cost")
            if self.val_loss:
                axes.plot(x, self.val_loss, marker=".", label="validation loss")
            axes.set_xlabel(label)
            axes.set_ylabel("cost")
            axes.set_yscale("log" if min(self.cost) > 0 else "linear")
            axes.grid(True, alpha=0.3)
            axes.legend()
        figure.suptitle(f"gpunn on {self.backend}: batch size {self.batch_size}, "
                        f"{self.n_samples} samples")
        figure.savefig(path, format="png", dpi=100)
