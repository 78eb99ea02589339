"""The bench's Markdown: a table of every figure (ratio min / median / max over repeats, with
the absolute numbers behind it; rows built by bench/report_rows.py), the machine it ran on, and
the profiles of missed targets."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from bench.report_rows import rows


def spread(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"min": None, "median": None, "max": None}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def at_least(runs: list[dict], key: str, target: str) -> bool:
    """Whether the median of the repeats' `key` reaches a target written ">= 0.75"."""
    median = spread([r[key] for r in runs])["median"]
    return median is not None and median >= float(target.removeprefix(">= "))


def machine_line(results: dict) -> str:
    m = results["machine"]
    start = ", ".join(f"{x:.2f}" for x in results.get("load_average_start", []))
    end = ", ".join(f"{x:.2f}" for x in results.get("load_average_end", []))
    return (
        f"Ran {m['date']} on {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, "
        f"Python {m['python']}, SQLite {m['sqlite']}, Linux {m['kernel']}; "
        f"load average {start} at the start, {end} at the end; sizes `{results['sizes']['name']}`."
    )


def _send_cpu_note(last: dict) -> str:
    """Item 1: the cores each process used during the last repeat, run by run."""
    runs = [("app run", "app"), ("send_mail peer run", "peer"),
            ("durable floor run", "floor"), ("raw smtplib run", "raw")]  # fmt: skip
    return (
        "CPU used during the last throughput repeat, in cores of the 2: "
        + "; ".join(
            f"{label} " + ", ".join(f"{k} {v}" for k, v in last[key]["cpu_cores"].items())
            for label, key in runs
            if key in last
        )
        + "."
    )


def _memory_note(memory: dict, soak_seconds: float) -> str:
    answers = ", ".join(f"{n} x {code}" for code, n in memory["statuses"].items())
    note = (
        f"Memory: {memory['sends']:,} sends in {memory['seconds']:.0f} s "
        f"({memory['rate']:.0f}/s; answers: {answers}); RSS after the first 20 % of sends "
        "-> at the end, and the least-squares slope over that stretch."
    )
    if memory["capped_by_time"]:
        note += (
            f" That is what fits the time budget of {soak_seconds:.0f} s;"
            " `make bench-soak` runs 50,000."
        )
    return note


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
        notes.append(_send_cpu_note(sending["runs"][-1]))
    listing = results["items"].get("2_list_latency")
    if listing:
        notes.append(
            f"A full COUNT(*) over the listed account takes {listing['full_count_ms']} ms "
            "(measured directly); an uncached page no longer pays it on every request."
        )
    memory = results["items"].get("5_memory")
    if memory:
        notes.append(_memory_note(memory, results["sizes"]["soak_seconds"]))
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
    for key, found in results.get("check_notes", {}).items():
        notes.append(f"Item {key}: {'; '.join(found)}.")
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
