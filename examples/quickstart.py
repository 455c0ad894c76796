"""anyloss on plain NumPy: the 14 MLX losses, exact where naive formulas fail.

Run:  python examples/quickstart.py
"""

import numpy as np

import anyloss
from anyloss import losses  # drop-in for mlx.nn.losses

rng = np.random.default_rng(0)
logits = rng.normal(size=(8, 10)).astype(np.float32)
labels = rng.integers(0, 10, size=8)

print("cross_entropy (mean):", losses.cross_entropy(logits, labels, reduction="mean"))
print("  with label_smoothing=0.1:",
      losses.cross_entropy(logits, labels, label_smoothing=0.1, reduction="mean"))

# The spec's documented examples
x = np.array([0.105361, 0.223144, 1.20397, 0.916291], dtype=np.float32)
t = np.array([0, 0, 1, 1])
print("binary_cross_entropy (logits):", anyloss.binary_cross_entropy(x, t))
p = np.array([0.1, 0.1, 0.4, 0.4], dtype=np.float32)
print("binary_cross_entropy (probabilities):",
      anyloss.binary_cross_entropy(p, t, with_logits=False))

# Where a naive float32 transcription goes wrong, anyloss stays exact
confident = np.array([30.0], dtype=np.float32)
naive = (np.log1p(np.exp(confident)) - confident)[0]  # log(1 + e^x) - x * t
ours = anyloss.binary_cross_entropy(confident, [1])
print(f"BCE of logit 30, target 1: anyloss {ours:.4g} (naive float32: {naive:.4g}, exact: 9.358e-14)")
big = np.array([[1e20, 1e20]], dtype=np.float32)
print("cosine similarity of [1e20, 1e20] with itself:",
      anyloss.cosine_similarity_loss(big, big)[0])
print("log_cosh of an error of 1e-4:", anyloss.log_cosh_loss(np.float32([1e-4]), [0.0])[0],
      "(exact 5e-09)")
