"""``pyopt`` on the command line: ``pyopt bench`` times the kernels against the bandwidth probe and the peers."""
import argparse
import json
import platform
import sys
import time

import numpy as np

from pyopt import __version__, _c, backends, harness, harness_norms
from pyopt.runtime import get_num_threads


QUICK_CASES = ["2^16", "2^22", "tiny200"]
DEFAULT_CASES = ["2^16", "2^20", "2^24", "tiny200", "resnet50", "gpt2"]


def _cases(args):
    names = args.sizes.split(",") if args.sizes else (QUICK_CASES if args.quick else DEFAULT_CASES)
    cases = []
    for name in names:
        case = harness.case_of(name)
        # a case is timed in cache when Adam's 28 B/elem of it fit in the last-level cache
        cases.append((case, 28 * case.numel < harness.LLC_BYTES))
    return cases


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def bench(args):
    from rich.progress import Progress
    from rich.table import Table

    console = _console()
    if not _c.available():
        console.print(f"[red]The C backend is unavailable: {_c.IMPORT_ERROR}[/red]")
        return 1
    known = harness.available_optimizers() + list(harness_norms.NORM_OPS)
    ops = args.ops.split(",") if args.ops else known
    unknown = [op for op in ops if op not in known]
    if unknown:
        console.print(f"[red]unknown ops {unknown}; choose from {known}[/red]")
        return 2
    norm_ops = [op for op in ops if op in harness_norms.NORM_OPS]
    ops = [op for op in ops if op not in harness_norms.NORM_OPS]
    norm_shapes = {op: (args.norm_shapes.split(",") if args.norm_shapes else
                        (harness_norms.QUICK_NORM_SHAPES if args.quick else harness_norms.NORM_SHAPES)[op])
                   for op in norm_ops}
    try:
        cases = _cases(args)
    except ValueError as exc:
        console.print(f"[red]bad --sizes: {exc}[/red]")
        return 2
    pyopt_backends = args.backends.split(",")
    peers = tuple(p for p in args.against.split(",") if p)
    started = time.time()
    info = harness.machine_info()
    console.print(f"pyopt {__version__}: {info['threads']} threads, ISAs {info['isas']}, {len(ops)} ops x "
                  f"{len(cases)} cases, {args.repeats} interleaved repeats, peers {', '.join(peers) or 'none'}")
    rows, notes, measured, norm_measured = [], [], [], []
    with Progress(console=console, transient=True) as progress:
        n_norm = sum(len(s) for s in norm_shapes.values())
        task = progress.add_task("probe", total=2 * len(cases) + len(ops) * len(cases) + n_norm + 2)
        triad_start = harness.probe_triad(2**24, args.repeats)
        progress.advance(task)
        probes = {}
        for case, cache_resident in cases:
            probes[case.name] = harness.probe_rw43(case.numel, args.repeats, cache_resident=cache_resident)
            progress.advance(task)
        for op in ops:
            for case, cache_resident in cases:
                progress.update(task, description=f"{op} {case.name}")
                timings, case_notes = harness.run_optimizer_case(op, case, pyopt_backends, peers=peers,
                                                                 repeats=args.repeats, cache_resident=cache_resident)
                notes += [n for n in case_notes if n not in notes]
                measured.append((op, case, timings))
                progress.advance(task)
        for op, shapes in norm_shapes.items():
            for shape in shapes:
                progress.update(task, description=f"{op} {shape}")
                results, case_notes = harness_norms.run_norm_case(op, shape, pyopt_backends, peers=peers,
                                                                  repeats=args.repeats)
                notes += [n for n in case_notes if n not in notes]
                numel = int(np.prod(harness_norms.shape_of(shape)))
                probe = harness.probe_rw43(numel, args.repeats, cache_resident=False)
                norm_measured.append((op, shape, results, probe))
                progress.advance(task)
        probes_end = {case.name: harness.probe_rw43(case.numel, args.repeats, cache_resident=cache_resident)
                      for case, cache_resident in cases}
        triad_end = harness.probe_triad(2**24, args.repeats)
    # the roofline is the better of the two probes: a probe slowed by a busy moment must not flatter the kernels
    roofline = {name: min(probes[name].median, probes_end[name].median) for name in probes}
    for op, case, timings in measured:
        rows += _rows(op, case, timings, roofline[case.name], pyopt_backends[0])
    for op, shape, results, probe in norm_measured:
        rows += _norm_rows(op, shape, results, probe, pyopt_backends[0])
    table = Table(title="optimizer steps: median of interleaved repeats; GB/s from the minimum bytes; % of the "
                        "read-4/write-3 probe at the same size; faults/call: median minor page faults during a timed "
                        "call; speedup = contender time / pyopt time")
    for col in ("op", "case", "contender", "ms", "p20-p80 ms", "GB/s", "% probe", "% triad", "us/tensor",
                "faults/call", "pyopt speedup"):
        table.add_column(col, justify="left" if col in ("op", "case", "contender") else "right")
    for r in rows:
        speedup = "" if r["pyopt_speedup"] is None or r["contender"].startswith("pyopt") else \
            f"{r['pyopt_speedup']:.2f}x"
        table.add_row(r["op"], r["case"], r["contender"], f"{1e3 * r['median_s']:.3f}",
                      f"{1e3 * r['p20_s']:.3f}-{1e3 * r['p80_s']:.3f}", f"{r['gb_s']:.1f}", f"{r['pct_probe']:.0f}%",
                      f"{r['pct_triad']:.0f}%" if r.get("pct_triad") is not None else "",
                      f"{r['us_per_tensor']:.2f}" if r["tensors"] > 1 else "", f"{r['faults_per_call']:.0f}", speedup)
    console.print(table)
    for note in notes:
        console.print(f"note: {note}")
    triad = [12 * 2**24 / t.median / 1e9 for t in (triad_start, triad_end)]
    console.print(f"triad (2^24 fp32): {triad[0]:.1f} GB/s at the start, {triad[1]:.1f} GB/s at the end; "
                  "read-4/write-3 probe start/end: " + ", ".join(
                      f"{name} {28 * c.numel / probes[name].median / 1e9:.1f}/"
                      f"{28 * c.numel / probes_end[name].median / 1e9:.1f} GB/s"
                      for name, c in ((c.name, c) for c, _ in cases)))
    record = dict(time=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info, triad_gb_s=triad, repeats=args.repeats,
                  rows=rows, notes=notes)
    status = _write_outputs(args, record, console)
    console.print(f"finished in {time.time() - started:.0f} s")
    return status


def _rows(op, case, timings, probe_seconds, first_backend):
    nbytes = harness.optimizer_bytes(op, case)
    probe_gbs = 28 * case.numel / probe_seconds / 1e9
    base = timings.get(f"pyopt-{first_backend}")
    rows = []
    for name, t in timings.items():
        gbs = nbytes / t.median / 1e9
        rows.append(dict(op=op, case=case.name, tensors=len(case.sizes), numel=case.numel, contender=name,
                         median_s=t.median, p20_s=t.p20, p80_s=t.p80, bytes=nbytes, gb_s=gbs,
                         pct_probe=100 * gbs / probe_gbs, probe_gb_s=probe_gbs,
                         us_per_tensor=1e6 * t.median / len(case.sizes), faults_per_call=t.faults,
                         pyopt_speedup=t.median / base.median if base else None))
    return rows


def _paired_pct(nbytes, t, triad_bytes, triad):
    """A contender's GB/s as a percentage of the triad's, round by round (the two calls of a round run within
    milliseconds of each other), median over the rounds.  On this VM the bandwidth drifts from ~26 to ~70 GB/s
    within a run; a ratio of the two medians can pair a kernel's slow rounds with the triad's fast ones (a
    BatchNorm pass at 53% of a 57.5 GB/s triad median while the 2^24 triad read 30-43)."""
    ratios = [100 * (nbytes / k) / (triad_bytes / p) for k, p in zip(t.samples, triad.samples)]
    return float(np.median(ratios))


def _norm_rows(op, shape_text, results, probe, first_backend):
    """Table rows of a norm case; each pass's % triad is against the triad timed in its own rounds: the median of
    the per-round ratios (``pct_triad``); ``pct_triad_medians`` is the ratio of the two medians."""
    shape = harness_norms.shape_of(shape_text)
    numel = int(np.prod(shape))
    probe_gbs = 28 * numel / probe.median / 1e9
    rows = []
    for which, timings in results.items():
        timings = dict(timings)
        triad = timings.pop(harness_norms.TRIAD)
        triad_gbs = 12 * numel / triad.median / 1e9
        nbytes = harness_norms.norm_bytes(op, shape, 4, which)
        base = timings.get(f"pyopt-{first_backend}")
        for name, t in timings.items():
            gbs = nbytes / t.median / 1e9
            rows.append(dict(op=op, case=f"{shape_text} {which}", tensors=1, numel=numel, contender=name,
                             median_s=t.median, p20_s=t.p20, p80_s=t.p80, bytes=nbytes, gb_s=gbs,
                             pct_probe=100 * gbs / probe_gbs, probe_gb_s=probe_gbs,
                             pct_triad=_paired_pct(nbytes, t, 12 * numel, triad),
                             pct_triad_medians=100 * gbs / triad_gbs, triad_gb_s=triad_gbs,
                             us_per_tensor=1e6 * t.median, faults_per_call=t.faults,
                             pyopt_speedup=t.median / base.median if base else None))
    return rows


def _write_outputs(args, record, console):
    """--json, --history/--compare and --plot; returns the exit status (1 when --compare finds a regression)."""
    status = 0
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=1)
        console.print(f"wrote {args.json}")
    if args.history:
        previous = None
        if args.compare:
            try:
                with open(args.history) as fh:
                    lines = [line for line in fh if line.strip()]
                previous = json.loads(lines[-1]) if lines else None
            except FileNotFoundError:
                previous = None
        if args.compare and previous is None:
            console.print(f"--compare: no earlier run in {args.history}; this run becomes the baseline")
        elif args.compare:
            found = harness.regressions(previous, record)
            for row, old, slowdown in found:
                console.print(f"[red]regression[/red] {row['op']} {row['case']} {row['contender']}: "
                              f"{old['pct_probe']:.0f}% -> {row['pct_probe']:.0f}% of the probe "
                              f"({100 * slowdown:.0f}% slower than {previous['time']}, beyond both runs' noise)")
            if not found:
                console.print(f"--compare: no regression against the run of {previous['time']}")
            status = 1 if found else 0
        with open(args.history, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        console.print(f"appended to {args.history}")
    if args.plot:
        try:
            harness.plot(record, args.plot)
        except ImportError:
            console.print("[red]--plot needs matplotlib: pip install 'pyopt-kernels[plot]'[/red]")
            return 1
        console.print(f"wrote {args.plot}")
    return status


def check(args):
    """Every op x backend x dtype against the float64 reference; exit status 1 on any mismatch."""
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


def demo(args):
    """Runs the chosen demos; a missing matplotlib or pyopt feature is one clear line and exit status 2."""
    from pyopt import demo as demos

    names = list(demos.DEMOS) if args.name == "all" else [args.name]
    for name in names:
        started = time.time()
        try:
            result = demos.run(name, args.out, seed=args.seed, steps=args.steps, tiny=args.tiny,
                               progress=not args.quiet, dataset=args.dataset)
        except demos.DemoError as error:
            print(f"pyopt demo: {error}", file=sys.stderr)
            return 2
        where = f" ({result['dataset']})" if "dataset" in result else ""
        print(f"{name}{where}: {time.time() - started:.1f} s")
        for path in result["files"]:
            print(f"wrote {path}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pyopt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="time the kernels against the bandwidth probe and the peers")
    b.add_argument("--quick", action="store_true", help=f"cases {','.join(QUICK_CASES)}: under a minute")
    b.add_argument("--ops", help="comma-separated ops (default: all)")
    b.add_argument("--sizes", help="comma-separated cases: 2^16, 65536, 200x1024, gpt2, resnet50, tiny200 "
                                   f"(default: {','.join(DEFAULT_CASES)})")
    b.add_argument("--norm-shapes", help="comma-separated shapes for the norm ops, such as 2048x4096 or "
                                         "32x64x56x56 (default: per op)")
    b.add_argument("--backends", default="c", help="pyopt backends to time (default: c)")
    b.add_argument("--against", default="numpy,torch,deepspeed",
                   help="peers: numpy,torch,deepspeed (those installed; an empty string for none)")
    b.add_argument("--repeats", type=int, default=7, help="interleaved repeats per case (at least 7)")
    b.add_argument("--json", help="write the results as JSON to this file")
    b.add_argument("--history", help="append the results as one JSON line to this file")
    b.add_argument("--compare", action="store_true", help="with --history: flag regressions against its last run")
    b.add_argument("--plot", help="write GB/s against size per contender, with the probe roofline, to this PNG")
    b.set_defaults(func=bench)
    c = sub.add_parser("check", help="every op x backend x dtype against the float64 reference")
    c.add_argument("--ops", help="comma-separated ops (default: all)")
    c.add_argument("--backend", help="comma-separated backends (default: every one that can run here)")
    c.set_defaults(func=check)
    i = sub.add_parser("info", help="versions, CPU features, threads, backends")
    i.set_defaults(func=info)
    d = sub.add_parser("demo", help="plot the lecture's claims with pyopt's kernels (needs matplotlib)",
                       description="Each demo writes PNGs under --out and prints their paths; see pyopt.demo.")
    d.add_argument("name", choices=["optimizers", "schedules", "trajectories", "init", "linesearch", "all"])
    d.add_argument("--out", default="pyopt-demo", help="output folder (default: ./pyopt-demo)")
    d.add_argument("--seed", type=int, default=0, help="seed of the data split, the weights and the batches")
    d.add_argument("--steps", type=_positive_int, help="training steps per run (linesearch: the budget in "
                   "passes over the data; trajectories: steps on the valley, x10 on Rosenbrock)")
    d.add_argument("--tiny", action="store_true", help="tiny sizes: a few seconds each (tests)")
    d.add_argument("--dataset", choices=["auto", "digits", "spirals"], default="auto",
                   help="digits needs scikit-learn; auto falls back to synthetic spirals without it")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=demo)
    args = parser.parse_args(argv)
    if getattr(args, "repeats", 7) < 1:
        parser.error("--repeats must be at least 1")
    if getattr(args, "compare", False) and not args.history:
        parser.error("--compare needs --history FILE")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
