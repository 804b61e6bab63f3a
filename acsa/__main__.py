"""The `acsa` command (installed with the package; also `python -m acsa`): person search with a trained model.

    acsa index  --model MODEL_DIR --images FOLDER --out INDEX     index a folder (again: only what changed)
    acsa index  --model MODEL_DIR --prepared DIR --split test --out INDEX
    acsa search --index INDEX "a woman in a red coat carrying a black backpack" [--top-k 10] [--format json]
    acsa serve  --index INDEX [--host 127.0.0.1] [--port 8000]      a web page: search box, results, attention

Bad input (an empty query, a missing index, a folder without images, a busy port, ...) is one line on stderr,
exit 2; a NaN or infinity met in an index or in the model's features, exit 3. Nothing is printed before.
`--format table` and `csv` print one row per result whatever the file's name (control characters and bytes
that are not UTF-8 as backslash escapes, acsa.search.names); `json` keeps each path exact (such bytes as
\\udcXX escapes: os.fsencode gives them back). The library behind it: acsa.search (README, Person search).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from pathlib import Path

from acsa.cli import run_stage

log = logging.getLogger("acsa.search")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acsa", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="{index,search,serve}")

    index = verbs.add_parser("index", help="build or update an index of a folder of images")
    index.add_argument("--model", type=Path, required=True, help="trained model folder (models/main)")
    source = index.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, help="folder of images (recursive; jpg, jpeg, png, webp)")
    source.add_argument("--prepared", type=Path, help="a prepared benchmark folder (data/prepared)")
    index.add_argument("--split", default="test", help="with --prepared: the split whose images (test)")
    index.add_argument("--out", type=Path, required=True, help="index folder (created or updated)")
    index.add_argument(
        "--fusion-weight",
        type=float,
        default=None,
        help="override the fusion weight chosen on validation (experts)",
    )
    index.add_argument(
        "--global-search",
        default="auto",
        choices=("auto", "exact", "faiss"),
        help="auto: FAISS above 200,000 images, exact below (default)",
    )
    index.add_argument(
        "--token-dtype",
        choices=("float32", "float16"),
        default=None,
        help="storage of the image tokens of a new index (float32; float16 halves it, BENCHMARKS.md)",
    )
    index.add_argument("--batch-size", type=int, default=32)
    index.add_argument("--shard-size", type=int, default=2048, help="images per shard (work a kill can lose)")

    search = verbs.add_parser("search", help="query an index in plain English")
    search.add_argument("query", help="the description, e.g. 'a man in a blue jacket with a black backpack'")
    search.add_argument("--index", type=Path, required=True)
    search.add_argument("--top-k", type=int, default=10, help="results to show (1-1000, default 10)")
    search.add_argument("--format", choices=("table", "json", "csv"), default="table")
    search.add_argument(
        "--candidates",
        type=int,
        default=100,
        help="global top candidates scored by ACSA's local branch (default 100)",
    )
    search.add_argument(
        "--nprobe", type=int, default=None, help="FAISS cells scanned (indexes with FAISS: recall vs speed)"
    )
    search.add_argument("--model", type=Path, default=None, help="the index's model, if it has moved")
    search.add_argument("--fusion-weight", type=float, default=None, help="override the index's weight")

    serve = verbs.add_parser("serve", help="a local web page to search an index")
    serve.add_argument("--index", type=Path, required=True)
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine)"
    )
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another name or address the page is opened by (repeatable; e.g. this machine's LAN address "
        "with --host 0.0.0.0). Requests addressed to any other name are refused (DNS rebinding)",
    )
    serve.add_argument("--model", type=Path, default=None, help="the index's model, if it has moved")
    return parser


def _index(args: argparse.Namespace) -> None:
    from acsa.search.api import build_index

    report = build_index(
        args.model,
        args.out,
        images=args.images,
        prepared=args.prepared,
        split=args.split if args.prepared else None,
        fusion_weight=args.fusion_weight,
        global_kind=args.global_search,
        token_dtype=args.token_dtype,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
    )
    print(report.summary())


def _search(args: argparse.Namespace) -> None:
    from acsa.search.api import SearchIndex
    from acsa.search.query import check_fusion_weight, check_query, check_top_k

    check_query(args.query)  # before loading anything
    check_top_k(args.top_k)
    if args.candidates < 1:
        raise _error("--candidates must be at least 1")
    if args.fusion_weight is not None:
        check_fusion_weight(args.fusion_weight, "--fusion-weight")
    index = SearchIndex.open(args.index, model=args.model, fusion_weight=args.fusion_weight)
    index.model.text.one_query()
    if args.nprobe is not None:
        if index.global_search.faiss_index is None:
            raise _error(f"{args.index} searches exactly (no FAISS index): --nprobe does not apply")
        index.global_search.nprobe = args.nprobe
    response = index.search(args.query, top_k=args.top_k, candidates=args.candidates)
    rows = [r.to_dict() for r in response.results]
    sys.stdout.write(_formatted(rows, response, len(index), args.format))


def _formatted(rows: list[dict], response, images: int, form: str) -> str:
    """The results as `form` (json, csv or table), whole: nothing is printed unless all of it is ready."""
    from acsa.search.names import printable

    out = io.StringIO()
    if form == "json":
        json.dump(rows, out, indent=1, allow_nan=False)  # ensure_ascii: exact paths, any bytes
        out.write("\n")
    elif form == "csv":
        writer = csv.DictWriter(out, fieldnames=["rank", "path", "global", "local", "fused"])
        writer.writeheader()
        writer.writerows({"rank": i + 1, **row, "path": printable(row["path"])} for i, row in enumerate(rows))
    else:
        phrases = ", ".join(printable(p) for p in response.phrases)
        out.write(f"phrases: {phrases}; fusion weight {response.fusion_weight:g}; {images} images\n")
        out.write(f"{'rank':>4}  {'fused':>8}  {'global':>7}  {'local':>7}  path\n")
        for i, row in enumerate(rows):
            local = "-" if row["local"] is None else f"{row['local']:7.4f}"
            path = printable(row["path"])
            out.write(f"{i + 1:>4}  {row['fused']:8.4f}  {row['global']:7.4f}  {local:>7}  {path}\n")
    return out.getvalue()


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from acsa.search.api import SearchIndex
    from acsa.search.names import printable
    from acsa.search.server import create_app
    from acsa.search.serving import bind, host_name

    sockets = bind(args.host, args.port)  # a busy or invalid port is said before the model loads
    try:
        index = SearchIndex.open(args.index, model=args.model)
        index.model.warm_up()
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("serving on %s: other machines can reach this page and the indexed images", args.host)
        where = f"http://{host_name(args.host)}:{args.port}/"
        print(f"serving {printable(str(args.index))} ({len(index)} images) at {where}", flush=True)
        app = create_app(index, args.host, args.port, tuple(args.allow_host))
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
        uvicorn.Server(config).run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()


def _error(message: str):
    from acsa.errors import SearchError

    return SearchError(message)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    {"index": _index, "search": _search, "serve": _serve}[args.verb](args)


def cli(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors with exit status 2 (acsa.cli.run_stage)."""
    run_stage(main, argv)


if __name__ == "__main__":
    cli()
