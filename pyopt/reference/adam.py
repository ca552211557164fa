"""Adam and AdamW, as ``torch.optim.Adam`` / ``torch.optim.AdamW`` compute them (single-tensor path).

With ``g`` the gradient (negated when ``maximize``) and ``t`` the step after incrementing:

.. math::

    p &\\leftarrow p\\,(1 - \\eta\\lambda)                  && \\text{AdamW (decoupled weight decay)}\\\\
    g &\\leftarrow g + \\lambda p                          && \\text{Adam (L2 weight decay)}\\\\
    m &\\leftarrow \\operatorname{lerp}(m, g, 1-\\beta_1)\\\\
    v &\\leftarrow \\beta_2 v + (1-\\beta_2)\\, g^2\\\\
    \\hat v &= \\max(\\hat v, v) \\text{ if amsgrad else } v\\\\
    p &\\leftarrow p - \\frac{\\eta}{1-\\beta_1^t}\\, \\frac{m}{\\sqrt{\\hat v}/\\sqrt{1-\\beta_2^t} + \\epsilon}

Symbols: :math:`\\eta` = ``lr``, :math:`\\beta_{1,2}` = ``betas``, :math:`\\epsilon` = ``eps``,
:math:`\\lambda` = ``weight_decay``; state names ``exp_avg`` (m), ``exp_avg_sq`` (v), ``max_exp_avg_sq``.
Convention: PyTorch's, where eps is added after the bias correction of sqrt(v) (Kingma & Ba 2015 add it to
sqrt(v_hat)), so trajectories interchange with torch.optim.
References: Kingma & Ba, "Adam", ICLR 2015; Loshchilov & Hutter, "Decoupled Weight Decay Regularization",
ICLR 2019; Reddi et al., "On the Convergence of Adam and Beyond" (amsgrad), ICLR 2018.

Bytes per element (fp32), the minimum a fused step moves: read p, g, m, v and write p, m, v = 28 (amsgrad 36).
"""
import numpy as np

from pyopt.reference._common import lerp, signed_grad


def bytes_moved(numel, itemsize, *, amsgrad=False, **_):
    """Minimum bytes one fused step moves: read p, g, m, v, write p, m, v (+ read and write max_exp_avg_sq)."""
    return numel * itemsize * (9 if amsgrad else 7)


def bias_corrections(lr, beta1, beta2, step):
    """The step-dependent scalars, in float64 exactly as torch computes them: (step_size, bias_correction2_sqrt)."""
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    return lr / bias_correction1, bias_correction2**0.5


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, *, step, lr=1e-3, betas=(0.9, 0.999),
              eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False, decoupled_weight_decay=False):
    """One Adam step on one tensor, in place.  ``step`` is the step count after this update (1 on the first)."""
    beta1, beta2 = betas
    g = signed_grad(grad, maximize)
    if weight_decay != 0:
        if decoupled_weight_decay:
            param *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * param
    exp_avg[...] = lerp(exp_avg, g, 1 - beta1)
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * g * g
    step_size, bias_correction2_sqrt = bias_corrections(lr, beta1, beta2, step)
    if amsgrad:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)  # NaN propagates, as in torch.maximum
        second_moment = max_exp_avg_sq
    else:
        second_moment = exp_avg_sq
    denom = np.sqrt(second_moment) / bias_correction2_sqrt + eps
    param += -step_size * exp_avg / denom


def adamw_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, *, step, lr=1e-3, betas=(0.9, 0.999),
               eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False):
    """One AdamW step (decoupled weight decay, PyTorch's default ``weight_decay=1e-2``) on one tensor, in place."""
    adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step=step, lr=lr, betas=betas, eps=eps,
              weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize, decoupled_weight_decay=True)

