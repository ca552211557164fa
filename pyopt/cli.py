"""``pyopt`` on the command line: ``pyopt bench`` times the kernels against the bandwidth probe and the peers."""
import argparse
import json
import platform
import sys
import time

import numpy as np

from pyopt import __version__, _c, backends, harness
from pyopt.runtime import get_num_threads


def parse_size(text):
    """'2^24', '65536' or '200x1024' (a list of 200 tensors of 1024 elements)."""
    text = text.strip()
    if "x" in text:
        count, size = text.split("x")
        return [parse_size(size)[0]] * int(count)
    if "^" in text:
        base, exp = text.split("^")
        return [int(base) ** int(exp)]
    return [int(text)]


def default_cases(quick):
    dram = 2**22 if quick else 2**24
    return [
        (harness.Case("2^16", [2**16]), True),
        (harness.Case(f"2^{dram.bit_length() - 1}", [dram]), False),
        (harness.Case("200x1024", [1024] * 200), True),
    ]


def bench(args):
    from rich.console import Console
    from rich.table import Table

    console = _console()
    if not _c.available():
        console.print(f"[red]The C backend is unavailable: {_c.IMPORT_ERROR}[/red]")
        return 1
    ops = args.ops.split(",") if args.ops else harness.available_optimizers()
    unknown = [op for op in ops if op not in harness.available_optimizers()]
    if unknown:
        console.print(f"[red]unknown ops {unknown}; choose from {harness.available_optimizers()}[/red]")
        return 2
    if args.sizes:
        cases = [(harness.Case(s, parse_size(s)), sum(parse_size(s)) * 28 < harness.LLC_BYTES)
                 for s in args.sizes.split(",")]
    else:
        cases = default_cases(args.quick)
    pyopt_backends = args.backends.split(",")
    peers = tuple(p for p in args.against.split(",") if p)
    started = time.time()
    console.print(f"pyopt {__version__}: {get_num_threads()} threads, ISAs {_c.isas()}, "
                  f"{len(ops)} ops x {len(cases)} cases, {args.repeats} interleaved repeats")
    probes = {}
    for case, cache_resident in cases:
        probes[case.name] = harness.probe_rw43(case.numel, args.repeats, cache_resident=cache_resident)
    triad_before = harness.probe_triad(2**24, args.repeats)
    rows = []
    for op in ops:
        for case, cache_resident in cases:
            timings = harness.run_optimizer_case(op, case, pyopt_backends, peers=peers, repeats=args.repeats,
                                                 cache_resident=cache_resident)
            nbytes = harness.optimizer_bytes(op, case)
            probe_gbs = 28 * case.numel / probes[case.name].median / 1e9
            base = timings.get(f"pyopt-{pyopt_backends[0]}")
            for name, t in timings.items():
                gbs = nbytes / t.median / 1e9
                rows.append(dict(op=op, case=case.name, tensors=len(case.sizes), numel=case.numel,
                                 contender=name, median_s=t.median, p20_s=t.p20, p80_s=t.p80, bytes=nbytes,
                                 gb_s=gbs, pct_probe=100 * gbs / probe_gbs, probe_gb_s=probe_gbs,
                                 us_per_tensor=1e6 * t.median / len(case.sizes),
                                 pyopt_speedup=t.median / base.median if base else None))
    triad_after = harness.probe_triad(2**24, args.repeats)
    table = Table(title="optimizer steps (median of interleaved repeats; % of the read-4/write-3 probe at "
                        "the same size)")
    for col in ("op", "case", "contender", "ms", "p20-p80 ms", "GB/s", "% probe", "us/tensor", "pyopt speedup"):
        table.add_column(col, justify="left" if col in ("op", "case", "contender") else "right")
    for r in rows:
        speedup = "" if r["pyopt_speedup"] is None or r["contender"].startswith("pyopt") else \
            f"{r['pyopt_speedup']:.2f}x"
        table.add_row(r["op"], r["case"], r["contender"], f"{1e3 * r['median_s']:.3f}",
                      f"{1e3 * r['p20_s']:.3f}-{1e3 * r['p80_s']:.3f}", f"{r['gb_s']:.1f}",
                      f"{r['pct_probe']:.0f}%", f"{r['us_per_tensor']:.2f}" if r["tensors"] > 1 else "", speedup)
    console.print(table)
    triad_gbs = [12 * 2**24 / t.median / 1e9 for t in (triad_before, triad_after)]
    console.print(f"triad (2^24 fp32) {triad_gbs[0]:.1f} GB/s at the start, {triad_gbs[1]:.1f} GB/s at the end; "
                  + ", ".join(f"probe {k}: {28 * c.numel / probes[k].median / 1e9:.1f} GB/s"
                              for k, c in ((c.name, c) for c, _ in cases)))
    console.print(f"finished in {time.time() - started:.0f} s")
    if args.json:
        record = dict(pyopt=__version__, time=time.strftime("%Y-%m-%dT%H:%M:%S"), machine=platform.machine(),
                      python=platform.python_version(), numpy=np.__version__, threads=get_num_threads(),
                      isas=_c.isas(), triad_gb_s=triad_gbs, rows=rows)
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=1)
        console.print(f"wrote {args.json}")
    return 0


def check(args):
    """Every op x backend x dtype against the float64 reference; exit status 1 on any mismatch."""
    from rich.console import Console
    from rich.table import Table

    from pyopt.check import check_all

    rows = check_all(ops=args.ops.split(",") if args.ops else None,
                     backend_names=args.backend.split(",") if args.backend else None)
    table = Table(title="pyopt check: fast kernels against the float64 reference (worst over 3 steps, every "
                        "param and state buffer)")
    for col in ("op", "config", "backend", "dtype", "max abs", "max rel", "max ulp", "worst at", "result"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.op, ", ".join(f"{k}={v}" for k, v in r.config.items()) or "defaults", r.backend, r.dtype,
                      f"{r.max_abs:.2e}", f"{r.max_rel:.2e}", f"{r.max_ulp:.1f}", r.worst,
                      "[green]pass[/green]" if r.ok else "[red]FAIL[/red]")
    console = _console()
    console.print(table)
    failed = sum(not r.ok for r in rows)
    console.print(f"{len(rows) - failed} passed, {failed} failed")
    return 1 if failed or not rows else 0


def _console():
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


def info(args):
    print(f"pyopt {__version__}, python {platform.python_version()}, numpy {np.__version__}")
    print(f"threads: {get_num_threads()}")
    if _c.available():
        print(f"ISA variants: {_c.isas()}")
    for name, why in backends.available().items():
        print(f"backend {name}: {'available' if why is None else 'unavailable: ' + why}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pyopt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="time the kernels against the bandwidth probe and the peers")
    b.add_argument("--quick", action="store_true", help="smaller DRAM case; under a minute")
    b.add_argument("--ops", help="comma-separated ops (default: all)")
    b.add_argument("--sizes", help="comma-separated sizes such as 2^16,2^24,200x1024")
    b.add_argument("--backends", default="c", help="pyopt backends to time (default: c)")
    b.add_argument("--against", default="numpy,torch", help="peers: numpy,torch (those installed)")
    b.add_argument("--repeats", type=int, default=7, help="interleaved repeats per case (at least 7)")
    b.add_argument("--json", help="write the results as JSON to this file")
    b.set_defaults(func=bench)
    c = sub.add_parser("check", help="every op x backend x dtype against the float64 reference")
    c.add_argument("--ops", help="comma-separated ops (default: all)")
    c.add_argument("--backend", help="comma-separated backends (default: every one that can run here)")
    c.set_defaults(func=check)
    i = sub.add_parser("info", help="versions, CPU features, threads, backends")
    i.set_defaults(func=info)
    args = parser.parse_args(argv)
    if getattr(args, "repeats", 7) < 1:
        parser.error("--repeats must be at least 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
