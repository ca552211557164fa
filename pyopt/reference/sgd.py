"""SGD with momentum, dampening, Nesterov and L2 weight decay, as ``torch.optim.SGD`` computes it.

With ``g`` the gradient (negated when ``maximize``):

.. math::

    g &\\leftarrow g + \\lambda p\\\\
    b &\\leftarrow g \\text{ on the first step, else } \\mu b + (1-\\tau) g  && \\text{if } \\mu \\ne 0\\\\
    d &= g + \\mu b \\text{ if nesterov else } b                          && \\text{if } \\mu \\ne 0, \\text{ else } d = g\\\\
    p &\\leftarrow p - \\eta d

Symbols: :math:`\\eta` = ``lr``, :math:`\\mu` = ``momentum``, :math:`\\tau` = ``dampening``,
:math:`\\lambda` = ``weight_decay``; state ``momentum_buffer`` (b).
Convention: PyTorch's (Sutskever et al. 2013 form, lr applied outside the buffer), which differs from the
``v = mu v - lr g`` form when lr changes; the first buffer is the gradient itself, undamped.
Reference: Sutskever, Martens, Dahl & Hinton, "On the importance of initialization and momentum", ICML 2013.

Bytes per element (fp32): read p, g, write p = 12; with momentum read and write b too = 20.
"""
from pyopt.reference._common import signed_grad


def bytes_moved(numel, itemsize, *, momentum=0.0, first_step=False, **_):
    """Minimum bytes one fused step moves (the first momentum step writes b without reading it)."""
    if momentum == 0:
        return numel * itemsize * 3
    return numel * itemsize * (4 if first_step else 5)


def sgd_step(param, grad, momentum_buffer=None, *, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
             nesterov=False, maximize=False, first_step=False):
    """One SGD step on one tensor, in place.

    ``momentum_buffer`` is required when ``momentum != 0``; ``first_step=True`` means it holds nothing yet and is
    set to the gradient (PyTorch's ``buf = grad.clone()`` when the state has no buffer).
    """
    g = signed_grad(grad, maximize)
    if weight_decay != 0:
        g = g + weight_decay * param
    if momentum != 0:
        if first_step:
            momentum_buffer[...] = g
        else:
            momentum_buffer *= momentum
            momentum_buffer += (1 - dampening) * g
        g = g + momentum * momentum_buffer if nesterov else momentum_buffer
    param += -lr * g
