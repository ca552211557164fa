"""The comparison helper: one place that says how two results differ (max abs/rel error, first mismatching
indices, NaN/Inf parity) so a failing test explains itself."""
import numpy as np


def describe_mismatch(actual, expected, rtol, atol, name="value"):
    """None when ``actual`` matches ``expected`` within ``atol + rtol * |expected|`` (NaN where NaN), else a report."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        return f"{name}: shape {actual.shape} != expected {expected.shape}"
    if actual.size == 0:
        return None
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    inf_mismatch = (np.isinf(a) | np.isinf(e)) & (a != e)
    close = np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True) & ~inf_mismatch
    if close.all():
        return None
    bad = np.flatnonzero(~close.ravel())
    with np.errstate(invalid="ignore", divide="ignore"):
        abs_err = np.abs(a - e)
        rel_err = abs_err / np.abs(e)
    finite = np.isfinite(abs_err)
    lines = [
        f"{name}: {bad.size} of {a.size} elements differ beyond rtol={rtol:g}, atol={atol:g}",
        f"  max abs error {np.max(abs_err[finite], initial=0):.3e}, "
        f"max rel error {np.max(np.where(finite & (e != 0), rel_err, 0), initial=0):.3e}",
        f"  NaN parity: actual {int(nan_a.sum())}, expected {int(nan_e.sum())}; Inf mismatches {int(inf_mismatch.sum())}",
    ]
    for flat in bad[:5]:
        idx = np.unravel_index(flat, a.shape)
        lines.append(f"  at {tuple(int(i) for i in idx)}: actual {actual[idx]!r}, expected {expected[idx]!r}")
    return "\n".join(lines)


def assert_close(actual, expected, rtol, atol, name="value"):
    report = describe_mismatch(actual, expected, rtol, atol, name)
    assert report is None, report


def assert_bitwise(actual, expected, name="value"):
    """Same dtype, same shape, same bits (NaNs included)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    same = actual.reshape(-1).view(np.uint8) == expected.reshape(-1).view(np.uint8)
    if not same.all():
        report = describe_mismatch(actual, expected, 0.0, 0.0, name) or f"{name}: same values, different bits"
        raise AssertionError("not bitwise equal\n" + report)
