"""``pyopt demo linesearch``: one compute budget, counted in sample-gradients (one example's loss gradient),
spent three ways on L2-regularized softmax regression: full-batch gradient descent with a strong Wolfe line
search, full-batch L-BFGS (:class:`pyopt.optim.GradientDescent`, :class:`pyopt.optim.LBFGS`; every objective
evaluation costs one pass over the training set), and mini-batch SGD (:class:`pyopt.optim.SGD`; a step costs
its batch size).  The test error each reaches as the budget is spent is Bottou & Bousquet's point ("The
Tradeoffs of Large Scale Learning", NIPS 2007): once the optimization error is below the estimation error,
more accurate optimization buys nothing, and the cheap noisy steps of SGD get there first.
"""
import numpy as np

from pyopt import optim
from pyopt.demo import data as datasets
from pyopt.demo._common import progress_bar, pyplot, save, steps_or

L2 = 1e-3
SGD_RUNS = (("SGD, batch 1", 1, 0.02), ("SGD, batch 16", 16, 0.1))  # (label, batch size, lr)
COLORS = {"gradient descent + Wolfe": "C0", "L-BFGS + Wolfe": "C2", "SGD, batch 1": "C3", "SGD, batch 16": "C1"}


class SoftmaxRegression:
    """Mean cross-entropy of ``softmax(x W^T + b)`` plus ``L2/2 |W|^2``, over a flat float64 vector ``(W, b)``."""

    def __init__(self, x, y, classes):
        self.x = np.hstack([x.astype(np.float64), np.ones((len(x), 1))])
        self.y, self.classes = y, classes
        self.shape = (classes, self.x.shape[1])
        self.size = classes * self.x.shape[1]

    def value_and_grad(self, w, rows=slice(None)):
        W = w.reshape(self.shape)
        x, y = self.x[rows], self.y[rows]
        z = x @ W.T
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        n = len(y)
        value = -logp[np.arange(n), y].mean() + 0.5 * L2 * float((W[:, :-1] ** 2).sum())
        d = np.exp(logp)
        d[np.arange(n), y] -= 1.0
        grad = (d.T @ x) / n
        grad[:, :-1] += L2 * W[:, :-1]
        return value, grad.reshape(-1)

    def error(self, w, x, y):
        """The misclassification rate of ``w`` on ``(x, y)``."""
        W = w.reshape(self.shape)
        return float(((x @ W[:, :-1].T + W[:, -1]).argmax(axis=1) != y).mean())


def full_batch(method, problem, data, budget_passes):
    """``method`` with at most ``budget_passes`` objective evaluations; the curve after every iteration."""
    n = len(problem.y)
    calls = [0]

    def value_and_grad(w):
        calls[0] += 1
        return problem.value_and_grad(w)

    curve = dict(sample_gradients=[n], test_error=[], train_loss=[])
    w0 = np.zeros(problem.size)
    curve["test_error"].append(problem.error(w0, data.x_test, data.y_test))
    curve["train_loss"].append(problem.value_and_grad(w0)[0])

    def record(iteration, w, value):
        curve["sample_gradients"].append(calls[0] * n)
        curve["test_error"].append(problem.error(w, data.x_test, data.y_test))
        curve["train_loss"].append(value)

    result = method.minimize(None, None, w0, max_iter=10**6, gtol=0.0, max_evaluations=budget_passes,
                             callback=record, value_and_grad=value_and_grad)
    curve.update(evaluations=result.evaluations, iterations=result.iterations, message=result.message, w=result.x)
    return curve


def minibatch_sgd(problem, data, budget, batch, lr, rng, points=60):
    """Mini-batch SGD on shuffled epochs until ``budget`` sample-gradients are spent; ``points`` log-spaced
    evaluations of the full training loss and the test error along the way."""
    n = len(problem.y)
    w = np.zeros(problem.size)
    grad = np.empty_like(w)
    opt = optim.SGD([w], lr=lr)
    steps = budget // batch
    marks = set(np.unique(np.geomspace(1, steps, points).astype(int)).tolist())
    curve = dict(sample_gradients=[0], test_error=[problem.error(w, data.x_test, data.y_test)],
                 train_loss=[problem.value_and_grad(w)[0]])
    order, cursor = rng.permutation(n), 0
    for t in range(1, steps + 1):
        if cursor + batch > n:
            order, cursor = rng.permutation(n), 0
        grad[...] = problem.value_and_grad(w, order[cursor:cursor + batch])[1]
        cursor += batch
        opt.step([grad])
        if t in marks:
            curve["sample_gradients"].append(t * batch)
            curve["test_error"].append(problem.error(w, data.x_test, data.y_test))
            curve["train_loss"].append(problem.value_and_grad(w)[0])
    curve.update(steps=steps, w=w)
    return curve


def run(out, *, seed=0, steps=None, tiny=False, progress=True, dataset="auto"):
    """``steps``: the budget in passes over the training set (default 30): full-batch methods get that many
    objective evaluations, SGD that many epochs of sample-gradients.  Writes ``linesearch.png``."""
    plt = pyplot()
    passes = steps_or(steps, 30, 4, tiny)
    data = datasets.load(dataset, rng=seed, limit=400 if tiny else None)
    problem = SoftmaxRegression(data.x_train, data.y_train, data.classes)
    n = len(data.y_train)
    budget = passes * n
    results = {}
    with progress_bar(progress) as bar:
        task = bar.add_task("linesearch: full batch", total=2 + len(SGD_RUNS) + 1)
        results["gradient descent + Wolfe"] = full_batch(optim.GradientDescent(), problem, data, passes)
        bar.advance(task)
        results["L-BFGS + Wolfe"] = full_batch(optim.LBFGS(), problem, data, passes)
        bar.advance(task)
        for label, batch, lr in SGD_RUNS:
            bar.update(task, description=f"linesearch: {label}")
            results[label] = minibatch_sgd(problem, data, budget, batch, lr, np.random.default_rng(seed + 1))
            bar.advance(task)
        bar.update(task, description="linesearch: optimum")
        optimum = full_batch(optim.LBFGS(), problem, data, 100 * passes if not tiny else 200)
        bar.advance(task)
    for curve in results.values():
        curve.update(initial_train_loss=curve["train_loss"][0], final_train_loss=curve["train_loss"][-1],
                     final_test_error=curve["test_error"][-1])
    best_loss, best_error = optimum["train_loss"][-1], optimum["test_error"][-1]

    fig, (ax_err, ax_loss) = plt.subplots(1, 2, figsize=(14, 5))
    for label, c in results.items():
        x = np.maximum(c["sample_gradients"], 1)
        spent = f"{c['steps']} steps" if "steps" in c else f"{c['evaluations']} evaluations"
        ax_err.plot(x, 100 * np.array(c["test_error"]), "o-", markersize=2.5, color=COLORS[label],
                    label=f"{label}: {100 * c['final_test_error']:.1f}% ({spent})")
        ax_loss.plot(x, np.maximum(np.array(c["train_loss"]) - best_loss, 1e-8), "o-", markersize=2.5,
                     color=COLORS[label], label=f"{label}: {c['final_train_loss'] - best_loss:.1e}")
    ax_err.axhline(100 * best_error, color="k", linestyle=":",
                   label=f"exact minimizer of the training loss: {100 * best_error:.1f}%")
    for ax in (ax_err, ax_loss):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axvline(n, color="0.6", linewidth=0.8, linestyle="--")
        ax.axvline(budget, color="0.3", linewidth=0.8)
        ax.set_xlabel(f"sample-gradients spent (dashed: one pass = {n:,}; solid: the budget, {budget:,})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax_err.set_ylim(1, 100)
    ax_err.set_ylabel("test error (%)")
    ax_err.set_title("test error (at the end of the budget in the legend)")
    ax_loss.set_ylabel("training loss - its minimum")
    ax_loss.set_title("optimization error")
    fig.suptitle(f"{data.name}: softmax regression (L2 {L2:g}), {n} training / {len(data.y_test)} test examples, "
                 f"the same budget of {passes} passes for every method")
    fig.tight_layout()
    path = save(fig, out, "linesearch.png")
    for c in list(results.values()) + [optimum]:
        c.pop("w")
    return dict(files=[path], dataset=data.name, budget=budget, passes=passes, methods=results,
                optimum=dict(train_loss=best_loss, test_error=best_error, evaluations=optimum["evaluations"]))
