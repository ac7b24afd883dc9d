"""Benchmark: SKU reconciliation at catalog scale.

A Zuora catalog of 10,000 products with 3 rate plans each (30,000 tiers) against a 10,000-entry
services.yml.

1. The reconciliation step, from parsed records to written files (join, reconcile, CSV, XLSX,
   manifest): CPU seconds (target < 3 s) and peak memory (target < 500 MB), median of 3 runs.
2. Fetch and parse through the hook over HTTP against the Zuora stand-in: client CPU per 1,000
   Zuora records (the stand-in runs on other threads; only this thread's CPU is counted) and the
   number of Zuora calls (= ceil(records / batch size) per object).

Run: .venv/bin/python bench/bench_sku_reconciliation.py [--products 10000] [--skip-fetch] [--profile FILE]
(``--profile`` runs the fetch under cProfile - this thread only - writes the stats to FILE and prints
the functions with the most own time; the CPU figure then includes the profiler's overhead.)
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import date
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]
HOME = Path(tempfile.mkdtemp(prefix="bench-recon-"))
os.environ.update({"AIRFLOW_HOME": str(HOME), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
AS_OF = date(2026, 11, 21)


def services_yml(products: int) -> str:
    lines = []
    for number in range(products):
        price = 1000 + (number * 37) % 50000
        if number % 50 == 0:
            price += 1  # some drift
        lines.append(
            f"- id: bench-{number}\n  name: Benchmark Service {number}\n  sku: BENCH-{number:06d}\n  category: Consulting\n  price: {price}\n"
        )
    return "".join(lines)


def reconciliation_step(entries, catalog, exports_dir: Path, trace_memory: bool) -> tuple[float, float, int]:
    from ps_integrations.domain.sku_reconciliation import reconcile
    from ps_integrations.domain.zuora_catalog import join_zuora_catalog
    from ps_integrations.exports import ExportStore, json_file
    from ps_integrations.jobs.sku_reconciliation import build_files

    if trace_memory:
        tracemalloc.start()
    started = time.process_time()
    products = join_zuora_catalog(
        catalog["Product"],
        catalog["ProductRatePlan"],
        catalog["ProductRatePlanCharge"],
        catalog["ProductRatePlanChargeTier"],
        AS_OF,
    )
    rows = reconcile(list(entries), products, AS_OF)
    files = build_files(rows, AS_OF)
    manifest = json_file("manifest.json", "m", {"files": {f.name: f.sha256 for f in files}, "rows": len(rows)})
    ExportStore(exports_dir.as_uri()).write_folder("sku_reconciliation/bench", "bench", [*files, manifest])
    cpu = time.process_time() - started
    peak = 0
    if trace_memory:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return cpu, peak / 1e6, len(rows)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--skip-fetch", action="store_true")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the fetch and write the stats here")
    args = parser.parse_args()

    from ps_integrations.domain.services_catalog import parse_services_yml
    from sandbox.zuora.seed import synthetic

    catalog = {"Product": [], "ProductRatePlan": [], "ProductRatePlanCharge": [], "ProductRatePlanChargeTier": []}
    synthetic(catalog, args.products)
    for tier in catalog["ProductRatePlanChargeTier"]:
        tier["Price"] = Decimal(tier["Price"]).quantize(Decimal("0.01"))
    text = services_yml(args.products)
    entries = parse_services_yml(text).entries
    print(
        f"== Reconciliation step: {len(catalog['Product'])} products, {len(catalog['ProductRatePlanChargeTier'])} tiers, {len(entries)} services.yml entries =="
    )
    samples = [reconciliation_step(entries, catalog, HOME / f"exports-{n}", trace_memory=False) for n in range(3)]
    cpus = [s[0] for s in samples]
    # tracemalloc slows Python down several times over, so memory is measured in runs of its own
    peaks = [reconciliation_step(entries, catalog, HOME / f"exports-m{n}", trace_memory=True)[1] for n in range(3)]
    print(f"rows: {samples[0][2]}")
    print(
        f"CPU seconds: median {statistics.median(cpus):.2f} (runs {', '.join(f'{c:.2f}' for c in cpus)}); target < 3 s; ratio {statistics.median(cpus) / 3:.2f}"
    )
    print(
        f"peak traced memory: median {statistics.median(peaks):.0f} MB; target < 500 MB; ratio {statistics.median(peaks) / 500:.2f}"
    )
    print(
        f"process max RSS so far: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (includes the interpreter, pandas and the test catalog)"
    )

    if args.skip_fetch:
        return 0
    from sandbox.core.server import SandboxServer
    from sandbox.seeds import load_seed_file

    seed = load_seed_file()
    seed["zuora"] = {"users": seed["zuora"]["users"], "catalog": "none", "generate_products": args.products}
    server = SandboxServer(seed, state_dir=HOME / "sandbox").start()
    try:
        for conn_id, definition in server.airflow_connections().items():
            os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(definition)
        from ps_integrations.hooks.zuora import ZuoraHook
        from ps_integrations.jobs.sku_reconciliation import fetch_zuora

        batch = 2000
        hook = ZuoraHook()
        profiler = cProfile.Profile() if args.profile else None
        started = time.thread_time()
        wall = time.monotonic()
        if profiler is not None:
            profiler.enable()
        fetched = fetch_zuora(hook, batch)
        if profiler is not None:
            profiler.disable()
        cpu = time.thread_time() - started
        records = sum(len(items) for items in fetched.values())
        calls = server.standin("zuora").call_counts()
        expected = {name: math.ceil(len(items) / batch) for name, items in fetched.items()}
        print(f"\n== Fetch and parse through zeep: {records} Zuora records, batch size {batch} ==")
        print(
            f"client CPU {cpu:.1f} s = {cpu / records * 1000:.3f} s per 1,000 records (wall {time.monotonic() - wall:.1f} s, stand-in included)"
        )
        print(
            f"Zuora calls: {calls}; expected query+queryMore per object = ceil(records / {batch}): {expected} "
            f"(total {sum(expected.values())}, made {calls.get('query', 0) + calls.get('queryMore', 0)})"
        )
        if profiler is not None:
            profiler.dump_stats(args.profile)
            print(f"\ncProfile of the fetch (stats in {args.profile}), most own time first:")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(12)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
