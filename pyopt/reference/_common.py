"""Small pieces the references share."""


def lerp(start, end, weight):
    """PyTorch's ``torch.lerp``: ``start + w (end - start)`` for ``|w| < 0.5``, else ``end - (end - start)(1 - w)``.

    ``weight`` is rounded to the arrays' dtype first, as ATen does for a Python scalar weight.
    """
    w = start.dtype.type(weight)
    if abs(w) < 0.5:
        return start + w * (end - start)
    return end - (end - start) * (start.dtype.type(1) - w)


def signed_grad(grad, maximize):
    return -grad if maximize else grad
