"""Every loss within a few ulp of the true value, on every backend.

For each (loss, regime) of ``tests/accuracy_cases.py`` (seeded float32 inputs,
ordinary and adversarial) the result of ``anyloss.<loss>`` is compared with an
mpmath reference computed from the same float32 values, and the worst error is
measured in ulp of the float32 true value (see ``accuracy_cases.ulp_error``).

Bounds:

* NumPy, PyTorch and Dask (which compute in float64 where it matters): at most
  4 ulp in every regime whose true value is a normal float32; where it is not
  (underflow), a correctly signed result below ``2**-122``.
* JAX (float32: ``jax_enable_x64`` off) and MLX (float32 only): 4 ulp too,
  eagerly and under ``jax.jit`` / ``mx.compile``, where the losses that
  cancel compute their values in float32 double words
  (``anyloss._compensated``, ``anyloss._compensated_exp_log``). ``BOUNDS``
  below states the bound per regime and backend next to the worst value
  measured (eager or compiled), so that a regression shows against the
  measurement, not only against 4.

The bounds above are those of the CPU. On another device (``ANYLOSS_TEST_DEVICE``
for PyTorch, ``JAX_PLATFORMS`` for JAX, MLX's default device) a backend's
bounds are those of ``DEVICE_BOUNDS[(backend, device)]`` where it names the
regime: XLA's GPU reductions and transcendentals are not its CPU ones.

A case marked ``xfail`` misses its bound today; its reason says where the bits
are lost. Remove the mark once ``src/`` is fixed (the marks are strict).
Dask is measured with NumPy's RuntimeWarnings ignored at compute time; that
those warnings leak at all is asserted apart, in
``test_dask_compute_is_warning_free``.
"""

from __future__ import annotations

import math
import warnings

import accuracy_cases as A
import numpy as np
import pytest
from backends import DEVICE, make, selected

BACKENDS = ("numpy", "torch", "dask", "jax", "mlx")
FLOAT32_BACKENDS = ("jax", "mlx")
NUMPY_BOUND = 4.0

# Worst ulp of anyloss on (JAX float32, MLX CPU) per regime, eager or compiled;
# the comment is the value measured (jax 0.10.2, mlx 0.32.4, Linux x86-64 CPU).
BOUNDS: dict[str, tuple[float, float]] = {
    "binary_cross_entropy-ordinary": (4, 4),  # 1.87, 0.942
    "binary_cross_entropy-confident": (4, 4),  # 0.736, 0.736 (MLX was 42: its exp)
    "binary_cross_entropy-wrong": (4, 4),  # 0.00185, 0.00185
    "binary_cross_entropy-huge": (4, 4),  # 0, 0
    "binary_cross_entropy-soft_targets": (4, 4),  # 2.28, 2.28
    "binary_cross_entropy-probs": (4, 4),  # 0.911, 0.672
    "binary_cross_entropy-mean_1e5": (4, 4),  # 0.772, 0.228
    "cross_entropy-ordinary": (4, 4),  # 0.992, 0.663
    "cross_entropy-confident": (4, 4),  # 1.35, 0.522 (MLX was 21.6: its exp)
    "cross_entropy-leading": (4, 4),  # 1.77, 0.836
    "cross_entropy-offset_1e4": (4, 4),  # 0.616, 0.616
    "cross_entropy-offset_1e6": (4, 4),  # 2.25, 0.753
    "cross_entropy-equal_1e20": (4, 4),  # 0.134, 0.134
    "cross_entropy-many_classes": (4, 4),  # 0.745, 0.674
    "cross_entropy-probs": (4, 4),  # 1.59, 1.59
    "cross_entropy-probs_zero_inf": (4, 4),  # 1.37, 1.37
    "cross_entropy-smoothing": (4, 4),  # 1.41, 1.19
    "cross_entropy-mean_1e5": (4, 4),  # 0.173, 0.173
    "nll_loss-ordinary": (4, 4),  # 0, 0
    "nll_loss-magnitudes": (4, 4),  # 0, 0
    "nll_loss-mean_1e5": (4, 4),  # 0.944, 0.0556
    "hinge_loss-ordinary": (4, 4),  # 0.5, 0.5
    "hinge_loss-threshold": (4, 4),  # 0, 0
    "hinge_loss-magnitudes": (4, 4),  # 0.491, 0.491
    "hinge_loss-sum_1e5": (4, 4),  # 0.462, 0.462
    "l1_loss-ordinary": (4, 4),  # 0.5, 0.5
    "l1_loss-near_equal": (4, 4),  # 0, 0
    "l1_loss-mixed_1e20": (4, 4),  # 3e-12, 3e-12
    "l1_loss-tiny_1e-20": (4, 4),  # 0.5, 0.5
    "mse_loss-ordinary": (4, 4),  # 1.65, 1.65
    "mse_loss-near_equal": (4, 4),  # 0.5, 0.5
    "mse_loss-mixed_1e18": (4, 4),  # 0.483, 0.483
    "mse_loss-tiny_1e-18": (4, 4),  # 1.62, 1.62
    "l1_loss-mean_1e6": (4, 4),  # 0.0765, 0.0765
    "mse_loss-mean_1e5": (4, 4),  # 0.255, 0.255
    "smooth_l1_loss-ordinary": (4, 4),  # 1, 1
    "smooth_l1_loss-threshold": (4, 4),  # 1, 1
    "smooth_l1_loss-threshold_0.75": (4, 4),  # 1.75, 1
    "smooth_l1_loss-tiny": (4, 4),  # 0.496, 0.496
    "smooth_l1_loss-huge": (4, 4),  # 0.459, 0.459
    "smooth_l1_loss-mean_1e5": (4, 4),  # 0.688, 0.312
    "huber_loss-ordinary": (4, 4),  # 1.53, 1.53
    "huber_loss-threshold": (4, 4),  # 1, 1
    "huber_loss-threshold_0.75": (4, 4),  # 1.16, 1.16
    "huber_loss-tiny": (4, 4),  # 0.492, 0.492
    "huber_loss-huge": (4, 4),  # 0.487, 0.487
    "huber_loss-mean_1e5": (4, 4),  # 0.767, 0.233
    "log_cosh_loss-ordinary": (4, 4),  # 0.495, 0.495 (was 4.6, 2.7: double words)
    "log_cosh_loss-tiny": (4, 4),  # 0.487, 0.487
    "log_cosh_loss-underflow": (4, 4),  # 0, 0
    "log_cosh_loss-switch": (4, 4),  # 0.492, 0.492
    "log_cosh_loss-large": (4, 4),  # 0.481, 0.481
    "log_cosh_loss-mean_1e5": (4, 4),  # 0.616, 0.384
    "gaussian_nll_loss-ordinary": (4, 4),  # 0.498, 0.498 (double-word float32)
    "gaussian_nll_loss-cancel": (4, 4),  # 0.695, 0.656 (was 2e6: dd_log)
    "gaussian_nll_loss-eps_clamp": (4, 4),  # 0.497, 0.497
    "gaussian_nll_loss-huge": (4, 4),  # 0.473, 0.473
    "gaussian_nll_loss-full": (4, 4),  # 0.498, 0.498
    "gaussian_nll_loss-mean_1e5": (4, 4),  # 0.14, 0.14
    "kl_div_loss-ordinary": (4, 4),  # 0.465, 0.465 (double-word float32)
    "kl_div_loss-near_equal": (4, 4),  # 0.803, 0.803 (was 3.2e3, 7.3e3: dd_exp)
    "kl_div_loss-zero_probs": (4, 4),  # 0.422, 0.422
    "kl_div_loss-tiny_probs": (4, 4),  # 0.435, 0.435
    "kl_div_loss-mean_1e5": (4, 4),  # 0.411, 0.589
    "cosine_similarity_loss-ordinary": (4, 4),  # 1.53, 1.53 (double-word float32)
    "cosine_similarity_loss-huge_1e20": (4, 4),  # 1.77, 1.77
    "cosine_similarity_loss-huge_1e30": (4, 4),  # 1.61, 1.61
    "cosine_similarity_loss-tiny_1e-20": (4, 4),  # 1.72, 1.72
    "cosine_similarity_loss-mixed_1e20_1e-20": (4, 4),  # 1.44, 1.44
    "cosine_similarity_loss-near_orthogonal": (4, 4),  # 1.17, 1.17
    "cosine_similarity_loss-parallel": (4, 4),  # 1, 1
    "cosine_similarity_loss-mean_1e5": (4, 4),  # 0.135, 0.135
    "triplet_loss-ordinary": (4, 4),  # 0.463, 0.463 (double-word float32)
    "triplet_loss-near_equal": (4, 4),  # 0.438, 0.438 (was 4.84, 5.84: sum3)
    "triplet_loss-near_equal_1e20": (4, 4),  # 0.425, 0.425 (was 4.42, 4.58)
    "triplet_loss-huge_1e20": (4, 4),  # 0.412, 0.412
    "triplet_loss-tiny_1e-20": (4, 4),  # 8.6e-30, 8.6e-30
    "triplet_loss-p1": (4, 4),  # 0.5, 0.5
    "triplet_loss-p3": (4, 4),  # 0.426, 0.426 (was 6.75, 6.75: dd_pow)
    "triplet_loss-mean_1e5": (4, 4),  # 0.916, 0.0844
    "margin_ranking_loss-ordinary": (4, 4),  # 0.5, 0.5
    "margin_ranking_loss-near_margin": (4, 4),  # 0.2, 0.2
    "margin_ranking_loss-near_margin_0.5": (4, 4),  # 0, 0
    "margin_ranking_loss-huge_1e20": (4, 4),  # 0.5, 0.5
    "margin_ranking_loss-sum_1e5": (4, 4),  # 0.59, 0.41
    # -- beyond MLX --
    "cross_entropy-class_weights": (4, 4),  # 1.41, 1.41
    "cross_entropy-ignore_weighted_mean": (4, 4),  # 1.03, 0.035
    "sigmoid_focal_loss-ordinary": (4, 4),  # 0.468, 0.468 (was 4.16: double words)
    "sigmoid_focal_loss-confident": (4, 4),  # 0.893, 0.893 (MLX was 63: its exp)
    "sigmoid_focal_loss-soft_gamma": (4, 4),  # 0.497, 0.497
    "sigmoid_focal_loss-huge": (4, 4),  # 0.5, 0.5
    "sigmoid_focal_loss-mean_1e5": (4, 4),  # 0.035, 0.035
    "softmax_focal_loss-ordinary": (4, 4),  # 0.463, 0.463 (was 5.16: double words)
    "softmax_focal_loss-confident": (4, 4),  # 1.05, 1.05 (MLX was 32.5)
    "softmax_focal_loss-probs_alpha": (4, 4),  # 1.43, 1.43
    "softmax_focal_loss-mean_1e5": (4, 4),  # 0.222, 0.222
    "dice_loss-ordinary": (4, 4),  # 0.493, 0.493
    "dice_loss-near_perfect": (4, 4),  # 0.456, 0.456
    "dice_loss-edge_smooth0": (4, 4),  # 0.5, 0.5
    "dice_loss-mean_1e5": (4, 4),  # 1.09, 0.0886
    "info_nce_loss-ordinary": (4, 4),  # 1.73, 1.33
    "info_nce_loss-confident": (4, 4),  # 1.43, 1.35 (MLX was 10.5: its exp)
    "info_nce_loss-symmetric_raw": (4, 4),  # 1.72, 1.05
    "info_nce_loss-huge_1e20": (4, 4),  # 2.3, 2.3
    "info_nce_loss-mean_256": (4, 4),  # 0.525, 0.525
    "nt_xent_loss-ordinary": (4, 4),  # 1.18, 1.18 (was 28.8, 23.3: double-float)
    "nt_xent_loss-multi_positive": (4, 4),  # 0.962, 0.962
    "nt_xent_loss-confident": (4, 4),  # 1.53, 1.53 (was 41.7, 41.5)
    "nt_xent_loss-mean_256": (4, 4),  # 0.387, 0.387
    "squared_hinge_loss-ordinary": (4, 4),  # 1.29, 1.29
    "squared_hinge_loss-threshold": (4, 4),  # 0, 0
    "squared_hinge_loss-magnitudes": (4, 4),  # 0.999, 0.999
    "squared_hinge_loss-sum_1e5": (4, 4),  # 0.271, 0.271
    "multiclass_hinge_loss-ordinary": (4, 4),  # 0.5, 0.5
    "multiclass_hinge_loss-near_margin": (4, 4),  # 0.398, 0.398
    "multiclass_hinge_loss-magnitudes": (4, 4),  # 0.452, 0.452
    "multiclass_hinge_loss-mean_1e5": (4, 4),  # 0.625, 0.625
    "cosine_embedding_loss-ordinary": (4, 4),  # 0.469, 0.469
    "cosine_embedding_loss-parallel": (4, 4),  # 0.432, 0.432 (was 2.1e6, 2e6: double words)
    "cosine_embedding_loss-magnitudes": (4, 4),  # 0.473, 0.473 (was 4.77, 4.77)
    "cosine_embedding_loss-mean_1e5": (4, 4),  # 1.51, 0.508
    "poisson_nll_loss-ordinary": (4, 4),  # 0.498, 0.498 (double-word float32)
    "poisson_nll_loss-full_near_min": (4, 4),  # 0.997, 0.997 (was 519: dd_log of t)
    "poisson_nll_loss-rates_full": (4, 4),  # 1.21, 1.21
    "poisson_nll_loss-extreme": (4, 4),  # 0.5, 0.5 (MLX was 34.5: its exp)
    "poisson_nll_loss-mean_1e5": (4, 4),  # 0.0474, 0.0474
    "ctc_loss-ordinary": (4, 4),  # 2, 2
    "ctc_loss-confident": (4, 4),  # 1.12, 0.922
    "ctc_loss-long": (4, 4),  # 2.66, 2.66
    "ctc_loss-lengths": (4, 4),  # 1.85, 1.85
    "ctc_loss-mean_per_length": (4, 4),  # 1.26, 0.259
}

# Backends other than JAX/MLX are held to NUMPY_BOUND except here (measured in
# the comment). PyTorch's float32 cross entropy carries x - max error-free
# (TwoSum) and is within NUMPY_BOUND (confident 1.06, leading 1.36).
OTHER_BOUNDS: dict[tuple[str, str], float] = {}

# Per (backend, device type) other than the CPU: regime -> bound, where it
# differs from the CPU's. None is stated yet: no GPU run of this table has been
# measured since the compensated float32 paths landed (an earlier GPU trial
# measured JAX up to 514 ulp on info_nce's reductions, before them). A GPU run
# reports every regime it misses; state them here with the value measured.
DEVICE_BOUNDS: dict[tuple[str, str], dict[str, float]] = {}

XFAIL: dict[tuple[str, str], str] = {}


# Cases whose Dask graph emits NumPy RuntimeWarnings at compute time (src bugs).
DASK_WARNS: dict[str, str] = {}


def _device(backend: str) -> str:
    """The device type ``backend``'s arrays are on in this run."""
    if backend == "torch":
        return DEVICE.partition(":")[0]
    if backend == "jax":
        import jax

        return str(jax.default_backend())
    if backend == "mlx":
        import mlx.core as mx

        return "cpu" if mx.default_device() == mx.cpu else "gpu"
    return "cpu"


def _bound(case_id: str, backend: str) -> float:
    on_device = DEVICE_BOUNDS.get((backend, _device(backend)), {})
    if case_id in on_device:
        return on_device[case_id]
    if (case_id, backend) in OTHER_BOUNDS:
        return OTHER_BOUNDS[case_id, backend]
    if backend in FLOAT32_BACKENDS:
        return BOUNDS[case_id][FLOAT32_BACKENDS.index(backend)]
    return NUMPY_BOUND


def _params() -> list:
    params = []
    wanted = set(selected())
    for case in A.CASES:
        for backend in BACKENDS:
            if backend not in wanted:
                continue
            marks = []
            reason = XFAIL.get((case.id, backend))
            if reason is not None:
                marks.append(pytest.mark.xfail(strict=True, reason=reason))
            params.append(pytest.param(case.id, backend, marks=marks, id=f"{case.id}-{backend}"))
    return params


@pytest.fixture(scope="module")
def backends() -> dict:
    return {}


def _backend(cache: dict, name: str):
    if name not in cache:
        cache[name] = make(name)
    be = cache[name]
    if name == "jax" and be.has_float64:
        pytest.skip("the JAX bounds are measured with jax_enable_x64 off")
    return be


@pytest.mark.parametrize(("case_id", "backend"), _params())
def test_worst_ulp(case_id: str, backend: str, backends: dict) -> None:
    be = _backend(backends, backend)
    case = A.CASE_BY_ID[case_id]
    with warnings.catch_warnings():
        if backend == "dask":  # asserted apart, in test_dask_compute_is_warning_free
            warnings.simplefilter("ignore", RuntimeWarning)
        m = A.measure(case, be)
    bound = _bound(case_id, backend)
    assert m.ulp <= bound, f"{case_id} on {backend}: {m} (bound {bound} ulp)"


def _compiled_params() -> list:
    wanted = set(selected())
    return [
        pytest.param(case.id, backend, id=f"{case.id}-{backend}")
        for case in A.CASES
        for backend in FLOAT32_BACKENDS
        if backend in wanted
    ]


@pytest.mark.parametrize(("case_id", "backend"), _compiled_params())
def test_worst_ulp_compiled(case_id: str, backend: str, backends: dict) -> None:
    """The float32-only bounds hold under the compilers too, ``jax.jit`` and
    ``mx.compile``: XLA fuses the compensated operations and contracts
    products into fused multiply-adds where it fuses them, which eager calls
    do not show."""
    be = _backend(backends, backend)
    case = A.CASE_BY_ID[case_id]
    m = A.measure_output(case, A.run_compiled(case, be))
    bound = _bound(case_id, backend)
    assert m.ulp <= bound, f"{case_id} on {backend}, compiled: {m} (bound {bound} ulp)"


@pytest.mark.parametrize(
    "case_id",
    [
        pytest.param(
            c.id,
            marks=[pytest.mark.xfail(strict=True, reason=DASK_WARNS[c.id])]
            if c.id in DASK_WARNS
            else [],
        )
        for c in A.CASES
    ],
)
def test_dask_compute_is_warning_free(case_id: str, backends: dict) -> None:
    if "dask" not in selected():
        pytest.skip("dask not selected")
    be = _backend(backends, "dask")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        A.run_anyloss(A.CASE_BY_ID[case_id], be)


def test_bounds_table_covers_every_case() -> None:
    assert set(BOUNDS) == {c.id for c in A.CASES}
    assert {k for k, _ in XFAIL} <= set(BOUNDS)
    assert all(b >= NUMPY_BOUND for pair in BOUNDS.values() for b in pair)
    assert all(set(table) <= set(BOUNDS) for table in DEVICE_BOUNDS.values())
    assert all(device != "cpu" for _, device in DEVICE_BOUNDS)


# -- the measuring stick itself ---------------------------------------------------


def test_ulp_error_definition() -> None:
    one = A.mpf(1)
    assert A.ulp_error(1.0, one) == 0.0
    assert A.ulp_error(float(np.nextafter(np.float32(1), np.float32(2))), one) == 1.0
    # ulp of the float32 true value: 2**-24 just below 1, 2**-23 from 1 up
    assert A.ulp_error(1.0, one - A.mpf(2) ** -24) == 1.0
    assert A.ulp_error(1.0 + 2.0**-24, one) == 0.5
    assert A.ulp_error(math.nan, one) == math.inf
    assert A.ulp_error(math.inf, one) == math.inf
    # true values that are not normal float32: a correctly signed small result
    assert A.ulp_error(0.0, A.mpf(0)) == 0.0
    assert A.ulp_error(1e-45, A.mpf("1e-40")) == 0.0
    assert A.ulp_error(-1e-45, A.mpf("1e-40")) == math.inf
    assert A.ulp_error(1e-30, A.mpf(0)) == math.inf


def test_references_match_the_spec_examples() -> None:
    mpf = A.mpf
    bce = A.REFERENCES["binary_cross_entropy"]
    logits = [0.105361, 0.223144, 1.20397, 0.916291]
    targets = [0, 0, 1, 1]
    per = [bce(mpf(x), mpf(t)) for x, t in zip(logits, targets, strict=True)]
    np.testing.assert_allclose(
        [float(v) for v in per], [0.747215, 0.810930, 0.262365, 0.336472], rtol=1e-5
    )
    probs = [0.1, 0.1, 0.4, 0.4]
    mean = (
        sum(bce(mpf(p), mpf(t), with_logits=False) for p, t in zip(probs, targets, strict=True))
        / 4
    )
    assert abs(float(mean) - 0.510826) < 1e-6
    with A.mp.workdps(50):
        assert abs(float(bce(mpf(30), mpf(1))) / 9.357622968840175e-14 - 1) < 1e-12
        lc = A.REFERENCES["log_cosh_loss"]
        assert abs(float(lc(mpf("1e4"), mpf(0))) - (1e4 - math.log(2))) < 1e-9
        assert abs(float(lc(mpf("1e-4"), mpf(0))) / 5e-9 - 1) < 1e-8
        cos = A.REFERENCES["cosine_similarity_loss"]
        assert abs(cos([mpf(1e20)] * 2, [mpf(1e20)] * 2) - 1) < mpf(10) ** -40
        kl = A.REFERENCES["kl_div_loss"]
        assert kl([mpf(-1), mpf(-2)], [mpf(0), mpf("-inf")]) == 1
        mr = A.REFERENCES["margin_ranking_loss"]
        got = [
            mr(mpf(a), mpf(b), mpf(y))
            for a, b, y in zip(
                [-0.573409, -0.765166, -0.0638],
                [0.75596, 0.225763, 0.256995],
                [1, 1, -1],
                strict=True,
            )
        ]
        np.testing.assert_allclose([float(v) for v in got], [1.32937, 0.990929, 0], atol=1e-6)


def test_beyond_mlx_references_match_independent_values() -> None:
    mpf, log, exp, R = A.mpf, A.mpmath.log, A.mpmath.exp, A.REFERENCES
    with A.mp.workdps(50):
        # gamma 0 and no alpha: the focal losses are the cross entropies
        for x, t in ((mpf(2), mpf(1)), (mpf(-3), mpf(0)), (mpf(0.5), mpf(0.25))):
            got = R["sigmoid_focal_loss"](x, t, alpha=None, gamma=0.0)
            assert abs(got - R["binary_cross_entropy"](x, t)) < mpf(10) ** -45
        row = [mpf(2), mpf(-1), mpf(0)]
        got = R["softmax_focal_loss"](row, 0, gamma=0.0)
        assert abs(got - R["cross_entropy"](row, 0)) < mpf(10) ** -45
        # x = 15, t = 1: alpha sigma(-15)^2 softplus(-15)
        want = mpf(0.25) / (1 + exp(mpf(15))) ** 2 * log(1 + exp(mpf(-15)))
        assert abs(R["sigmoid_focal_loss"](mpf(15), mpf(1)) / want - 1) < mpf(10) ** -40
        # cross entropy with class weights (PyTorch), an ignored target
        w = [mpf(1), mpf(3)]
        got = R["cross_entropy"]([mpf(2), mpf(-1)], 1, class_weights=w)
        assert abs(got - 3 * log(1 + exp(mpf(3)))) < mpf(10) ** -45
        assert R["cross_entropy"]([mpf(2), mpf(-1)], -100, ignore_index=-100) == 0
        # dice: perfect overlap, half overlap with smoothing, nothing at all
        dice = R["dice_loss"]
        assert dice([mpf(1), mpf(0)], [mpf(1), mpf(0)], smooth=0.0) == 0
        assert abs(dice([mpf(0.5), mpf(0.5)], [mpf(1), mpf(0)]) - mpf(1) / 3) < mpf(10) ** -45
        assert dice([mpf(0)] * 2, [mpf(0)] * 2, smooth=0.0) == 0
        # InfoNCE of orthonormal pairs at temperature 1: log(1 + e^-1) each
        e1, e2 = [mpf(1), mpf(0)], [mpf(0), mpf(1)]
        got = R["info_nce_loss"]([e1, e2], [e1, e2], rows=[0, 1], temperature=1.0)
        assert all(abs(v - log(1 + exp(mpf(-1)))) < mpf(10) ** -45 for v in got)
        # NT-Xent: anchor 0 has positive 1 and negative 2; anchor 2 no positive
        got = R["nt_xent_loss"]([e1, e1, e2], [0, 0, 1], rows=[0, 2], temperature=1.0)
        assert abs(got[0] - log(1 + exp(mpf(-1)))) < mpf(10) ** -45 and got[1] == 0
        # the margin losses
        assert R["squared_hinge_loss"](mpf(0.5), mpf(1)) == mpf(0.25)
        assert R["multiclass_hinge_loss"]([mpf(2), mpf(1.5), mpf(-1)], 0) == mpf(0.5)
        cos = R["cosine_embedding_loss"]
        got = cos([mpf(1), mpf(0)], [mpf(1), mpf(1)], mpf(1))
        assert abs(got - (1 - 1 / A.mpmath.sqrt(2))) < mpf(10) ** -45
        assert abs(cos([mpf(3), mpf(4)], [mpf(4), mpf(3)], mpf(-1)) - mpf(24) / 25) < 1e-45
        # Poisson with full=True at the rate t = 2: only 1/2 log(2 pi t) is left
        got = R["poisson_nll_loss"](log(mpf(2)), mpf(2), full=True)
        assert abs(got - log(4 * A.mpmath.pi) / 2) < mpf(10) ** -45
        # CTC: uniform over 3 classes for 2 steps, target [1]: 3 of 9 alignments
        third = [[log(mpf(1) / 3)] * 3] * 2
        assert abs(R["ctc_loss"](third, [1], 2, 1) - log(mpf(3))) < mpf(10) ** -45
        # CTC: the forward recursion is the sum over every alignment
        rng = np.random.default_rng(7)
        for y, steps in (([1, 1], 4), ([2, 1], 4), ([], 3), ([1, 2, 1], 5), ([1, 1, 1], 4)):
            lp = [[log(mpf(float(v))) for v in p] for p in rng.dirichlet([1, 1, 1], steps)]
            paths = A.ctc_alignments(steps, 3, y)
            total = A.mpmath.fsum(
                A.mpmath.fprod(exp(lp[t][c]) for t, c in enumerate(path)) for path in paths
            )
            want = -log(total) if paths else mpf("inf")
            got = R["ctc_loss"](lp, y, steps, len(y))
            assert got == want or abs(got - want) < mpf(10) ** -40, (y, got, want)


def test_naive_column_shows_the_spec_failures() -> None:
    """The naive float32 formulas fail where the spec says they do."""
    worst = {
        c: A.measure_naive(A.CASE_BY_ID[c]).ulp
        for c in (
            "binary_cross_entropy-confident",
            "cosine_similarity_loss-huge_1e20",
            "kl_div_loss-zero_probs",
            "log_cosh_loss-large",
            "log_cosh_loss-tiny",
            "triplet_loss-huge_1e20",
        )
    }
    assert all(v > 1e3 for v in worst.values()), worst


def test_naive_column_fails_beyond_mlx() -> None:
    """The literal float32 formulas of the losses beyond MLX fail in their regimes."""
    worst = {
        c: A.measure_naive(A.CASE_BY_ID[c]).ulp
        for c in (
            "sigmoid_focal_loss-confident",
            "softmax_focal_loss-confident",
            "dice_loss-near_perfect",
            "info_nce_loss-huge_1e20",
            "nt_xent_loss-confident",
            "multiclass_hinge_loss-near_margin",
            "cosine_embedding_loss-parallel",
            "poisson_nll_loss-full_near_min",
            "ctc_loss-long",
        )
    }
    assert all(v > 1e3 for v in worst.values()), worst


def test_every_regime_has_normal_true_values() -> None:
    """Each regime but the underflow one has mostly normal true values (the 4-ulp bound)."""
    for case in A.CASES:
        true = A.exact(case.id)
        normal = [abs(v) >= A.TINY for v in true]
        if case.regime == "underflow":
            assert not any(normal), case.id
        else:
            assert sum(normal) >= len(true) / 4, case.id
