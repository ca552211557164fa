"""``pyopt demo trajectories``: the paths of gradient descent, with and without momentum, on an ill-conditioned
2-D valley and on Rosenbrock's banana, for a learning rate too small, one about right and one too large.

The valley is :math:`f(x, y) = (0.1 x^2 + 12 y^2)/2` (condition number 120), run at the lecture's rates 0.01, 0.1
and 0.4: plain descent is stable for rates below :math:`2/12 = 0.17`, so 0.4 diverges, and along the flat
axis it contracts by :math:`1 - 0.1\\,\\mathrm{lr}` per step, which is slow; heavy-ball momentum 0.9 contracts by
about :math:`\\sqrt{0.9} = 0.95` per step there, and stays stable up to :math:`2(1 + 0.9)/12 = 0.32`.
Rosenbrock, :math:`(1 - x)^2 + 100 (y - x^2)^2` from (-1.2, 1), is about 100 times more curved, so its rates are the
same story 100 times smaller (1e-4, 1e-3, 4e-3), over ten times as many steps.  Every run steps
:class:`pyopt.optim.SGD` on a 2-element float64 parameter.
"""
import math

import numpy as np

from pyopt import optim
from pyopt.demo._common import progress_bar, pyplot, save, steps_or

MOMENTUM = 0.9
ESCAPE = 1e6  # a run whose iterate leaves this box has diverged


def valley(p):
    x, y = p
    return 0.5 * (0.1 * x * x + 12.0 * y * y), np.array([0.1 * x, 12.0 * y])


def rosenbrock(p):
    x, y = p
    r = y - x * x
    return (1 - x) ** 2 + 100.0 * r * r, np.array([-2.0 * (1 - x) - 400.0 * x * r, 200.0 * r])


# name: (function, start, minimizer, learning rates, steps multiplier, plot box)
PROBLEMS = {
    "valley": (valley, (-9.0, 1.5), (0.0, 0.0), (0.01, 0.1, 0.4), 1, ((-10, 2), (-2.2, 2.2))),
    "rosenbrock": (rosenbrock, (-1.2, 1.0), (1.0, 1.0), (1e-4, 1e-3, 4e-3), 10, ((-1.6, 1.6), (-0.6, 1.6))),
}


def descend(fn, start, lr, momentum, steps):
    """``steps`` SGD steps from ``start``; stops early when the iterate leaves the box or stops being finite."""
    p = np.array(start, dtype=np.float64)
    grad = np.empty(2)
    opt = optim.SGD([p], lr=lr, momentum=momentum)
    path, values = [p.copy()], [fn(p)[0]]
    diverged = False
    for _ in range(steps):
        value, g = fn(p)
        grad[...] = g
        opt.step([grad])
        value = fn(p)[0]
        if not (np.isfinite(p).all() and math.isfinite(value) and np.abs(p).max() < ESCAPE):
            diverged = True
            break
        path.append(p.copy())
        values.append(value)
    return dict(path=np.array(path), values=values, initial=values[0], final=values[-1], diverged=diverged,
                steps=len(values) - 1)


def run(out, *, seed=0, steps=None, tiny=False, progress=True):
    """Runs every (problem, rate, momentum); writes ``trajectories.png``; returns the runs' values and paths.

    ``steps``: steps on the valley (default 200); Rosenbrock gets ten times as many.  ``seed`` is unused: the
    runs are deterministic.
    """
    plt = pyplot()
    steps = steps_or(steps, 200, 30, tiny)
    runs = [(name, lr, m) for name, spec in PROBLEMS.items() for lr in spec[3] for m in (0.0, MOMENTUM)]
    results = {name: {} for name in PROBLEMS}
    with progress_bar(progress) as bar:
        task = bar.add_task("trajectories", total=len(runs))
        for name, lr, m in runs:
            fn, start, _, _, factor, _ = PROBLEMS[name]
            results[name].setdefault(f"{lr:g}", {})["momentum" if m else "gd"] = descend(fn, start, lr, m,
                                                                                          steps * factor)
            bar.advance(task)

    fig, axes = plt.subplots(2, 4, figsize=(18, 8), width_ratios=(1, 1, 1, 1.1))
    for row, (name, (fn, start, minimum, rates, factor, box)) in zip(axes, PROBLEMS.items()):
        xs, ys = np.linspace(*box[0], 300), np.linspace(*box[1], 300)
        X, Y = np.meshgrid(xs, ys)
        Z = fn((X, Y))[0]
        levels = np.geomspace(max(Z.min(), 1e-3), Z.max(), 18)
        for ax, lr in zip(row[:3], rates):
            ax.contour(X, Y, Z, levels=levels, colors="0.75", linewidths=0.7)
            ax.plot(*minimum, "k*", markersize=10)
            for kind, color, style in (("gd", "C0", "o-"), ("momentum", "C3", "s-")):
                r = results[name][f"{lr:g}"][kind]
                label = "gradient descent" if kind == "gd" else f"momentum {MOMENTUM}"
                label += f": diverged at step {r['steps'] + 1}" if r["diverged"] else f": f = {r['final']:.2g}"
                ax.plot(r["path"][:, 0], r["path"][:, 1], style, color=color, markersize=2, linewidth=1,
                        label=label, alpha=0.85, markevery=max(1, len(r["path"]) // 200))
            ax.set_xlim(*box[0])
            ax.set_ylim(*box[1])
            ax.set_title(f"{name}, lr = {lr:g}, {steps * factor} steps")
            ax.legend(fontsize=8, loc="lower right" if name == "valley" else "lower left")
        ax = row[3]
        for i, lr in enumerate(rates):
            for kind, style in (("gd", "-"), ("momentum", "--")):
                r = results[name][f"{lr:g}"][kind]
                ax.plot(np.maximum(r["values"], 1e-16), style, color=f"C{i}",
                        label=f"lr {lr:g}" + (f", momentum {MOMENTUM}" if kind == "momentum" else "")
                        + (" (diverged)" if r["diverged"] else ""))
        ax.set_yscale("log")
        ax.set_ylim(1e-12, 1e3 * fn(start)[0])  # diverged runs leave through the top
        ax.set_xlabel("step")
        ax.set_ylabel("f - f*")
        ax.set_title(f"{name}: loss per step")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Gradient descent (circles) and heavy-ball momentum (squares): too small a rate crawls, too large "
                 "a rate diverges or bounces, momentum runs along the flat valley floor")
    fig.tight_layout()
    path = save(fig, out, "trajectories.png")
    return dict(files=[path], steps=steps, problems=results)
