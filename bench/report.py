"""The bench's Markdown: a table of every figure (ratio min / median / max over repeats, with
the absolute numbers behind it), the machine it ran on, and the profiles of missed targets."""

from __future__ import annotations

import re
import statistics
from pathlib import Path


def spread(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"min": None, "median": None, "max": None}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _n(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _spread(s: dict, digits: int = 2) -> str:
    return " / ".join(_n(s.get(k), digits) for k in ("min", "median", "max"))


def _met(value: bool | None) -> str:
    return "n/a" if value is None else ("**met**" if value else "**missed**")


def machine_line(results: dict) -> str:
    m = results["machine"]
    start = ", ".join(f"{x:.2f}" for x in results.get("load_average_start", []))
    end = ", ".join(f"{x:.2f}" for x in results.get("load_average_end", []))
    return (
        f"Ran {m['date']} on {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, "
        f"Python {m['python']}, SQLite {m['sqlite']}, Linux {m['kernel']}; "
        f"load average {start} at the start, {end} at the end; sizes `{results['sizes']['name']}`."
    )


def rows(results: dict) -> list[list[str]]:
    items = results["items"]
    out: list[list[str]] = []
    if "1_send_throughput" in items:
        i = items["1_send_throughput"]
        out.append(
            [
                "1. Sync send throughput, concurrency 8 (emails/s)",
                _n(i["app_rate"]["median"], 0),
                _n(i["raw_rate"]["median"], 0) + " (raw smtplib)",
                _spread(i["ratio"]),
                ">= 0.5",
                _met(i["met"]),
            ]
        )
        if "peer_rate" in i:
            out.append(
                [
                    "1. Sync send over a bare Django send_mail view (peer)",
                    _n(i["app_rate"]["median"], 0),
                    _n(i["peer_rate"]["median"], 0) + " (send_mail view, emails/s)",
                    _spread(i["peer_ratio"]),
                    i["peer_target"],
                    _met(i["met_peer"]),
                ]
            )
        peaks = ", ".join(f"{kib / 1024:.0f}" for kib in i["peak_rss_kib_per_worker"].values())
        out.append(["1. Peak RSS per gunicorn worker (MiB)", peaks, "", "", "", ""])
    if "2_list_latency" in items:
        i = items["2_list_latency"]
        trivial = i["trivial"]
        for name, v in i["variants"].items():
            kind = "cache hit" if name.endswith("_hit") else "cache miss"
            page = name.split("_")[0].replace("page", "page=").replace("cursor", "cursor at page ")
            label = f"List {page}, {kind}"
            if name.startswith("floor"):
                label = "Floor: a view making one Redis round trip"
            out.append(
                [
                    f"2. {label}: p50 (ms)",
                    _n(v["p50_ms"]["median"]),
                    _n(trivial["p50_ms"]["median"]) + " (trivial view)",
                    _spread(v["ratio_p50"]),
                    v["target"].replace("p50 ", ""),
                    _met(v["met"]),
                ]
            )
            out.append(
                [
                    f"2. {label}: p99 (ms)",
                    _n(v["p99_ms"]["median"]),
                    _n(trivial["p99_ms"]["median"]) + " (trivial view)",
                    _spread(v["ratio_p99"]),
                    "",
                    "",
                ]
            )
    if "3_failover" in items:
        i = items["3_failover"]
        for p in ("p50", "p99"):
            out.append(
                [
                    f"3. Send with the first provider blackholed, circuit open: {p} (ms)",
                    _n(i[f"open_{p}_ms"]["median"]),
                    _n(i[f"healthy_{p}_ms"]["median"]) + " (healthy first provider)",
                    _spread(i[f"ratio_{p}"]),
                    "adds <= 5 ms" if p == "p99" else "",
                    (_met(i["met_added"]) + f" ({i['added_p99_ms']['median']:+.2f} ms)")
                    if p == "p99"
                    else f"{i['added_p50_ms']['median']:+.2f} ms",
                ]
            )
        for o in i["opening"]:
            waited = o.get("seconds_waiting_before_open")
            ratio = waited / o["bound_seconds"] if waited is not None else None
            out.append(
                [
                    f"3. Time until the circuit opens, {o['concurrency']} client(s) (s)",
                    f"{_n(waited)} waiting ({_n(o['seconds_to_open'])} wall)",
                    _n(o["bound_seconds"], 1) + " (threshold x connect timeout)",
                    _n(ratio),
                    "<= 1 (+5% timer slack)",
                    _met(o["met"]),
                ]
            )
    if "4_queue" in items:
        i = items["4_queue"]
        if i.get("skipped"):
            out.append(["4. Queue mode", "skipped", "", "", ">= 0.5 (drain)", i["skipped"]])
        else:
            out.append(
                [
                    "4. Queue enqueue rate (POSTs/s answering 202)",
                    _n(i["enqueue_rate"]["median"], 0),
                    _n(i["noop_publish_rate"]["median"], 0) + " (no-op publish)",
                    _spread(i["enqueue_ratio"]),
                    "",
                    "",
                ]
            )
            out.append(
                [
                    "4. Queue drain rate, 2 workers (emails/s at the sink)",
                    _n(i["drain_rate"]["median"], 0),
                    _n(i["noop_drain_rate"]["median"], 0) + " (no-op tasks/s)",
                    _spread(i["drain_ratio"]),
                    ">= 0.5",
                    _met(i["met"]),
                ]
            )
            if "peer_drain_rate" in i:
                out.append(
                    [
                        "4. Queue drain over django-post_office (peer)",
                        _n(i["drain_rate"]["median"], 0),
                        _n(i["peer_drain_rate"]["median"], 0) + " (post_office, emails/s)",
                        _spread(i["peer_drain_ratio"]),
                        i["peer_target"],
                        _met(i["met_peer"]),
                    ]
                )
    if "7_batch" in items:
        out.append(_batch_row(items["7_batch"]))
    if "5_memory" in items:
        i = items["5_memory"]
        for pid, p in i["processes"].items():
            out.append(
                [
                    f"5. RSS of {p.get('role', 'web worker')} {pid}, {i['sends']:,} sends (MiB)",
                    f"{p['rss_start_kib'] / 1024:.1f} -> {p['rss_end_kib'] / 1024:.1f}",
                    "",
                    f"{p['slope_kib_per_1k_sends']} KiB / 1k sends",
                    "flat",
                    "**flat**" if p["flat"] else "**grows**",
                ]
            )
    if "6_webhooks" in items:
        i = items["6_webhooks"]
        out.append(
            [
                "6. Webhook ingestion, concurrency 8 (Postmark events/s answered 200)",
                _n(i["webhook_rate"]["median"], 0),
                _n(i["trivial_rate"]["median"], 0) + " (trivial view, requests/s)",
                _spread(i["ratio"]),
                i["target"],
                _met(i["met"]),
            ]
        )
        for p in ("p50", "p99"):
            out.append(
                [
                    f"6. Webhook ingestion, concurrency 8: {p} (ms)",
                    _n(i[f"webhook_{p}_ms"]["median"]),
                    _n(i[f"trivial_{p}_ms"]["median"]) + " (trivial view)",
                    _spread(i[f"ratio_{p}"]),
                    "",
                    "",
                ]
            )
        out.append(
            [
                "6. DeliveryEvent rows stored / distinct records posted",
                f"{i['stored_rows']:,} / {i['distinct_posted']:,}",
                f"{i['repeats_posted']:,} repeats posted, "
                f"{i['answered_duplicates']:,} answered as duplicates",
                "",
                "equal",
                "**equal**" if i["rows_match"] else "**MISMATCH**",
            ]
        )
    return out


def _batch_row(i: dict) -> list[str]:
    """Item 7: no target is set, the ratio is shown."""
    if i.get("skipped"):
        return ["7. Batch send, queue mode", "skipped", "", "", "", i["skipped"]]
    return [
        "7. Batch send, queue mode: batches of 500, 2 workers (emails/s, first POST to sink)",
        _n(i["rate"]["median"], 0),
        _n(i["noop_drain_rate"]["median"], 0) + " (no-op tasks/s)",
        _spread(i["ratio"]),
        "",
        "",
    ]


def markdown(results: dict) -> str:
    header = [
        "Figure",
        "Project",
        "Baseline (same run)",
        "Ratio min / median / max",
        "Target",
        "Result",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(results)]
    notes = [machine_line(results)]
    seed = results.get("seed")
    if seed:
        notes.append(
            f"Seeding: {seed['rows']:,} emails inserted in {seed['seconds']} s "
            f"({'reused from bench/.cache' if seed['cached'] else 'built in this run'}; "
            f"copying the file took {seed['copy_seconds']} s)."
        )
    sending = results["items"].get("1_send_throughput")
    if sending:
        last = sending["runs"][-1]
        runs = [("app run", "app"), ("send_mail peer run", "peer"), ("raw smtplib run", "raw")]
        notes.append(
            "CPU used during the last throughput repeat, in cores of the 2: "
            + "; ".join(
                f"{label} " + ", ".join(f"{k} {v}" for k, v in last[key]["cpu_cores"].items())
                for label, key in runs
                if key in last
            )
            + "."
        )
    listing = results["items"].get("2_list_latency")
    if listing:
        notes.append(
            f"A full COUNT(*) over the listed account takes {listing['full_count_ms']} ms "
            "(measured directly); an uncached page no longer pays it on every request."
        )
    memory = results["items"].get("5_memory")
    if memory:
        answers = ", ".join(f"{n} x {code}" for code, n in memory["statuses"].items())
        note = (
            f"Memory: {memory['sends']:,} sends in {memory['seconds']:.0f} s "
            f"({memory['rate']:.0f}/s; answers: {answers}); RSS after the first 20 % of sends "
            "-> at the end, and the least-squares slope over that stretch."
        )
        if memory["capped_by_time"]:
            note += (
                f" That is what fits the time budget of {results['sizes']['soak_seconds']:.0f} s;"
                " `make bench-soak` runs 50,000."
            )
        notes.append(note)
    hooks = results["items"].get("6_webhooks")
    if hooks:
        run = hooks["runs"][-1]
        notes.append(
            "Webhooks: each record is a Postmark Delivery record for no email of the account "
            "(stored unmatched: no per-recipient fold, no list bump); about 1 in 10 POSTs "
            "re-posts an earlier record byte for byte. CPU used during the last repeat, in "
            "cores of the 2: webhook run "
            + ", ".join(f"{k} {v}" for k, v in run["webhook"].get("cpu_cores", {}).items())
            + "; trivial-view run "
            + ", ".join(f"{k} {v}" for k, v in run["trivial"].get("cpu_cores", {}).items())
            + "."
        )
    for key, failure in results.get("check_failures", {}).items():
        notes.append(f"**Item {key} check failed**: {failure}.")
    for key, error in results.get("errors", {}).items():
        notes.append(f"Item {key} failed: `{error.strip().splitlines()[-1]}`")
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes) + "\n"


def profiles_markdown(results: dict, *, top: int = 12) -> str:
    parts = []
    for name, summary in results.get("profiles", {}).items():
        if not summary.get("samples"):
            continue
        packages = ", ".join(f"{label} {share} %" for label, share in summary["packages"][:8])
        ours = [x for x in summary["inclusive"] if "(mailer/" in x[0]]
        whose = "the project's functions" if ours else "its functions (none are the project's)"
        parts.append(
            f"py-spy, `{name}`: {summary['samples']} samples while handling a request or task "
            f"({summary.get('busy_share', 100)} % of the processes' samples). Own time by "
            f"package: {packages}. Inclusive share of {whose}:\n"
        )
        ours = ours or summary["inclusive"]
        parts.append("```")
        parts += [f"{share:5.1f}%  {label}" for label, share in ours[:top]]
        parts.append("```\n")
    return "\n".join(parts)


def update_readme(path: Path, results: dict, table: str) -> None:
    """Replace the section between this run kind's markers with the new table."""
    name = results["sizes"]["name"]
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    text = path.read_text()
    if start not in text:
        return
    body = table
    profiles = profiles_markdown(results)
    if profiles:
        body += "\nProfiles of this run's missed targets:\n\n" + profiles
    text = re.sub(
        re.escape(start) + r".*?" + re.escape(end),
        lambda _: f"{start}\n{body}\n{end}",
        text,
        flags=re.DOTALL,
    )
    path.write_text(text)
