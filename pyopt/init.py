"""Weight initializers: LeCun, Xavier/Glorot and He/Kaiming, as variance-scaling rules.

Every initializer here draws i.i.d. weights with mean 0 and variance

.. math::

    \\operatorname{Var}[W_{ij}] = \\frac{g^2}{n}, \\qquad
    n = \\begin{cases} n_\\text{in} & \\texttt{mode="fan\\_in"}\\\\
                       n_\\text{out} & \\texttt{mode="fan\\_out"}\\\\
                       (n_\\text{in} + n_\\text{out})/2 & \\texttt{mode="fan\\_avg"} \\end{cases}

Symbols: :math:`g` = ``gain``, :math:`n_\\text{in}, n_\\text{out}` = the fans of ``shape`` (:func:`fans`).

Why.  For a layer :math:`y = W x` with independent zero-mean weights and inputs,
:math:`\\operatorname{Var}[y_i] = n_\\text{in} \\operatorname{Var}[W] \\operatorname{E}[x^2]`, so
:math:`\\operatorname{Var}[W] = 1/n_\\text{in}` keeps the scale of the activations from layer to layer (LeCun),
and in the backward pass :math:`\\operatorname{Var}[W] = 1/n_\\text{out}` keeps the scale of the gradients.  Both
cannot hold when :math:`n_\\text{in} \\ne n_\\text{out}`; Glorot & Bengio take the harmonic compromise
:math:`2/(n_\\text{in} + n_\\text{out})` (``fan_avg``).  A nonlinearity changes :math:`\\operatorname{E}[x^2]`:
ReLU zeroes half of a symmetric input, halving the second moment, which the gain :math:`g^2 = 2` restores (He et
al.); :func:`calculate_gain` gives the gain for the usual nonlinearities, as ``torch.nn.init.calculate_gain``.

============================  ==============  ===========  =========================================
function                      default mode    default gain distribution
============================  ==============  ===========  =========================================
``lecun_uniform``             ``fan_in``      1            uniform
``lecun_normal``              ``fan_in``      1            normal truncated at 2 sd, rescaled (JAX/Keras)
``xavier_uniform`` (glorot)   ``fan_avg``     1            uniform (``torch.nn.init.xavier_uniform_``)
``xavier_normal`` (glorot)    ``fan_avg``     1            plain normal (``torch.nn.init.xavier_normal_``)
``he_uniform`` (kaiming)      ``fan_in``      sqrt(2)      uniform (``torch.nn.init.kaiming_uniform_``)
``he_normal`` (kaiming)       ``fan_in``      sqrt(2)      plain normal (``torch.nn.init.kaiming_normal_``)
============================  ==============  ===========  =========================================

Conventions.  Uniform draws are :math:`U(-b, b)` with :math:`b = g\\sqrt{3/n}`.  The functions PyTorch has follow
PyTorch (plain normal), so that the distribution is the one ``torch.nn.init`` draws from; ``lecun_normal``, which
PyTorch lacks, follows JAX and Keras: a standard normal truncated to :math:`[-2, 2]` and divided by its standard
deviation :math:`0.8796\\ldots`, so that its variance is *exactly* :math:`g^2/n` and no weight exceeds
:math:`2 g/(0.8796\\sqrt n)`.  :func:`variance_scaling` gives any other combination.  Samples are drawn in float64
and rounded once to ``dtype``, so the same seed gives the same weights in float32 and float64 (up to rounding).

References: LeCun, Bottou, Orr & Müller, "Efficient BackProp", 1998; Glorot & Bengio, "Understanding the
difficulty of training deep feedforward neural networks", AISTATS 2010; He, Zhang, Ren & Sun, "Delving Deep into
Rectifiers", ICCV 2015; Klambauer et al., "Self-Normalizing Neural Networks", NeurIPS 2017.
"""
import math
import numbers

import numpy as np

from pyopt.arrays import real_number

__all__ = ["calculate_gain", "fans", "variance_scaling", "lecun_uniform", "lecun_normal", "xavier_uniform",
           "xavier_normal", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "kaiming_uniform",
           "kaiming_normal"]

MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("uniform", "normal", "truncated_normal")
_LINEAR = ("linear", "identity", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d", "sigmoid")

# the standard deviation of a standard normal truncated to [-2, 2]:
# sqrt(1 - 2 * 2 * pdf(2) / (cdf(2) - cdf(-2))) = 0.87962566103423978 (the constant in jax.nn.initializers)
_TRUNCATION = 2.0
_TRUNCATED_STD = math.sqrt(1.0 - 2.0 * _TRUNCATION * math.exp(-_TRUNCATION**2 / 2) / math.sqrt(2 * math.pi)
                           / math.erf(_TRUNCATION / math.sqrt(2)))


def calculate_gain(nonlinearity, param=None):
    """The gain :math:`g` that keeps :math:`\\operatorname{E}[x^2]` through ``nonlinearity``, as torch does.

    ===========================================  =============================================
    nonlinearity                                 gain
    ===========================================  =============================================
    ``linear``, ``identity``, ``conv*``, ``sigmoid``  1
    ``tanh``                                     5/3
    ``relu``                                     :math:`\\sqrt 2`
    ``leaky_relu`` (``param`` = negative slope,  :math:`\\sqrt{2 / (1 + \\text{slope}^2)}`
    default 0.01)
    ``selu``                                     3/4 (empirical; use ``linear`` for self-normalizing nets)
    ===========================================  =============================================

    Unlike torch, a ``param`` given to a nonlinearity that has none raises instead of being ignored.
    """
    if not isinstance(nonlinearity, str):
        raise TypeError(f"nonlinearity must be a string, got {type(nonlinearity).__name__}")
    name = nonlinearity.lower()
    if name == "leaky_relu":
        try:
            slope = real_number(0.01 if param is None else param, "param")
        except TypeError:  # not a number: the ValueError below, as torch raises
            slope = math.nan
        if not math.isfinite(slope):
            raise ValueError(f"param (the negative slope of leaky_relu) must be a finite real, got {param!r}")
        return math.sqrt(2.0 / (1 + slope * slope))  # (slope**2 raises OverflowError past 1e154)
    gains = {"tanh": 5.0 / 3, "relu": math.sqrt(2.0), "selu": 3.0 / 4, **{k: 1.0 for k in _LINEAR}}
    if name not in gains:
        raise ValueError(f"Unsupported nonlinearity {nonlinearity!r}; expected one of "
                         f"{sorted(gains) + ['leaky_relu']}")
    if param is not None:
        raise ValueError(f"param must be None for nonlinearity {nonlinearity!r} (it has no parameter), "
                         f"got {param!r}")
    return gains[name]


def _check_shape(shape):
    if isinstance(shape, (numbers.Integral, np.integer)) and not isinstance(shape, (bool, np.bool_)):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"shape must be a tuple of ints, got {type(shape).__name__}")
    for k, s in enumerate(shape):
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (numbers.Integral, np.integer)):
            raise TypeError(f"shape[{k}] must be an int, got {type(s).__name__}")
        if s < 0:
            raise ValueError(f"shape[{k}] must be >= 0, got {s}")
    return tuple(int(s) for s in shape)


def fans(shape):
    """``(fan_in, fan_out)`` of a weight of ``shape``, as ``torch.nn.init._calculate_fan_in_and_fan_out``.

    Layout ``(out_features, in_features)`` for dense layers and ``(out_channels, in_channels, *kernel)`` for
    convolutions: with :math:`r` the product of the kernel dimensions (1 for a dense layer),
    :math:`n_\\text{in} = \\text{shape}[1]\\, r` and :math:`n_\\text{out} = \\text{shape}[0]\\, r`.
    Fewer than two dimensions raise ``ValueError``: a bias or a vector has no fan.
    """
    shape = _check_shape(shape)
    if len(shape) < 2:
        raise ValueError(f"Fan in and fan out can not be computed for shape {shape} with fewer than 2 dimensions")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _check_mode(mode):
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a string, got {type(mode).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def _check_gain(gain):
    if isinstance(gain, str):
        return calculate_gain(gain)
    gain = real_number(gain, "gain", "a real number or a nonlinearity name")
    if not (math.isfinite(gain) and gain > 0):
        raise ValueError(f"gain must be finite and > 0, got {gain!r}")
    return gain


def _check_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _as_generator(rng):
    """``None`` -> a fresh Generator from OS entropy; an int -> ``default_rng(seed)``; a Generator as is."""
    if rng is None or isinstance(rng, np.random.Generator):
        return np.random.default_rng(rng)
    if isinstance(rng, (numbers.Integral, np.integer)) and not isinstance(rng, (bool, np.bool_)):
        if rng < 0:
            raise ValueError(f"rng seed must be >= 0, got {rng}")
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}")


def _truncated_standard_normal(gen, size):
    """Standard normal draws conditioned on ``|z| <= 2`` (rejection: 95.4% accepted per round)."""
    z = gen.standard_normal(math.prod(size))
    bad = np.flatnonzero(np.abs(z) > _TRUNCATION)
    while bad.size:
        z[bad] = gen.standard_normal(bad.size)
        bad = bad[np.abs(z[bad]) > _TRUNCATION]
    return z.reshape(size)


def variance_scaling(shape, *, scale=1.0, mode="fan_in", distribution="truncated_normal", rng=None,
                     dtype=np.float32):
    """Weights of ``shape`` with mean 0 and variance exactly ``scale / n`` (``n`` the fan of ``mode``).

    The general rule behind every initializer here (``jax.nn.initializers.variance_scaling``): ``scale`` is
    :math:`g^2`.  ``distribution`` is ``"uniform"`` (:math:`U(-b, b)`, :math:`b = \\sqrt{3\\,\\text{scale}/n}`),
    ``"normal"`` (plain) or ``"truncated_normal"`` (truncated at two standard deviations and rescaled so the
    variance is exact).  A shape with a zero dimension gives an empty array (nothing to draw, as torch's no-op).
    """
    shape = _check_shape(shape)
    fan_in, fan_out = fans(shape)
    mode = _check_mode(mode)
    scale = real_number(scale, "scale")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be finite and > 0, got {scale!r}")
    if not isinstance(distribution, str) or distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    dtype = _check_dtype(dtype)
    gen = _as_generator(rng)
    if math.prod(shape) == 0:
        return np.empty(shape, dtype)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    std = math.sqrt(scale / fan)
    if distribution == "uniform":
        bound = math.sqrt(3.0) * std
        w = gen.uniform(-bound, bound, shape)
    elif distribution == "normal":
        w = std * gen.standard_normal(shape)
    else:
        w = (std / _TRUNCATED_STD) * _truncated_standard_normal(gen, shape)
    return w.astype(dtype, copy=False)


def _initializer(name, default_mode, default_gain, distribution, summary):
    def init(shape, *, mode=default_mode, gain=default_gain, rng=None, dtype=np.float32):
        return variance_scaling(shape, scale=_check_gain(gain) ** 2, mode=mode, distribution=distribution,
                                rng=rng, dtype=dtype)

    init.__name__ = init.__qualname__ = name
    gain_text = "1" if default_gain == 1.0 else ":math:`\\sqrt 2` (ReLU)"
    init.__doc__ = f"""{summary}

    .. math::  W_{{ij}} \\sim {_LAW[distribution]}, \\qquad \\sigma^2 = \\operatorname{{Var}}[W_{{ij}}] = g^2 / n

    Args:
      shape: the weight's shape, ``(out, in, *kernel)`` (fans as :func:`fans`; at least two dimensions).
      mode: which fan is :math:`n`: ``"fan_in"`` (preserve the forward variance), ``"fan_out"`` (the backward
        one) or ``"fan_avg"`` (:math:`(n_\\text{{in}}+n_\\text{{out}})/2`, the Glorot compromise).
        Default ``{default_mode!r}``.
      gain: :math:`g`, a positive real or a nonlinearity name for :func:`calculate_gain`. Default {gain_text}.
      rng: a ``numpy.random.Generator``, an int seed, or None for fresh OS entropy.
      dtype: float32 (default) or float64.

    Returns:
      A new array of ``shape`` and ``dtype``.
    """
    return init


_LAW = {"uniform": "U(-\\sqrt{3}\\sigma, \\sqrt{3}\\sigma)", "normal": "\\mathcal N(0, \\sigma^2)",
        "truncated_normal": "\\mathcal N(0, (\\sigma/0.8796)^2) \\text{ truncated to } \\pm 2\\sigma/0.8796"}

lecun_uniform = _initializer(
    "lecun_uniform", "fan_in", 1.0, "uniform",
    "LeCun uniform: variance :math:`1/n_\\text{in}`, which keeps the activation variance of a linear layer.")
lecun_normal = _initializer(
    "lecun_normal", "fan_in", 1.0, "truncated_normal",
    "LeCun normal: variance :math:`1/n_\\text{in}`, from a normal truncated at 2 sd and rescaled (JAX, Keras).")
xavier_uniform = glorot_uniform = _initializer(
    "xavier_uniform", "fan_avg", 1.0, "uniform",
    "Xavier/Glorot uniform: variance :math:`2/(n_\\text{in}+n_\\text{out})`, between the forward and backward "
    "rules (``torch.nn.init.xavier_uniform_``).")
xavier_normal = glorot_normal = _initializer(
    "xavier_normal", "fan_avg", 1.0, "normal",
    "Xavier/Glorot normal: variance :math:`2/(n_\\text{in}+n_\\text{out})`, plain normal "
    "(``torch.nn.init.xavier_normal_``).")
he_uniform = kaiming_uniform = _initializer(
    "he_uniform", "fan_in", math.sqrt(2.0), "uniform",
    "He/Kaiming uniform: variance :math:`2/n_\\text{in}`, the LeCun rule with the ReLU gain "
    "(``torch.nn.init.kaiming_uniform_(nonlinearity='relu')``).")
he_normal = kaiming_normal = _initializer(
    "he_normal", "fan_in", math.sqrt(2.0), "normal",
    "He/Kaiming normal: variance :math:`2/n_\\text{in}`, plain normal "
    "(``torch.nn.init.kaiming_normal_(nonlinearity='relu')``).")
