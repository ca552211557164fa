"""What every demo shares: matplotlib behind a clear error, the progress bar, the output folder."""
import contextlib
import io
import os


class DemoError(RuntimeError):
    """A demo cannot run here (matplotlib is missing); the message says what to install."""


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display), or a DemoError saying how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise DemoError("pyopt demo draws with matplotlib, which is not installed: "
                        "pip install 'pyopt-kernels[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def output_dir(out):
    os.makedirs(out, exist_ok=True)
    return out


def save(fig, out, name):
    """Writes ``fig`` as ``out/name`` and closes it; returns the path.

    A 256-colour palette PNG (Pillow comes with matplotlib): the figures are flat colours and anti-aliased lines,
    which a palette keeps legible at a third of the size of matplotlib's RGBA output, small enough to commit.
    """
    from PIL import Image

    path = os.path.join(output_dir(out), name)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    pyplot().close(fig)
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


class _NoProgress:
    def add_task(self, description, total=None, **_):
        return 0

    def advance(self, task, advance=1):
        pass

    def update(self, task, **_):
        pass


@contextlib.contextmanager
def progress_bar(show):
    """A rich progress display (or a silent stand-in): ``add_task``, ``advance``, ``update`` as rich's."""
    if not show:
        yield _NoProgress()
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn()) as bar:
        yield bar


def steps_or(steps, default, tiny_default, tiny):
    """The step count: ``steps`` when given (>= 1), else the demo's default or its tiny default."""
    if steps is None:
        return tiny_default if tiny else default
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    return steps


def blas_single_thread():
    """A context that keeps BLAS on one thread where threadpoolctl is installed (it comes with scikit-learn).

    The demos multiply small matrices (32 x 128 x 128): a threaded BLAS spends more time waking and spinning its
    threads than computing, and competes with pyopt's own OpenMP threads; measured 8x slower per training step
    on the project's 2-core machine.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")
