"""What a whole training run will cost, predicted from the epochs measured so far.

The prediction is the forecast of the value ``carbon/energy_kwh`` (and
``carbon/emissions_kg``) will have when training ends: what the tracker has measured so far
(totals restored from a checkpoint, or carried over from an earlier fit into the same run,
included) plus the mean of the epochs measured *in this process* times the epochs still to
run,

    predicted_total = totals + (measured / measured_epochs) x (total_epochs - epochs_done)

for energy, emissions and wall time alike. The epochs still to run come from the limit that
ends training first: the configured epochs, or (Lightning ``max_steps``, HF ``max_steps``) the
planned optimizer steps expressed in epochs, which may be fractional (``max_steps=6`` with 4
steps per epoch is 1.5 epochs), or the time left of Lightning's ``max_time``. With constant
power and equal epochs it is exact.

Limits (said in the docs too):
    - The first epoch often differs from the rest: data-loader workers starting, caches and
      compilation (``torch.compile``, XLA, cuDNN autotuning) warm up, and the time before the
      first epoch (model set-up) is part of its lap. Predicting from epoch 1 alone therefore
      tends to *over*-estimate; from more epochs (``N`` > 1) it improves.
    - Validation, checkpointing or evaluation that runs only every k epochs, learning-rate
      schedules that change the batch size, and dynamic sequence lengths make epochs unequal.
    - Early stopping ends the run before ``total_epochs``: the prediction is then an upper
      bound.
    - Work after the last epoch (a final test, saving the model) is not in any epoch and so
      not predicted.
    - Energy that is *estimated* (a TDP model, constant watts) is predicted with the same
      uncertainty as the estimate itself.

Example:
    >>> p = predict_run(tracker.totals, epochs_done=1, total_epochs=10)
    >>> print(p.line())
    predicted for 10 epochs (from 1): about 12 Wh, 1.2 g CO2eq, 5.2 min
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from carbon_callbacks import humanize
from carbon_callbacks.measurement import Measurement

ENERGY_KEY = "carbon/predicted_energy_kwh"
EMISSIONS_KEY = "carbon/predicted_emissions_kg"

# What ended the prediction's run, as `Prediction.limit` names it.
LIMITS = ("epochs", "max_epochs", "num_train_epochs", "max_steps", "max_time")


@dataclass(frozen=True)
class Prediction:
    """The predicted totals of a whole run.

    Args:
        energy_kwh: energy of the whole run (PUE included, as in `Measurement`), in kWh.
        emissions_kg: emissions of the whole run, in kg CO2eq.
        duration_s: wall time of the whole run, in seconds.
        epochs_done: epochs completed when predicting (restored ones included).
        total_epochs: the epochs the run will have when it ends (fractional when a step
            limit ends it inside an epoch).
        measured_epochs: the epochs measured in this process that the mean comes from.
        limit: what ends the run: ``"epochs"``, ``"max_epochs"``, ``"num_train_epochs"``,
            ``"max_steps"`` or ``"max_time"``.
        window: with a live provider that forecasts, what starting at the forecast's best
            window would have saved, in words (appended to `line`).
    """

    energy_kwh: float
    emissions_kg: float
    duration_s: float
    epochs_done: int
    total_epochs: float
    measured_epochs: int | None = None
    limit: str = "epochs"
    window: str | None = None

    def metrics(self) -> dict[str, float]:
        """``carbon/predicted_energy_kwh`` and ``carbon/predicted_emissions_kg``, to log."""
        return {ENERGY_KEY: self.energy_kwh, EMISSIONS_KEY: self.emissions_kg}

    def line(self) -> str:
        """One line to print, e.g. ``"predicted for 10 epochs (from 1): about 12 Wh, …"``.

        Two significant digits, in units a person reads (see `carbon_callbacks.humanize`).
        """
        total = humanize.number(self.total_epochs, 3)
        basis = str(self.epochs_done)
        if self.measured_epochs is not None and self.measured_epochs != self.epochs_done:
            basis = f"{self.epochs_done}, {self.measured_epochs} measured here"
        if self.limit in ("max_steps", "max_time"):
            basis += f"; {self.limit} ends training first"
        text = (
            f"predicted for {total} epochs (from {basis}): about "
            f"{humanize.energy(self.energy_kwh, 2)}, {humanize.emissions(self.emissions_kg, 2)}, "
            f"{humanize.duration(self.duration_s, 2)}"
        )
        return text if self.window is None else f"{text}; {self.window}"


def predict_run(
    done: Measurement,
    epochs_done: int,
    total_epochs: float,
    *,
    measured: Measurement | None = None,
    measured_epochs: int | None = None,
    limit: str = "epochs",
) -> Prediction:
    """Predict a whole run from its completed epochs (the model is in the module docstring).

    Args:
        done: the run's totals after `epochs_done` epochs (`Tracker.totals`; after a resume
            from a checkpoint, the totals carried over included).
        epochs_done: completed epochs (>= 1), restored ones included.
        total_epochs: epochs the run will have when it ends (Lightning ``max_epochs``, HF
            ``num_train_epochs``, Keras ``epochs``, or a step or time limit in epochs),
            >= `epochs_done`.
        measured: the epochs measured in this process (their sum); default: `done`.
        measured_epochs: how many epochs `measured` holds (>= 1); default: `epochs_done`.
        limit: what ends the run (one of `LIMITS`), said by `Prediction.line`.

    Raises:
        ValueError: `epochs_done` or `measured_epochs` < 1 or not whole, `total_epochs` not
            a finite number >= `epochs_done`, or an unknown `limit`.
        TypeError: `done` or `measured` is not a `Measurement`.

    Example:
        >>> predict_run(totals_after_2_epochs, epochs_done=2, total_epochs=20).energy_kwh
    """
    measured = done if measured is None else measured
    measured_epochs = epochs_done if measured_epochs is None else measured_epochs
    for m in (done, measured):
        if not isinstance(m, Measurement):
            raise TypeError(f"done and measured must be Measurements, got {type(m).__name__}")
    for name, value in (("epochs_done", epochs_done), ("measured_epochs", measured_epochs)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1 (no epoch to predict from), got {value}")
    if isinstance(total_epochs, bool) or not isinstance(total_epochs, (int, float)):
        raise ValueError(f"total_epochs must be a number, got {total_epochs!r}")
    if not math.isfinite(total_epochs) or total_epochs < epochs_done:
        raise ValueError(f"total_epochs ({total_epochs}) must be >= epochs_done ({epochs_done})")
    if limit not in LIMITS:
        raise ValueError(f"limit must be one of {', '.join(LIMITS)}; got {limit!r}")
    left = (total_epochs - epochs_done) / measured_epochs
    return Prediction(
        energy_kwh=done.energy_kwh + measured.energy_kwh * left,
        emissions_kg=done.emissions_kg + measured.emissions_kg * left,
        duration_s=done.duration_s + measured.duration_s * left,
        epochs_done=epochs_done,
        total_epochs=total_epochs,
        measured_epochs=measured_epochs,
        limit=limit,
    )
