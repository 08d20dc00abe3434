"""The ``doodle`` command (also ``python -m doodle_utils``): every non-notebook step.

Subcommands: ``synth``, ``simplify``, ``simplify-check``, ``pack``, ``verify``, ``demo``.
Heavy modules are imported inside each subcommand so ``doodle --help`` stays instant.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _synth(a: argparse.Namespace) -> int:
    from .synth import make_competition

    t0 = time.perf_counter()
    summary = make_competition(a.out_dir, classes=a.classes, per_class=a.per_class,
                               test_per_class=a.test_per_class, seed=a.seed, unrecognized=a.unrecognized)
    print(json.dumps(summary, indent=1, default=str))
    print(f"synthetic competition written to {a.out_dir} in {time.perf_counter() - t0:.1f}s")
    return 0


def _simplify(a: argparse.Namespace) -> int:
    from . import data
    from .simplify import simplify_packed

    report = data.SkipReport()

    def chunks():
        for c in data.iter_ndjson(a.input, raw=True, lenient=a.lenient, report=report,
                                  check_word_matches_file=False):
            d = c.drawings
            xy, so, do = simplify_packed(d.xy.astype("float64"), d.stroke_offsets, d.drawing_offsets)
            yield c.meta, data.Drawings(xy, None, so, do)

    n = data.write_ndjson_chunks(a.output, chunks())
    print(f"simplified {n} drawings into {a.output}; {report}")
    for ex in report.examples:
        print(f"  {ex}")
    return 0


def _simplify_check(a: argparse.Namespace) -> int:
    from .simplify import agreement_report

    print(json.dumps(agreement_report(Path(a.raw_dir), Path(a.simplified_dir)), indent=1, default=str))
    return 0


def _pack_kwargs(a: argparse.Namespace) -> dict:
    return dict(kind=a.kind, workers=a.workers, valid_frac=a.valid_frac, seed=a.seed, lenient=a.lenient)


def _pack(a: argparse.Namespace) -> int:
    from .store import pack_competition

    t0 = time.perf_counter()
    result = pack_competition(a.src_dir, a.store_dir, **_pack_kwargs(a))
    for name, m in result.items():
        print(f"{name}: {m['drawings']} drawings, {m['points']} points, skipped {m['skipped'] or 'none'}")
    print(f"packed into {a.store_dir} in {time.perf_counter() - t0:.1f}s")
    return 0


def _verify(a: argparse.Namespace) -> int:
    from .store import Store, StoreError

    try:
        st = Store(a.store_dir, verify="full" if a.full else "quick")
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    m = st.manifest
    print(f"{a.store_dir}: ok ({m['kind']}, {m['drawings']} drawings, {len(st.words)} classes, "
          f"{m['valid']['count']} validation)")
    return 0


def _demo(a: argparse.Namespace) -> int:
    from .store import pack_competition
    from .synth import make_competition

    out = Path(a.out)
    data_dir, store_dir = out / "data", out / "store"
    print(f"1/2 synthesising a {a.classes}-class competition into {data_dir}")
    make_competition(data_dir, classes=a.classes, per_class=a.per_class,
                     test_per_class=a.test_per_class, seed=a.seed)
    print(f"2/2 packing it into {store_dir}")
    pack_competition(data_dir, store_dir, workers=a.workers, valid_frac=0.1, seed=a.seed)
    print("done. The notebooks (EDA, rendering, training, ensemble, submission) are not there yet;"
          " later versions of `make demo` run them on this data.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="doodle", description="Quick, Draw! doodle-recognition suite")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("synth", help="generate a synthetic mini-competition in Kaggle's layout")
    s.add_argument("out_dir", type=Path)
    s.add_argument("--classes", type=int, default=12)
    s.add_argument("--per-class", type=int, default=200)
    s.add_argument("--test-per-class", type=int, default=20)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--unrecognized", type=float, default=0.06, help="fraction of unrecognized drawings")
    s.set_defaults(fn=_synth)

    s = sub.add_parser("simplify", help="Google's raw -> simplified pipeline on an ndjson file")
    s.add_argument("input", type=Path)
    s.add_argument("output", type=Path)
    s.add_argument("--lenient", action="store_true", help="skip malformed rows (counted) instead of failing")
    s.set_defaults(fn=_simplify)

    s = sub.add_parser("simplify-check", help="compare our simplification with Google's simplified files")
    s.add_argument("raw_dir", type=Path)
    s.add_argument("simplified_dir", type=Path)
    s.set_defaults(fn=_simplify_check)

    s = sub.add_parser("pack", help="convert CSV/ndjson files into a packed memory-mapped store")
    s.add_argument("src_dir", type=Path, help="Kaggle layout (train_simplified/, test_simplified.csv) or a folder of files")
    s.add_argument("store_dir", type=Path)
    s.add_argument("--kind", choices=["simplified", "raw"], default="simplified")
    s.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    s.add_argument("--valid-frac", type=float, default=0.02, help="stratified validation fraction")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--lenient", action="store_true", help="skip malformed rows (counted) instead of failing")
    s.set_defaults(fn=_pack)

    s = sub.add_parser("verify", help="check a packed store (sizes, offsets, checksums)")
    s.add_argument("store_dir", type=Path)
    s.add_argument("--full", action="store_true", help="checksum every array, however large")
    s.set_defaults(fn=_verify)

    s = sub.add_parser("demo", help="the main job on the embedded synthetic default")
    s.add_argument("--out", type=Path, default=Path("outputs/smoke"))
    s.add_argument("--classes", type=int, default=12)
    s.add_argument("--per-class", type=int, default=200)
    s.add_argument("--test-per-class", type=int, default=20)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, default=None)
    s.set_defaults(fn=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``doodle`` console script."""
    from .data import DataError
    from .store import StoreError

    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (DataError, StoreError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
