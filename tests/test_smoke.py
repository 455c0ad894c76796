import numpy as np

import anyloss


def test_mse_every_backend(xp):
    p = xp.asarray(np.array([1.0, 2.0, 3.0], dtype=np.float32))
    t = xp.asarray(np.array([1.0, 4.0, 0.0], dtype=np.float32))
    out = anyloss.mse_loss(p, t)
    assert xp.dtype_name(out) == "float32"
    np.testing.assert_allclose(xp.to_numpy(out), 13.0 / 3.0, rtol=1e-6)
