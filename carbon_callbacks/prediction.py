"""What a whole training run will cost, predicted from its first epochs.

The model is deliberately simple, so that its error is easy to reason about: every epoch is
assumed to cost what the completed epochs cost on average,

    predicted_total = (measured_so_far / epochs_done) x total_epochs

for energy, emissions and wall time alike (emissions follow energy because one run uses one
carbon intensity). With constant power and equal epochs it is exact.

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

from dataclasses import dataclass

from carbon_callbacks import humanize
from carbon_callbacks.measurement import Measurement

ENERGY_KEY = "carbon/predicted_energy_kwh"
EMISSIONS_KEY = "carbon/predicted_emissions_kg"


@dataclass(frozen=True)
class Prediction:
    """The predicted totals of a whole run.

    Args:
        energy_kwh: energy of the whole run (PUE included, as in `Measurement`), in kWh.
        emissions_kg: emissions of the whole run, in kg CO2eq.
        duration_s: wall time of the whole run, in seconds.
        epochs_done: how many completed epochs the prediction is based on.
        total_epochs: the number of epochs the run is configured for.
    """

    energy_kwh: float
    emissions_kg: float
    duration_s: float
    epochs_done: int
    total_epochs: int

    def metrics(self) -> dict[str, float]:
        """``carbon/predicted_energy_kwh`` and ``carbon/predicted_emissions_kg``, to log."""
        return {ENERGY_KEY: self.energy_kwh, EMISSIONS_KEY: self.emissions_kg}

    def line(self) -> str:
        """One line to print, e.g. ``"predicted for 10 epochs (from 1): about 12 Wh, …"``.

        Two significant digits, in units a person reads (see `carbon_callbacks.humanize`).
        """
        return (
            f"predicted for {self.total_epochs} epochs (from {self.epochs_done}): about "
            f"{humanize.energy(self.energy_kwh, 2)}, {humanize.emissions(self.emissions_kg, 2)}, "
            f"{humanize.duration(self.duration_s, 2)}"
        )


def predict_run(done: Measurement, epochs_done: int, total_epochs: int) -> Prediction:
    """Predict a whole run from its completed epochs (the model is in the module docstring).

    Args:
        done: the run's totals after `epochs_done` epochs (`Tracker.totals`; after a resume
            from a checkpoint, the totals carried over included).
        epochs_done: completed epochs in `done` (>= 1).
        total_epochs: epochs the run is configured for (Lightning ``max_epochs``, HF
            ``num_train_epochs``, Keras ``epochs``), >= `epochs_done`.

    Raises:
        ValueError: `epochs_done` < 1, `total_epochs` < `epochs_done`, or not whole numbers.
        TypeError: `done` is not a `Measurement`.

    Example:
        >>> predict_run(totals_after_2_epochs, epochs_done=2, total_epochs=20).energy_kwh
    """
    if not isinstance(done, Measurement):
        raise TypeError(f"done must be a Measurement, got {type(done).__name__}")
    for name, value in (("epochs_done", epochs_done), ("total_epochs", total_epochs)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
    if epochs_done < 1:
        raise ValueError(f"epochs_done must be >= 1 (no epoch to predict from), got {epochs_done}")
    if total_epochs < epochs_done:
        raise ValueError(f"total_epochs ({total_epochs}) must be >= epochs_done ({epochs_done})")
    scale = total_epochs / epochs_done
    return Prediction(
        energy_kwh=done.energy_kwh * scale,
        emissions_kg=done.emissions_kg * scale,
        duration_s=done.duration_s * scale,
        epochs_done=epochs_done,
        total_epochs=total_epochs,
    )
