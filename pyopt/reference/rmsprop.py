"""RMSprop, centered and with momentum, as ``torch.optim.RMSprop`` computes it.

With ``g`` the gradient (negated when ``maximize``):

.. math::

    g &\\leftarrow g + \\lambda p\\\\
    s &\\leftarrow \\alpha s + (1-\\alpha) g^2\\\\
    a &\\leftarrow \\operatorname{lerp}(a, g, 1-\\alpha),\\quad
        r = \\sqrt{s - a^2} + \\epsilon                     && \\text{centered}\\\\
    r &= \\sqrt{s} + \\epsilon                              && \\text{otherwise}\\\\
    b &\\leftarrow \\mu b + g / r,\\quad p \\leftarrow p - \\eta b  && \\text{if } \\mu > 0\\\\
    p &\\leftarrow p - \\eta\\, g / r                        && \\text{otherwise}

Symbols: :math:`\\eta` = ``lr``, :math:`\\alpha` = ``alpha``, :math:`\\epsilon` = ``eps``, :math:`\\mu` =
``momentum``, :math:`\\lambda` = ``weight_decay``; state ``square_avg`` (s), ``grad_avg`` (a),
``momentum_buffer`` (b, starts at zero).  Convention: PyTorch's, with eps outside the square root
(Hinton's lecture puts it inside); the centered form is Graves 2013.
References: Hinton, Srivastava & Swersky, Neural Networks for Machine Learning, lecture 6e;
Graves, "Generating Sequences With Recurrent Neural Networks", 2013.

Bytes per element (fp32): read p, g, s, write p, s = 20; +8 for grad_avg, +8 for momentum_buffer.
"""
import numpy as np

from pyopt.reference._common import lerp, signed_grad


def bytes_moved(numel, itemsize, *, centered=False, momentum=0.0, **_):
    """Minimum bytes one fused step moves."""
    return numel * itemsize * (5 + 2 * bool(centered) + 2 * (momentum > 0))


def rmsprop_step(param, grad, square_avg, grad_avg=None, momentum_buffer=None, *, lr=1e-2, alpha=0.99, eps=1e-8,
                 weight_decay=0.0, momentum=0.0, centered=False, maximize=False):
    """One RMSprop step on one tensor, in place."""
    g = signed_grad(grad, maximize)
    if weight_decay != 0:
        g = g + weight_decay * param
    square_avg *= alpha
    square_avg += (1 - alpha) * g * g
    if centered:
        grad_avg[...] = lerp(grad_avg, g, 1 - alpha)
        avg = np.sqrt(square_avg - grad_avg * grad_avg)
    else:
        avg = np.sqrt(square_avg)
    avg = avg + eps
    if momentum > 0:
        momentum_buffer *= momentum
        momentum_buffer += g / avg
        param += -lr * momentum_buffer
    else:
        param += -lr * g / avg
