"""Adagrad, as ``torch.optim.Adagrad`` computes it (dense gradients).

With ``g`` the gradient (negated when ``maximize``) and ``t`` the step after incrementing:

.. math::

    g &\\leftarrow g + \\lambda p\\\\
    \\tilde\\eta &= \\eta / (1 + (t-1)\\,\\delta)\\\\
    s &\\leftarrow s + g^2\\\\
    p &\\leftarrow p - \\tilde\\eta\\, g / (\\sqrt{s} + \\epsilon)

Symbols: :math:`\\eta` = ``lr``, :math:`\\delta` = ``lr_decay``, :math:`\\lambda` = ``weight_decay``,
:math:`\\epsilon` = ``eps``; state ``sum`` (s), initialised to ``initial_accumulator_value``.
Reference: Duchi, Hazan & Singer, "Adaptive Subgradient Methods", JMLR 2011.

Bytes per element (fp32): read p, g, s, write p, s = 20.
"""
import numpy as np

from pyopt.reference._common import signed_grad


def bytes_moved(numel, itemsize, **_):
    """Minimum bytes one fused step moves: read p, g, s, write p, s."""
    return numel * itemsize * 5


def clr(lr, lr_decay, step):
    """The step's learning rate, in float64 exactly as torch computes it."""
    return lr / (1 + (step - 1) * lr_decay)


def adagrad_step(param, grad, state_sum, *, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
                 maximize=False):
    """One Adagrad step on one tensor, in place.  ``step`` is the step count after this update."""
    g = signed_grad(grad, maximize)
    if weight_decay != 0:
        g = g + weight_decay * param
    state_sum += g * g
    std = np.sqrt(state_sum) + eps
    param += -clr(lr, lr_decay, step) * g / std
