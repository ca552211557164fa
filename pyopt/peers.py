"""What pyopt is measured against in ``pyopt bench``: NumPy written in place, PyTorch's optimizers (single-tensor,
``foreach`` and ``fused``) and DeepSpeed's CPU Adam, each driven on the same data as pyopt.

Each ``*_contenders(op, sets)`` returns {label: fn(r)} where ``fn(r)`` takes one step on buffer set ``r % len``,
or raises ImportError when the peer is not installed.
"""
import numpy as np

TORCH_CLASSES = {"sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW"}
TORCH_FUSED = {"sgd", "adagrad", "adam", "adamw"}  # torch 2.13 has CPU fused kernels for these, not RMSprop


# ---- NumPy in place: the fewest temporaries a NumPy user can manage (one scratch buffer per tensor) ----
def _numpy_inplace_step(op, kwargs):
    lr = kwargs.get("lr", 1e-3)

    def sgd(p, g, s, scratch, step):
        momentum = kwargs.get("momentum", 0.0)
        if momentum:
            buf = s.setdefault("b", g.copy()) if step == 1 else s["b"]
            if step > 1:
                buf *= momentum
                buf += g
            np.multiply(buf, -lr, out=scratch)
        else:
            np.multiply(g, -lr, out=scratch)
        p += scratch

    def adagrad(p, g, s, scratch, step):
        acc = s.setdefault("sum", np.zeros_like(p))
        np.multiply(g, g, out=scratch)
        acc += scratch
        np.sqrt(acc, out=scratch)
        scratch += 1e-10
        np.divide(g, scratch, out=scratch)
        scratch *= -lr
        p += scratch

    def rmsprop(p, g, s, scratch, step, alpha=0.99):
        sq = s.setdefault("sq", np.zeros_like(p))
        sq *= alpha
        np.multiply(g, g, out=scratch)
        scratch *= 1 - alpha
        sq += scratch
        np.sqrt(sq, out=scratch)
        scratch += 1e-8
        np.divide(g, scratch, out=scratch)
        scratch *= -lr
        p += scratch

    def adam(p, g, s, scratch, step, beta1=0.9, beta2=0.999):
        m, v = s.setdefault("m", np.zeros_like(p)), s.setdefault("v", np.zeros_like(p))
        if op == "adamw":
            p *= 1 - lr * kwargs.get("weight_decay", 1e-2)
        m *= beta1
        np.multiply(g, 1 - beta1, out=scratch)
        m += scratch
        v *= beta2
        np.multiply(g, g, out=scratch)
        scratch *= 1 - beta2
        v += scratch
        np.sqrt(v, out=scratch)
        scratch *= 1 / (1 - beta2**step) ** 0.5
        scratch += 1e-8
        np.divide(m, scratch, out=scratch)
        scratch *= -lr / (1 - beta1**step)
        p += scratch

    return {"sgd": sgd, "adagrad": adagrad, "rmsprop": rmsprop, "adam": adam, "adamw": adam}[op]


def numpy_inplace_contenders(op, kwargs, sets):
    update = _numpy_inplace_step(op, kwargs)
    states = [([{} for _ in params], [np.empty_like(p) for p in params]) for params, _ in sets]
    steps = [0] * len(sets)

    def run(r):
        k = r % len(sets)
        steps[k] += 1
        params, grads = sets[k]
        state, scratch = states[k]
        for p, g, s, tmp in zip(params, grads, state, scratch):
            update(p, g, s, tmp, steps[k])

    return {"numpy-inplace": run}


# ---- PyTorch ----
def torch_contenders(op, kwargs, sets):
    """torch.optim's single-tensor, foreach and (where it exists on the CPU) fused implementations."""
    import torch

    variants = {"torch": dict(foreach=False), "torch-foreach": dict(foreach=True)}
    if op in TORCH_FUSED:
        variants["torch-fused"] = dict(fused=True)
    out = {}
    for label, extra in variants.items():
        opts = []
        for params, grads in sets:
            tparams = [torch.from_numpy(p) for p in params]  # the same memory: torch updates pyopt's arrays in place
            for tp, g in zip(tparams, grads):
                tp.grad = torch.from_numpy(g)
            opts.append(getattr(torch.optim, TORCH_CLASSES[op])(tparams, **kwargs, **extra))
        out[label] = (lambda opts: (lambda r: opts[r % len(opts)].step()))(opts)
    return out


def deepspeed_contenders(op, kwargs, sets):
    """DeepSpeed's CPU Adam (adamw_mode for AdamW); its first use compiles an extension (about 90 s)."""
    if op not in ("adam", "adamw"):
        return {}
    import torch
    from deepspeed.ops.adam import DeepSpeedCPUAdam

    opts = []
    for params, grads in sets:
        tparams = [torch.nn.Parameter(torch.from_numpy(p)) for p in params]
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g)
        opts.append(DeepSpeedCPUAdam(tparams, adamw_mode=op == "adamw", **kwargs))
    return {"deepspeed": lambda r: opts[r % len(opts)].step()}
