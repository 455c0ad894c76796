"""Write examples/clicks.csv: 300 rows of click predictions and 4-class logits (seeded).

Run:  python examples/make_sample.py
Then: anyloss eval examples/clicks.csv --loss binary_cross_entropy --input logit --target clicked

Columns: ``logit`` (a click model's logit), ``clicked`` (0/1), ``logit_0`` ..
``logit_3`` (a 4-class model's logits) and ``label`` (the class, 0-3).
"""

import csv
import pathlib

import numpy as np

ROWS = 300
rng = np.random.default_rng(2026)
clicked = (rng.random(ROWS) < 0.25).astype(int)
logit = rng.normal(loc=np.where(clicked == 1, 0.8, -1.5), scale=1.0)
label = rng.integers(0, 4, size=ROWS)
logits = rng.normal(size=(ROWS, 4)) + 1.5 * np.eye(4)[label]

path = pathlib.Path(__file__).with_name("clicks.csv")
with path.open("w", newline="") as f:
    out = csv.writer(f, lineterminator="\n")
    out.writerow(["logit", "clicked", *(f"logit_{j}" for j in range(4)), "label"])
    for i in range(ROWS):
        out.writerow([f"{logit[i]:.5f}", clicked[i], *(f"{v:.5f}" for v in logits[i]), label[i]])
print(f"wrote {path} ({ROWS} rows)")
