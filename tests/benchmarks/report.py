"""The harness's output: one table (closed loop at -c16 and -c1, open loop, errors, ratios against (a)),
the targets with PASS/FAIL and what was measured, and the JSON document."""

from __future__ import annotations

import copy
import math
import statistics
from typing import Any

import batch_bench
import batching_bench
import drift_bench
from rich.console import Console
from rich.table import Table

BASELINE = "a"
RUNS = ("wrk_c16", "wrk_c1", "open_loop", "open_loop_at_a")  # a scenario's runs; the last is not (a)'s


def _get(run: dict[str, Any] | None, *path: str) -> Any:
    value: Any = run
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} µs" if value < 1 else f"{value:.2f} ms"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}×"


def _pair_ratios(arms: dict[str, list[float]]) -> list[float]:
    """on/off of each pair of runs made one after the other."""
    return [on / off for on, off in zip(arms["on"], arms["off"], strict=False)]


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(low, high, coverage): a distribution-free interval for the median of what `values` sample, the
    order statistics x(k) and x(n+1-k) with the largest k whose coverage, 1 - 2 P(Binomial(n, 1/2) < k),
    is still at least `level` (with too few values: min and max, at the smaller coverage they have).
    Nine values give x(2)..x(8) at 96%."""
    xs, n = sorted(values), len(values)

    def coverage(k: int) -> float:
        return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2 ** n

    k = 1
    while 2 * (k + 1) <= n + 1 and coverage(k + 1) >= level:
        k += 1
    return xs[k - 1], xs[n - k], coverage(k)


def errors_of(scenario: dict[str, Any]) -> int:
    return sum(int(_get(scenario, run, "errors") or 0) for run in RUNS)


def table(scenarios: dict[str, dict[str, Any]], connections: int) -> Table:
    base = scenarios.get(BASELINE, {})
    t = Table(title="appliance benchmark (same body, same client, same machine; ratios against (a))",
              title_justify="left", show_lines=False)
    for col, justify in [("", "left"), ("scenario", "left"), (f"req/s c{connections}", "right"), ("× (a)", "right"),
                         ("p50", "right"), ("p99", "right"), ("p99 × (a)", "right"), ("c1 req/s", "right"),
                         ("c1 p50", "right"), ("c1 p99", "right"), ("open-loop rate", "right"), ("OL p50", "right"),
                         ("OL p99", "right"), ("OL p99.9", "right"), ("OL p99 at (a)'s rate", "right"),
                         ("errors", "right"), ("other load", "right")]:
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    for key, sc in scenarios.items():
        c16, c1, ol, same = (sc.get(run) for run in RUNS)
        errors = errors_of(sc)
        t.add_row(
            key, sc.get("label", key),
            f"{_get(c16, 'requests_per_s') or 0:,.0f}", _ratio(_get(c16, "requests_per_s"), _get(base, "wrk_c16",
                                                                                                  "requests_per_s")),
            _ms(_get(c16, "latency_ms", "p50")), _ms(_get(c16, "latency_ms", "p99")),
            _ratio(_get(c16, "latency_ms", "p99"), _get(base, "wrk_c16", "latency_ms", "p99")),
            f"{_get(c1, 'requests_per_s') or 0:,.0f}",
            _ms(_get(c1, "latency_ms", "p50")), _ms(_get(c1, "latency_ms", "p99")),
            f"{_get(ol, 'target_rate') or 0:,.0f}/s" + (" cap" if _get(ol, "capped") else "")
            + (" †" if _get(ol, "saturated") else ""), _ms(_get(ol, "latency_ms", "p50")),
            _ms(_get(ol, "latency_ms", "p99")), _ms(_get(ol, "latency_ms", "p99.9")),
            _same_rate(same, base.get("open_loop") if key != BASELINE else None),
            f"[red]{errors}[/red]" if errors else "0",
            f"{max(_get(r, 'other_load_cores') or 0 for r in (c16, c1, ol, same)):.2f} cores")
    return t


def _same_rate(run: dict[str, Any] | None, base: dict[str, Any] | None) -> str:
    if run is None:
        return "-"
    p99 = _get(run, "latency_ms", "p99")
    return (f"{_ms(p99)} ({_ratio(p99, _get(base, 'latency_ms', 'p99'))})"
            + (" †" if _get(run, "saturated") else ""))


def _target(name: str, wanted: str, measured: str, ok: bool | None, note: str = "",
            result: str | None = None) -> dict[str, Any]:
    return {"target": name, "wanted": wanted, "measured": measured,
            "result": result or ("n/a" if ok is None else ("PASS" if ok else "FAIL")), "note": note}


def targets(scenarios: dict[str, dict[str, Any]], apply: dict[str, Any] | None,
            reload: dict[str, Any] | None, alternated: dict[str, dict[str, list[float]]] | None = None,
            alternated_cpu: dict[str, dict[str, list[float]]] | None = None,
            startup: dict[str, Any] | None = None, batch: dict[str, Any] | None = None,
            drift: dict[str, Any] | None = None, batching: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    a, b = scenarios.get("a"), scenarios.get("b")
    rps = {k: _get(v, "wrk_c16", "requests_per_s") for k, v in scenarios.items()}
    # (b) no-code and (c) score.py through the router, each against azmlinfsrv with the same score.py
    for key, times in (("b", 3.0), ("c", 2.0)):
        x = scenarios.get(key)
        if not (a and x and rps["a"] and rps[key]):
            continue
        ratio = rps[key] / rps["a"]
        out.append(_target(f"({key}) throughput vs (a)", f"≥ {times:.1f}×", f"{ratio:.2f}× ({rps[key]:,.0f} vs "
                           f"{rps['a']:,.0f} req/s, wrk c16)", ratio >= times))
        pa, px = _get(a, "wrk_c16", "latency_ms", "p99"), _get(x, "wrk_c16", "latency_ms", "p99")
        if pa and px:
            out.append(_target(f"({key}) p99 vs (a), closed loop", "≤ 0.5×", f"{px / pa:.2f}× ({_ms(px)} vs "
                               f"{_ms(pa)}, wrk c16)", px / pa <= 0.5))
        oa = _get(a, "open_loop", "latency_ms", "p99")
        for run, name, note in (
                ("open_loop_at_a", f"({key}) p99 vs (a), open loop at (a)'s rate",
                 "the same offered load, like for like: the tail a user load-testing at that rate sees"),
                ("open_loop", f"({key}) p99 vs (a), open loop at half of each's capacity",
                 f"not the same rate: ({key}) carries more than (a)'s load")):
            ox = _get(x, run, "latency_ms", "p99")
            if oa and ox:
                rate = _get(x, run, "target_rate") or 0
                out.append(_target(name, "≤ 0.5×", f"{ox / oa:.2f}× ({_ms(ox)} at {rate:,.0f}/s vs {_ms(oa)})",
                                   ox / oa <= 0.5, note))
    d = scenarios.get("d")
    if b and d:
        pb, pd = _get(b, "wrk_c1", "latency_ms", "p50"), _get(d, "wrk_c1", "latency_ms", "p50")
        if pb is not None and pd is not None:
            added = (pb - pd) * 1000
            out.append(_target("router added latency, p50 (b) − p50 (d), one connection", "≤ 150 µs",
                               f"{added:.0f} µs ({_ms(pb)} − {_ms(pd)})", added <= 150))
    alternated = alternated or {}
    for key, name, wanted, limit in (("mirror", "mirroring 50% of traffic: throughput cost", "≤ 10%", 0.10),
                                     ("mirror_apart", "mirroring 50%, the target a process on another core: "
                                      "throughput cost", "≤ 10%", 0.10),
                                     ("request_log", "request log: throughput cost", "≤ 5%", 0.05),
                                     ("tui", "terminal UI open on live endpoints: throughput cost", "≤ 5%", 0.05),
                                     ("prometheus", "Prometheus scrape every second: throughput cost", "≤ 2%",
                                      0.02),
                                     ("collect", "data collection of inputs and outputs at 100%: throughput cost",
                                      "≤ 10%", 0.10)):
        runs = alternated.get(key)
        if runs and runs.get("on") and runs.get("off"):
            # The runs were made in pairs (one of each arm, back to back, on the same fresh daemon), so
            # the cost is the median of the pairs' own ratios: drift between pairs cancels out. The
            # verdict is the interval's, not the median's: on a noisy machine a pair's ratio varies by
            # more than the cost being judged, and an interval across the limit decides nothing.
            ratios = _pair_ratios(runs)
            cost = 1 - statistics.median(ratios)
            low_ratio, high_ratio, coverage = median_interval(ratios)
            low, high = 1 - high_ratio, 1 - low_ratio
            on, off = statistics.median(runs["on"]), statistics.median(runs["off"])
            note = (f"median of {len(ratios)} alternated pairs of c16 runs, {coverage:.0%} interval "
                    f"{low:.1%} to {high:.1%}")
            cpu = (alternated_cpu or {}).get(key)
            if cpu and cpu.get("on") and cpu.get("off"):
                con, coff = statistics.median(cpu["on"]), statistics.median(cpu["off"])
                paired = statistics.median(_pair_ratios(cpu)) - 1
                note += f"; server CPU {con:.0f} vs {coff:.0f} µs/request ({paired:+.1%} paired)"
            verdict = "PASS" if high <= limit else "FAIL" if low > limit else "UNDECIDED"
            if verdict == "UNDECIDED":
                note += ("; the interval spans the limit: more pairs (--ab-pairs, or several runs' results together "
                         "with --report) or a quieter machine decide it")
            out.append(_target(name, wanted, f"{cost:.1%} (medians {on:,.0f} with vs {off:,.0f} req/s without)",
                               None, note, verdict))
            continue
        if key in ("tui", "prometheus", "collect", "mirror_apart"):
            continue  # measured only alternated
        scenario = "b-mirror" if key == "mirror" else "b-nolog"
        if rps.get(scenario) and rps.get("b"):
            on, off = (rps["b-mirror"], rps["b"]) if key == "mirror" else (rps["b"], rps["b-nolog"])
            cost = 1 - on / off
            out.append(_target(name, wanted, f"{cost:.1%} ({on:,.0f} with vs {off:,.0f} req/s without)",
                               cost <= limit, "one run each, not alternated"))
    total = {k: errors_of(v) for k, v in scenarios.items()}
    out.append(_target("errors (all runs, all scenarios)", "0",
                       f"{sum(total.values())}" + (f" ({', '.join(f'{k}: {n}' for k, n in total.items() if n)})"
                                                   if any(total.values()) else ""), sum(total.values()) == 0))
    if apply is not None:
        for kind, what, limit in (("trials", "a no-code ONNX deployment", 1.5),
                                  ("script_trials", "a score.py deployment, its environment built", 1.0)):
            label = f"apply of {what} → first 200"
            if kind not in apply:  # a result saved before score.py trials were measured
                continue
            times = [t["first_200_s"] for t in apply[kind] if t.get("first_200_s") is not None]
            if times:
                worst = max(times)
                measured = (f"worst {worst:.2f} s, median {statistics.median(times):.2f} s "
                            f"({', '.join(f'{t:.2f}' for t in times)})")
                out.append(_target(label, f"≤ {limit} s", measured, worst <= limit,
                                   "wall clock from `appliance apply` (the CLI waits for ready) to the first 200"))
            else:
                out.append(_target(label, f"≤ {limit} s", apply.get("error", "not measured"), False))
    if reload is not None:
        if not reload.get("available"):
            out.append(_target("hot reload → new code answering", "≤ 1 s", "not available", None,
                               reload.get("reason", "")))
        else:
            times = [t["seconds"] for t in reload.get("trials", []) if t.get("seconds") is not None]
            if times:
                worst = max(times)
                failed = sum(t.get("non_200", 0) for t in reload["trials"])
                out.append(_target("hot reload → new code answering", "≤ 1 s",
                                   f"worst {worst:.2f} s, median {statistics.median(times):.2f} s; "
                                   f"{failed} non-200 while swapping", worst <= 1.0 and failed == 0,
                                   "from saving score.py to the first answer of the new code"))
            else:
                out.append(_target("hot reload → new code answering", "≤ 1 s", reload.get("error", "no answer"),
                                   False))
    out += startup_targets(startup)
    out += batch_bench.targets(batch)  # (A) and (B) of the batch scenario
    out += drift_bench.targets(drift)
    out += batching_bench.targets(batching)
    return out


STARTUP_MS = 150  # issue 18, point 6: a command's wall time, as kubectl's ~50 ms is the peer


def startup_targets(startup: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Wall time of a CLI command (a fresh process each run, median of N) against the 150 ms target; the
    peer (a kubectl client command that runs without a cluster), when there is one, in the note."""
    if not startup:
        return []
    out = []
    peer = startup.get("peer") or {}
    for key, name in (("endpoint_list", "`appliance endpoint list -o json`, a running daemon → start-up"),
                      ("help", "`appliance --help` → start-up"),
                      ("onefile_endpoint_list", "one-file dist/appliance: `endpoint list -o json`"),
                      ("onefile_help", "one-file dist/appliance: `--help`")):
        run = startup.get(key)
        if run is None:
            continue
        wanted = f"≤ {STARTUP_MS} ms"
        if run.get("error"):
            out.append(_target(name, wanted, run["error"][-200:], False))
            continue
        median = run["median_ms"]
        note = f"wall, fresh process; median of {run['runs']} (min {run['min_ms']:.0f}, max {run['max_ms']:.0f} ms)"
        if peer.get("median_ms"):
            note += f"; {median / peer['median_ms']:.1f}× `{peer['command']}` ({peer['median_ms']:.0f} ms)"
        out.append(_target(name, wanted, f"{median:.0f} ms", median <= STARTUP_MS, note))
    return out


def pooled(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The first results document, with the alternated pairs of every document (file name → document) and
    its targets judged again over all of them: one run's 15 to 40 pairs may not decide a cost of a few
    percent on a noisy machine, several runs' pairs together can. Only runs of the same code on the same
    machine and pinning pool; others are refused (ValueError), each file named with what it ran."""
    sources = {name: _source(d) for name, d in docs.items()}
    if len(set(sources.values())) > 1:
        raise ValueError("only runs of the same code on the same machine can be judged together; these differ:\n"
                         + "\n".join(f"  {name}: {source}" for name, source in sources.items()))
    doc = copy.deepcopy(next(iter(docs.values())))
    for key in ("alternated", "alternated_cpu_us_per_request"):
        merged: dict[str, dict[str, list[float]]] = {}
        for d in docs.values():
            for cost, arms in (d.get(key) or {}).items():
                whole = min(len(arms.get("on", [])), len(arms.get("off", [])))  # a pair is one run of each arm
                for arm in ("on", "off"):
                    merged.setdefault(cost, {}).setdefault(arm, []).extend(arms[arm][:whole])
        doc[key] = merged
    doc["pooled_from"] = len(docs)
    doc["targets"] = targets(doc["scenarios"], doc.get("apply"), doc.get("hot_reload"), doc["alternated"],
                             doc["alternated_cpu_us_per_request"], doc.get("startup"), doc.get("batch"),
                             doc.get("drift"), doc.get("batching"))
    return doc


def _source(doc: dict[str, Any]) -> str:
    code = _get(doc, "appliance", "code") or "code not recorded (an older harness)"
    return f"{code}; CPU {_get(doc, 'machine', 'cpu')}, pinning {_get(doc, 'machine', 'pin_mode')}"


def targets_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="targets (reported, not asserted)", title_justify="left")
    for col in ("target", "wanted", "measured", "result", "note"):
        t.add_column(col)
    colour = {"PASS": "green", "FAIL": "red", "UNDECIDED": "yellow", "n/a": "yellow"}
    for r in rows:
        t.add_row(r["target"], r["wanted"], r["measured"], f"[{colour[r['result']]}]{r['result']}[/]", r["note"])
    return t


def print_all(console: Console, doc: dict[str, Any]) -> None:
    if not doc["scenarios"]:  # --startup-only
        console.print(targets_table(doc["targets"]))
        return
    console.print(table(doc["scenarios"], doc["settings"]["connections"]))
    console.print(f"[dim]load: wrk -t1 -c{doc['settings']['connections']} and -c1, {doc['settings']['duration_s']} s "
                  f"each (after a {doc['settings']['warmup_s']} s warm-up); open loop at "
                  f"{doc['settings']['open_loop_fraction']:.0%} of each server's c{doc['settings']['connections']} "
                  f"req/s (at most {doc['settings']['open_loop_max_rate']:,.0f}/s: 'cap'), latency from the scheduled "
                  "send time, and for the appliance and the others again at (a)'s rate (× (a)'s OL p99); "
                  "† = the server (or the generator) did not keep up with that rate. 'other load': CPU used "
                  "meanwhile by processes outside this benchmark (the worst of the scenario's runs); rows with "
                  f"more than ~0.1 cores are disturbed. Pinning: {doc['machine']['pinning']}.[/dim]")
    cpu = {k: v.get("cpu_us_per_request") for k, v in doc["scenarios"].items() if v.get("cpu_us_per_request")}
    if cpu:
        console.print("[dim]server CPU per request during the c{} run (µs): {}[/dim]".format(
            doc["settings"]["connections"],
            "; ".join(f"{k}: " + ", ".join(f"{p} {us:.0f}" for p, us in v.items()) for k, v in cpu.items())))
    if doc.get("pooled_from", 1) > 1:
        console.print(f"[dim]the costs below are judged over the alternated pairs of {doc['pooled_from']} result "
                      "files; the tables above are the first file's[/dim]")
    console.print(targets_table(doc["targets"]))
