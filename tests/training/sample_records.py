"""One run's evaluation records, shared by the tests of the records and of the training page."""

from __future__ import annotations

from crossent.training.records import EvalRecord

# step, tokens seen, train loss, val loss, val bits/byte, lr, elapsed s
ROWS = [
    (0, 0, 10.8, 10.83, 4.61, 0.0, 2.1),
    (50, 25_600, 6.91, 7.02, 3.05, 3e-4, 30.4),
    (100, 51_712, 5.47, 5.81, 2.52, 2.9e-4, 61.0),
    (150, 77_000, 4.62, 5.24, 2.27, 2.5e-4, 92.7),
    (200, 103_424, 3.95, 5.19, 2.25, 2.0e-4, 123.9),
    (250, 128_900, 3.31, 5.33, 2.31, 1.4e-4, 155.2),
    (300, 155_000, 2.70, 5.61, 2.43, 8e-5, 186.6),
]
RECORDS = [EvalRecord(*row) for row in ROWS]
BEST = min(range(len(ROWS)), key=lambda index: ROWS[index][3])  # the row of val loss 5.19
