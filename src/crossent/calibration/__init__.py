"""Calibration of a model's predictions on a text, and the temperature that fits it best.

* :mod:`~crossent.calibration.bins`: confidence bins, the reliability diagram and the expected
  calibration error, equal-width and equal-mass;
* :mod:`~crossent.calibration.temperature`: the temperature that minimises the cross-entropy,
  from sums on a fixed grid;
* :mod:`~crossent.calibration.meter`: the sums, added chunk by chunk and across ranks, and the
  :class:`CalibrationResult` they come to.

The per-chunk arithmetic that feeds the meter, on the logits while they are in memory, is in
:func:`crossent.scoring.calibration_sums`; ``crossent eval --calibration`` shows the result.
"""

from crossent.calibration.bins import BINS, FINE_BINS, ReliabilityBin, expected_calibration_error
from crossent.calibration.meter import UNIT, CalibrationMeter, CalibrationResult, Verdict
from crossent.calibration.temperature import (
    TEMPERATURES,
    TemperatureFit,
    TemperaturePoint,
    fit_temperature,
)

__all__ = [
    "BINS",
    "FINE_BINS",
    "TEMPERATURES",
    "UNIT",
    "CalibrationMeter",
    "CalibrationResult",
    "ReliabilityBin",
    "TemperatureFit",
    "TemperaturePoint",
    "Verdict",
    "expected_calibration_error",
    "fit_temperature",
]
