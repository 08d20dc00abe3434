"""The ``doodle`` command (also ``python -m doodle_utils``): every non-notebook step.

Subcommands: ``init``, ``synth``, ``simplify``, ``simplify-check``, ``pack``, ``verify``, ``run``,
``train``, ``balance``, ``submit``, ``check-submission``, ``predict``, ``export``, ``relabel``, ``figures``, ``kaggle-bundle``,
``kaggle-emulate``.
Heavy modules are imported inside each subcommand so ``doodle --help`` stays instant
(measured: 0.9 s, against ~8 s to import training's torch and fastai, ~1 s the store's numba
and pyarrow).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _synth(a: argparse.Namespace) -> int:
    from .data.synth import make_competition

    t0 = time.perf_counter()
    if a.kaggle_size:
        from .data.fullsize import make_kaggle_size

        done = {"words": 0, "rows": 0}

        def progress(r: dict) -> None:
            done["words"] += 1
            done["rows"] += r["rows"]
            if done["words"] % 34 == 0:
                print(f"  {done['words']}/340 words, {done['rows']:,} rows, {time.perf_counter() - t0:.0f}s", flush=True)

        summary = make_kaggle_size(a.out_dir, scale=a.scale, raw_fraction=a.raw_fraction, sample_dir=a.sample,
                                   seed=a.seed, workers=a.workers, progress=progress)
        summary.pop("sizes")
        print(json.dumps(summary, indent=1))
        print(f"Kaggle-size competition written to {a.out_dir} in {time.perf_counter() - t0:.1f}s")
        return 0
    summary = make_competition(a.out_dir, classes=a.classes, per_class=a.per_class,
                               test_per_class=a.test_per_class, seed=a.seed, unrecognized=a.unrecognized,
                               raw_format=a.raw_format)
    print(json.dumps(summary, indent=1, default=str))
    print(f"synthetic competition written to {a.out_dir} in {time.perf_counter() - t0:.1f}s")
    return 0


def _simplify(a: argparse.Namespace) -> int:
    from . import data
    from .data.simplify import simplify_packed

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
    from .data.simplify import agreement_report

    print(json.dumps(agreement_report(Path(a.raw_dir), Path(a.simplified_dir)), indent=1, default=str))
    return 0


def _pack_kwargs(a: argparse.Namespace) -> dict:
    return dict(kind=a.kind, workers=a.workers, valid_frac=a.valid_frac, blend_frac=a.blend_frac, seed=a.seed,
                lenient=a.lenient)


def _pack(a: argparse.Namespace) -> int:
    from .data.store import pack_competition

    t0 = time.perf_counter()
    result = pack_competition(a.src_dir, a.store_dir, **_pack_kwargs(a))
    for name, m in result.items():
        print(f"{name}: {m['drawings']} drawings, {m['points']} points, skipped {m['skipped'] or 'none'}")
    print(f"packed into {a.store_dir} in {time.perf_counter() - t0:.1f}s")
    return 0


def _verify(a: argparse.Namespace) -> int:
    from .data.store import Store, StoreError

    # a store folder, or what `doodle pack SRC STORE` writes: STORE/train and STORE/test
    folders = [a.store_dir] if (a.store_dir / "manifest.json").exists() or not any(
        (a.store_dir / n / "manifest.json").exists() for n in ("train", "test")) else \
        [a.store_dir / n for n in ("train", "test") if (a.store_dir / n).is_dir()]
    for folder in folders:
        try:
            st = Store(folder, verify="full" if a.full else "quick")
        except StoreError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        m = st.manifest
        print(f"{folder}: ok ({m['kind']}, {m['drawings']} drawings, {len(st.words)} classes, "
              f"{m['valid']['count']} validation)")
    return 0


def _parse_sets(items: list[str]) -> dict:
    import yaml

    from .options import OptionError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise OptionError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise OptionError(f"--set {item!r}: the value is not a YAML value ({e})".replace("\n", " ")) from None
    return out


def _run(a: argparse.Namespace) -> int:
    import logging

    from ._files import LockedError
    from .pipeline import ProfileError, RunError, missing_notebooks, run

    # quiet: the suite's own lines; papermill's and the kernel's chatter only with -v
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    for h in logging.getLogger().handlers:  # the console: run.log gets the per-file lines either way
        h.setLevel(logging.DEBUG if a.verbose else logging.INFO)
    try:
        run(a.profile, only=a.only, start=a.start, force=a.force, overrides=_parse_sets(a.set),
            verbose=a.verbose)
    except (ProfileError, LockedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not a.only and missing_notebooks():
        print(f"later steps not there yet: {', '.join(missing_notebooks())}")
    return 0


def _train(a: argparse.Namespace) -> int:
    import dataclasses

    import yaml

    from .devices import world_size
    from .pipeline import training_config
    from .training import RUN_PARAMETERS, RunStateError, TrainConfig, train

    params = yaml.safe_load(Path(a.config).read_text()) if a.config else {}
    if not isinstance(params or {}, dict):
        print(f"error: {a.config}: a training configuration is a mapping of parameters, got "
              f"{type(params).__name__}", file=sys.stderr)
        return 2
    params = {**(params or {}), **_parse_sets(a.set)}
    known = set(RUN_PARAMETERS) | {f.name for f in dataclasses.fields(TrainConfig)} - {"test_store_dir"}
    unknown = sorted(set(params) - known)
    if unknown:
        from .options import did_you_mean

        hints = "".join(did_you_mean(k, known) for k in unknown)
        print(f"error: unknown training parameter(s) {unknown}{hints}; `doodle train --help` lists them",
              file=sys.stderr)
        return 2
    try:
        # under torchrun every process runs this: only a lone process packs
        cfg, _ = training_config(params, allow_pack=world_size() < 2)
    except (TypeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        result = train(cfg)
    except RunStateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"trained {cfg.arch} into {result.folder}: {len(result.snapshots)} snapshot(s)"
          + (f", resumed after epoch {result.resumed_from - 1}" if result.resumed_from else ""))
    return 0


def _balance(a: argparse.Namespace) -> int:
    import numpy as np

    from .postprocess.balance import balance, proxy_score

    try:
        probs = np.load(a.probs, allow_pickle=False)
    except (OSError, ValueError) as e:
        print(f"error: {a.probs}: not a numpy array file ({e})", file=sys.stderr)
        return 2
    kw = {"engine": a.engine, "device": a.device} if a.method == "optimal" else {}
    t0 = time.perf_counter()
    try:
        ranked = balance(probs, a.method, **kw)
    except ValueError as e:
        print(f"error: {a.probs}: {e}", file=sys.stderr)
        return 2
    dt = time.perf_counter() - t0
    from ._files import save_npy_atomic

    save_npy_atomic(a.out, ranked.astype(np.int32))
    print(f"{a.method}: {len(ranked)} drawings in {dt:.2f}s; proxy score {proxy_score(probs):.0f} -> "
          f"{proxy_score(ranked[:, 0], probs.shape[1]):.0f}; ranked top-3 written to {a.out}")
    return 0


def _submit(a: argparse.Namespace) -> int:
    import numpy as np

    from .kaggle import SubmissionError, known_classes, sample_key_ids, write_submission
    from .postprocess.balance import balance, proxy_score
    from .postprocess.ensemble import load_saved

    if Path(a.probs).is_dir():  # notebook 04's ensemble folder: its manifest names classes and key_ids
        try:
            _, probs, man = load_saved(a.probs)
        except (OSError, ValueError, KeyError) as e:
            print(f"error: {a.probs}: not an ensemble folder of notebook 04 ({e})", file=sys.stderr)
            return 2
        if probs is None:
            print(f"error: {a.probs}: the ensemble has no test probabilities", file=sys.stderr)
            return 2
        words, key_ids, source = man["words"], man.get("test_key_id"), f"{a.probs}/manifest.json"
    else:
        try:
            probs = np.load(a.probs, allow_pickle=False)
        except (OSError, ValueError) as e:
            print(f"error: {a.probs}: not a numpy array file ({e})", file=sys.stderr)
            return 2
        if a.sample is None:
            print(f"error: {a.probs}: a bare array needs --sample (sample_submission.csv: its key_ids, in its "
                  "order, are the rows)", file=sys.stderr)
            return 2
        try:
            words, source = (_read_words(a.words), str(a.words)) if a.words else known_classes(a.sample)
        except (OSError, UnicodeDecodeError) as e:
            print(f"error: {a.words}: cannot read the class names ({e})", file=sys.stderr)
            return 2
        key_ids = None
    if key_ids is None:
        try:
            key_ids = sample_key_ids(a.sample)
        except (OSError, UnicodeDecodeError) as e:
            print(f"error: {a.sample}: cannot read the sample submission ({e})", file=sys.stderr)
            return 2
    if probs.ndim != 2 or probs.shape != (len(key_ids), len(words)):
        print(f"error: {a.probs}: probabilities of shape {probs.shape}, but {len(key_ids)} test drawings "
              f"and {len(words)} classes ({source})", file=sys.stderr)
        return 2
    kw = {"engine": a.engine, "device": a.device} if a.method == "optimal" else {}
    try:
        ranked = balance(probs, a.method, **kw)
        write_submission(a.out, key_ids, ranked, words, a.sample)
    except (ValueError, SubmissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{a.out}: {len(ranked)} drawings, {a.method} balancing (proxy score {proxy_score(probs):.0f} -> "
          f"{proxy_score(ranked[:, 0], probs.shape[1]):.0f}), checked"
          + (f" against {a.sample}" if a.sample else ""))
    return 0


def _read_words(path: Path) -> list[str]:
    return [w.strip() for w in Path(path).read_text().splitlines() if w.strip()]


def _predict(a: argparse.Namespace) -> int:
    from . import prediction
    from .data import SkipReport

    if a.top < 1:
        print(f"error: --top must be at least 1, got {a.top}", file=sys.stderr)
        return 2
    report = SkipReport()
    try:
        ids, drawings = prediction.read_drawings(a.input, lenient=a.lenient, report=report)
        learn = prediction.load_model(a.model, a.snapshot, a.device)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if report.total:  # lenient reading: what was left out, on standard error beside the table
        print(f"{a.input}: {report}", file=sys.stderr)
        for example in report.examples:
            print(f"  {example}", file=sys.stderr)
    try:
        table = prediction.predict(learn, drawings, ids, top=a.top, tta=a.tta)
    except ValueError as e:
        print(f"error: {a.input}: {e}", file=sys.stderr)
        return 2
    if a.out:
        prediction.write_table(table, a.out)
        print(f"{len(table)} drawing(s) predicted into {a.out}", file=sys.stderr)
    else:
        table.to_csv(sys.stdout, index=False)
    return 0


def _export(a: argparse.Namespace) -> int:
    from . import prediction

    out = prediction.export(a.run, a.out, a.snapshot)
    reader = "ONNX Runtime runs it" if out.suffix == ".onnx" else "fastai's load_learner reads it"
    print(f"exported {a.run} ({a.snapshot or 'last snapshot'}) to {out}: {reader}; "
          f"`doodle predict {out} DRAWINGS` uses it")
    return 0


def _relabel(a: argparse.Namespace) -> int:
    from .training.relabel import relabel

    if not 0 < a.threshold < 1:
        print(f"error: --threshold {a.threshold}: a probability between 0 and 1 (the 11th place used 0.9)",
              file=sys.stderr)
        return 2
    try:
        done = relabel(a.run, a.threshold, a.snapshot, a.out, a.device)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"relabelled {done['changed']} of {done['unrecognized']} unrecognized training drawings "
          f"(of {done['training_drawings']}; {done['snapshot']} snapshot, p > {done['threshold']:g}) -> {done['file']}")
    print(f"train on it: --set unrecognized=relabel --set labels_file={done['file']}")
    return 0


def _figures(a: argparse.Namespace) -> int:
    from .results import copy_readme_figures

    for path in copy_readme_figures(a.run_dir, a.readme):
        print(path)
    return 0


def _check_submission(a: argparse.Namespace) -> int:
    from .kaggle import SubmissionError, check_submission, known_classes

    if a.words:
        words, source = _read_words(a.words), str(a.words)
    else:
        words, source = known_classes(a.sample)
    try:
        n = check_submission(a.file, a.sample, words)
    except SubmissionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    against = f"the key_ids of {a.sample}" if a.sample else "no sample (pass --sample to compare key_ids)"
    print(f"{a.file}: {n} rows, valid; labels among {len(words)} classes ({source}), {against}")
    return 0


def _init(a: argparse.Namespace) -> int:
    import shutil

    from ._files import atomic_path
    from .paths import project_sources

    src = project_sources()
    files = [p for name in ("notebooks", "params") for p in sorted((src / name).glob("*"))
             if p.suffix in (".ipynb", ".yaml")]
    if not files:
        print(f"error: {src}: this installation carries no notebooks or profiles", file=sys.stderr)
        return 2
    targets = {p: a.dir / p.parent.name / p.name for p in files}
    there = [str(t) for t in targets.values() if t.exists()]
    if there and not a.force:
        print(f"error: {a.dir}: would overwrite {len(there)} file(s) ({', '.join(there[:3])}"
              f"{', ...' if len(there) > 3 else ''}); --force replaces them", file=sys.stderr)
        return 2
    for p, t in targets.items():
        with atomic_path(t) as tmp:
            shutil.copyfile(p, tmp)
    print(f"{a.dir}: {len(files)} notebooks and profiles. Next: cd {a.dir} && doodle run params/smoke.yaml "
          f"(the demo, under {a.dir}/outputs/), then jupyter lab")
    return 0


def _kaggle_bundle(a: argparse.Namespace) -> int:
    from .kaggle import bundle

    try:
        folders = bundle(a.out_dir, a.profile, user=a.user, overrides=_parse_sets(a.set))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for f in folders:
        print(f"{f}  ->  kaggle kernels push -p {f}")
    return 0


def _kaggle_emulate(a: argparse.Namespace) -> int:
    from .kaggle import RUN_LIMIT_SECONDS
    from .kaggle_emulator import KernelFailed, run_chain

    if not (a.competition / "sample_submission.csv").is_file():
        print(f"error: {a.competition}: no sample_submission.csv, not a competition folder", file=sys.stderr)
        return 2
    try:
        runs = run_chain(a.bundle_dir, a.competition, a.root,
                         timeout=RUN_LIMIT_SECONDS if a.timeout is None else a.timeout)
    except KernelFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for r in runs:
        print(f"{r.name}: {r.seconds:.0f}s, saves {r.output_bytes / 1e6:.1f} MB in {len(r.output_files)} files ({r.working})")
    return 0


def _seconds(text: str) -> float:
    """A positive number of seconds (an argparse type: a bad value is a usage error naming the option)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _with_lazy_epilog(parser: argparse.ArgumentParser, module: str, function: str) -> None:
    """Give ``parser`` an epilog made by ``doodle_utils.<module>.<function>()`` when its help is
    shown: the list needs a heavy import (torch, for the training parameters), which every
    other command, and ``doodle --help``, would otherwise pay for."""
    import importlib

    format_help = parser.format_help

    def with_epilog() -> str:
        parser.epilog = getattr(importlib.import_module(f".{module}", __package__), function)()
        return format_help()

    parser.format_help = with_epilog


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("doodle-utils")
    except PackageNotFoundError:  # a checkout on sys.path without an install
        return "unknown (not installed)"


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help shows its default (where it has one); descriptions and epilogs keep
    their lines."""

    def _get_help_string(self, action):
        if action.default in (None, False, [], argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def _command(sub, name: str, **kw) -> argparse.ArgumentParser:
    return sub.add_parser(name, formatter_class=_Help, **kw)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="doodle", description="Quick, Draw! doodle-recognition suite")
    p.add_argument("--version", action="version", version=f"doodle {_version()}")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = _command(sub, "init", help="copy the suite's notebooks and profiles into a folder (for an installed package)",
                 description="An installed package carries the notebooks and params/*.yaml; this makes a "
                             "project folder of them, where `doodle run params/smoke.yaml` runs the demo.")
    s.add_argument("dir", type=Path, help="the project folder to make (notebooks/ and params/ inside)")
    s.add_argument("--force", action="store_true", help="replace files that are there already")
    s.set_defaults(fn=_init)

    s = _command(sub, "synth", help="generate a synthetic mini-competition in Kaggle's layout")
    s.add_argument("out_dir", type=Path, help="the competition folder to write (answers go to <out_dir>_answers/)")
    s.add_argument("--classes", type=int, default=12, help="how many classes (real Quick, Draw! words)")
    s.add_argument("--per-class", type=int, default=200, help="training drawings per class")
    s.add_argument("--test-per-class", type=int, default=20, help="test drawings per class (a balanced test set)")
    s.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same files")
    s.add_argument("--unrecognized", type=float, default=0.06, help="fraction of unrecognized drawings")
    s.add_argument("--raw-format", choices=["csv", "ndjson"], default="csv",
                   help="csv: Kaggle's train_raw/<word>.csv and test_raw.csv; ndjson: Google's train_raw/<word>.ndjson")
    s.add_argument("--kaggle-size", action="store_true",
                   help="instead: 340 words, Kaggle's 49.7M training and 112,199 test drawings times --scale, "
                        "uneven class files (for rehearsing at full size; --classes/--per-class do not apply)")
    s.add_argument("--scale", type=float, default=1.0, help="with --kaggle-size: fraction of Kaggle's size")
    s.add_argument("--raw-fraction", type=float, default=0.02,
                   help="with --kaggle-size: share of each class's rows also written to train_raw/")
    s.add_argument("--sample", type=Path, default=None,
                   help="with --kaggle-size: Google's raw ndjson per word to vary (e.g. the real sample's raw/); "
                        "default: synthetic drawings")
    s.add_argument("--workers", type=int, default=None, help="with --kaggle-size: processes; default: all cores")
    s.set_defaults(fn=_synth)

    s = _command(sub, "simplify", help="Google's raw -> simplified pipeline on an ndjson file")
    s.add_argument("input", type=Path, help="Google's raw ndjson (strokes with times)")
    s.add_argument("output", type=Path, help="the simplified ndjson to write")
    s.add_argument("--lenient", action="store_true", help="skip malformed rows (counted) instead of failing")
    s.set_defaults(fn=_simplify)

    s = _command(sub, "simplify-check", help="compare our simplification with Google's simplified files")
    s.add_argument("raw_dir", type=Path, help="Google's raw ndjson files, one a class")
    s.add_argument("simplified_dir", type=Path, help="Google's simplified ndjson files of the same classes")
    s.set_defaults(fn=_simplify_check)

    s = _command(sub, "pack", help="convert CSV/ndjson files into a packed memory-mapped store")
    s.add_argument("src_dir", type=Path, help="Kaggle layout (train_simplified/, test_simplified.csv) or a folder of files")
    s.add_argument("store_dir", type=Path, help="the store to write (train/ and test/ inside)")
    s.add_argument("--kind", choices=["simplified", "timed", "raw"], default="simplified",
                   help="simplified: Kaggle's simplified files; timed: its raw files (train_raw/, test_raw.csv) "
                        "simplified with each point's time kept; raw: the raw points and times (largest)")
    s.add_argument("--workers", type=int, default=None, help="processes; default: all cores")
    s.add_argument("--valid-frac", type=float, default=0.02, help="stratified validation fraction")
    s.add_argument("--blend-frac", type=float, default=0.0,
                   help="stratified blend fraction, for ensemble weights and the stacker (0: none)")
    s.add_argument("--seed", type=int, default=0, help="seed of the validation split")
    s.add_argument("--lenient", action="store_true", help="skip malformed rows (counted) instead of failing")
    s.set_defaults(fn=_pack)

    s = _command(sub, "verify", help="check a packed store (sizes, offsets, checksums)")
    s.add_argument("store_dir", type=Path, help="a store folder (one with manifest.json, e.g. STORE/train)")
    s.add_argument("--full", action="store_true", help="checksum every array, however large")
    s.set_defaults(fn=_verify)

    s = _command(sub, "run", help="run the numbered notebooks with papermill from a profile")
    s.add_argument("profile", type=Path, help="params/*.yaml")
    s.add_argument("--only", help="run only notebooks whose name starts with this (e.g. 03)")
    s.add_argument("--from", dest="start", help="run from the notebook starting with this on")
    s.add_argument("--force", action="store_true", help="re-run notebooks even if unchanged")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter (YAML value), e.g. --set n_examples=4")
    s.add_argument("-v", "--verbose", action="store_true",
                   help="also papermill's progress bar, every line the notebooks print and the kernels' start-up "
                        "log (default: one line per notebook, and one per training epoch)")
    s.set_defaults(fn=_run)

    s = _command(sub, "train", help="train one configuration, as notebook 03 does (torchrun for several processes)",
                       description="Train what notebook 03 trains for the same parameters: the folders default "
                                   "the same way, the stores are packed when not current, the model goes to "
                                   "<out_dir>/train/<run_label>.")
    s.add_argument("config", nargs="?", help="a YAML file of training parameters (notebook 03's names)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a training parameter (YAML value), e.g. --set arch=resnet34")
    s.set_defaults(fn=_train)
    _with_lazy_epilog(s, "train", "parameters_help")  # torch is imported only for --help

    s = _command(sub, "balance", help="balance test probabilities (.npy, N x C) to equal class counts")
    s.add_argument("probs", type=Path, help="test probabilities, an N x C .npy")
    s.add_argument("out", type=Path, help="ranked top-3 class indices (.npy)")
    s.add_argument("--method", default="greedy", choices=["none", "greedy", "iterative", "optimal"],
                   help="greedy (the talk), iterative (1st place) or optimal (exact)")
    s.add_argument("--engine", default="numba", choices=["numba", "torch", "highs"],
                   help="how optimal is solved: numba (CPU), torch (any --device), highs (SciPy LP)")
    s.add_argument("--device", default="cpu", help="torch device for --engine torch, e.g. cuda")
    s.set_defaults(fn=_balance)

    s = _command(sub, "submit", help="balance test probabilities and write a checked Kaggle submission",
                       description="From test probabilities to submission.csv, outside the notebooks: balance "
                                   "(notebook 05's step), write key_id,word with three labels a row, and check it.")
    s.add_argument("probs", type=Path, help="notebook 04's ensemble folder (<run>/ensemble), or an N x C .npy "
                   "whose rows are --sample's key_ids in its order")
    s.add_argument("out", type=Path, help="the submission CSV to write (atomically)")
    s.add_argument("--method", default="optimal", choices=["none", "greedy", "iterative", "optimal"],
                   help="balancing to the test set's equal class counts")
    s.add_argument("--sample", type=Path, help="Kaggle's sample_submission.csv: the rows of a .npy, and what the "
                   "submission is checked against")
    s.add_argument("--words", type=Path, help="a .npy's columns: class names, one a line; default: the "
                   "competition's train_simplified/ beside --sample, in alphabetical order")
    s.add_argument("--engine", default="numba", choices=["numba", "torch", "highs"],
                   help="how optimal is solved")
    s.add_argument("--device", default="cpu", help="torch device for --engine torch")
    s.set_defaults(fn=_submit)

    s = _command(sub, "check-submission", help="validate a key_id,word submission file")
    s.add_argument("file", type=Path, help="the submission CSV (key_id,word)")
    s.add_argument("--sample", type=Path, help="sample_submission.csv: the same key_ids must appear")
    s.add_argument("--words", type=Path, help="a file of class names, one a line (labels must be among them); "
                   "default: train_simplified/ beside --sample, else Google's 345 Quick, Draw! categories")
    s.set_defaults(fn=_check_submission)

    s = _command(sub, "predict", help="classify drawings with a trained model: each one's top words and probabilities",
                 description="Drawings are prepared as the model's validation drawings were (raw ones simplified "
                             "by Google's pipeline for a model of simplified drawings; the run's rendering). "
                             "Writes CSV: key_id, word_1, prob_1, ... (to standard output, or --out).")
    s.add_argument("model", type=Path, help="a training run folder (<out_dir>/train/<run_label>) or a file "
                   "written by `doodle export`")
    s.add_argument("input", type=Path, help="drawings: Google's ndjson (raw or simplified), a Kaggle CSV, a "
                   ".json of stroke lists ([[xs, ys], ...] or [[xs, ys, ts], ...]) or ndjson rows, or an image of a "
                   "doodle (PNG, JPEG: its ink traced into strokes, their order unknown) or a folder of them")
    s.add_argument("--top", type=int, default=3, help="words per drawing, best first")
    s.add_argument("--snapshot", help="a run folder's snapshot, e.g. snap_00 (default: the last)")
    s.add_argument("--out", type=Path, help="write the CSV here (atomically) instead of standard output")
    s.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    s.add_argument("--lenient", action="store_true", help="skip malformed rows of an ndjson or CSV file (counted)")
    s.add_argument("--tta", action="append", default=[], choices=["flip", "dropout"],
                   help="test-time augmentation: also predict the drawings mirrored (flip) or with 10%% of strokes "
                        "dropped (dropout), and average; repeat for both")
    s.set_defaults(fn=_predict)

    s = _command(sub, "export", help="write a run's model as one file (ONNX, or fastai's learn.export) for predicting elsewhere")
    s.add_argument("run", type=Path, help="a training run folder (<out_dir>/train/<run_label>)")
    s.add_argument("out", type=Path, help="the file to write: model.onnx (ONNX, the run's preprocessing in its "
                   "metadata) or model.pkl (fastai's pickle: share it only with people who trust you)")
    s.add_argument("--snapshot", help="which snapshot, e.g. snap_00 (default: the last)")
    s.set_defaults(fn=_export)

    s = _command(sub, "relabel", help="relabel a run's unrecognized training drawings where its model confidently "
                 "disagrees (a label column beside the store; train on it with unrecognized=relabel)")
    s.add_argument("run", type=Path, help="a training run folder (<out_dir>/train/<run_label>)")
    s.add_argument("--threshold", type=float, default=0.9, help="relabel where the model's top guess differs "
                   "from the label with at least this probability (the 11th place: 0.9)")
    s.add_argument("--snapshot", help="which snapshot predicts, e.g. snap_00 (default: the last)")
    s.add_argument("--out", type=Path, help="the label column to write (default: <store>_labels/<run>_<snapshot>_p<threshold>.npy)")
    s.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    s.set_defaults(fn=_relabel)

    s = _command(sub, "figures", help="copy a run's figures over the ones the README shows (make figures)")
    s.add_argument("run_dir", type=Path, help="a finished run, e.g. outputs/smoke")
    s.add_argument("--readme", type=Path, default=Path("README.md"),
                   help="the README whose docs/figures/<NN>_<what>.png images are replaced")
    s.set_defaults(fn=_figures)

    s = _command(sub, "kaggle-bundle", help="write a `kaggle kernels push` folder per notebook")
    s.add_argument("out_dir", type=Path, help="where the kernel folders go (one per notebook)")
    s.add_argument("--profile", type=Path, help="the profile whose values become the kernels' parameter defaults; "
                   "default: params/kaggle.yaml of the project")
    s.add_argument("--user", help="your Kaggle user name (default: the profile's kaggle.user)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a parameter (YAML value)")
    s.set_defaults(fn=_kaggle_bundle)

    s = _command(sub, "kaggle-emulate", help="run a kaggle-bundle's kernels here, in order, as Kaggle would")
    s.add_argument("bundle_dir", type=Path, help="what `doodle kaggle-bundle` wrote")
    s.add_argument("competition", type=Path, help="the competition folder (Kaggle's files only)")
    s.add_argument("root", type=Path, help="an empty folder for the sandboxes (<root>/kaggle is /kaggle)")
    s.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                   help="stop a kernel still running after this many seconds (default: Kaggle's limit, 12 hours)")
    s.set_defaults(fn=_kaggle_emulate)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``doodle`` console script."""
    from ._files import LockedError
    from .data import DataError
    from .data.store import StoreError
    from .options import OptionError
    from .pipeline import ProfileError

    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (DataError, StoreError, ProfileError, OptionError, FileNotFoundError, LockedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
