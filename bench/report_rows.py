"""The rows of the bench's table, one function per item: each row is [figure, project,
baseline (same run), ratio min / median / max, target, result]."""

from __future__ import annotations

Row = list[str]


def _n(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _spread(s: dict, digits: int = 2) -> str:
    return " / ".join(_n(s.get(k), digits) for k in ("min", "median", "max"))


def _met(value: bool | None) -> str:
    """None: no target, or one moved by evidence (bench/README.md, "Targets")."""
    return "n/a" if value is None else ("**met**" if value else "**missed**")


def _rate(s: dict) -> str:
    return _n(s["median"], 0)


def _reference(label: str, project: dict, baseline: dict, name: str, ratio: dict) -> Row:
    """A row without a target (a floor, shown for reference): rates, medians and the ratio."""
    return [label, _rate(project), f"{_rate(baseline)} ({name})", _spread(ratio), "", "n/a"]


def rows(results: dict) -> list[Row]:
    items = results["items"]
    out: list[Row] = []
    builders = [
        ("1_send_throughput", _send_rows),
        ("2_list_latency", _list_rows),
        ("3_failover", _failover_rows),
        ("4_queue", _queue_rows),
        ("7_batch", lambda i: [_batch_row(i)]),
        ("5_memory", _memory_rows),
        ("6_webhooks", _webhook_rows),
    ]
    for key, build in builders:
        if key in items:
            out += build(items[key])
    return out


def _send_rows(i: dict) -> list[Row]:
    out = [["1. Sync send throughput, concurrency 8 (emails/s)", _rate(i["app_rate"]),
            _rate(i["raw_rate"]) + " (raw smtplib)", _spread(i["ratio"]), i["target"],
            _met(i["met"])]]  # fmt: skip
    if "peer_rate" in i:
        out.append(["1. Sync send over a bare Django send_mail view (peer)", _rate(i["app_rate"]),
                    _rate(i["peer_rate"]) + " (send_mail view, emails/s)",
                    _spread(i["peer_ratio"]), i["peer_target"], _met(i["met_peer"])])  # fmt: skip
    if "floor_rate" in i:
        out += _send_floor_rows(i)
        out[-1][4:] = [i["floor_target"], _met(i["met_floor"])]
    peaks = ", ".join(f"{kib / 1024:.0f}" for kib in i["peak_rss_kib_per_worker"].values())
    out.append(["1. Peak RSS per gunicorn worker (MiB)", peaks, "", "", "", ""])
    return out


def _send_floor_rows(i: dict) -> list[Row]:
    """Item 1's durable floor (bench/floor_views.py): no target, for reference."""
    floor = "durable floor, emails/s"
    return [
        _reference("1. Durable floor (store email, send on a kept connection, store "
                   "attempt+outcome): emails/s", i["floor_rate"], i["raw_rate"],
                   "raw smtplib", i["floor_over_raw"]),
        _reference("1. Durable floor over the send_mail peer", i["floor_rate"], i["peer_rate"],
                   "send_mail view, emails/s", i["floor_over_peer"]),
        _reference("1. Sync send over the durable floor", i["app_rate"], i["floor_rate"], floor,
                   i["floor_ratio"]),
    ]  # fmt: skip


def _list_label(name: str, i: dict) -> str:
    if name == "floor_redis":
        return "Floor: a view making one Redis round trip"
    if name == "floor_redis_page":
        size = i.get("floor_page_bytes")
        size = f"{size:,} bytes" if size is not None else "size n/a"
        return f"Floor: one Redis round trip returning the cached page's bytes ({size})"
    if name.startswith("floor_api_db"):
        page = name.removeprefix("floor_api_db") or "1"
        return (f"Floor, cache miss: the same operation reading page {page} by one hand-written "
                "SQL statement (LIMIT/OFFSET)")  # fmt: skip
    if name == "floor_api_page":
        return (
            "Floor: the same bytes from a django-ninja operation with the API's token "
            "check and rate limit, in one Redis round trip"
        )
    kind = "cache hit" if name.endswith("_hit") else "cache miss"
    page = name.split("_")[0].replace("page", "page=").replace("cursor", "cursor at page ")
    return f"List {page}, {kind}"


def _list_rows(i: dict) -> list[Row]:
    trivial = i["trivial"]
    out: list[Row] = []
    for name, v in i["variants"].items():
        label = _list_label(name, i)
        out.append([f"2. {label}: p50 (ms)", _n(v["p50_ms"]["median"]),
                    _n(trivial["p50_ms"]["median"]) + " (trivial view)",
                    _spread(v["ratio_p50"]), v["target"].replace("p50 ", ""),
                    _met(v["met"])])  # fmt: skip
        out.append([f"2. {label}: p99 (ms)", _n(v["p99_ms"]["median"]),
                    _n(trivial["p99_ms"]["median"]) + " (trivial view)",
                    _spread(v["ratio_p99"]), "", ""])  # fmt: skip
        if "over_floor" in v:
            floor = i["variants"][v["floor"]]
            out.append([f"2. {label} over its floor: p50", _n(v["p50_ms"]["median"]),
                        _n(floor["p50_ms"]["median"]) + f" ({v['floor']})",
                        _spread(v["over_floor"]), v["floor_target"],
                        _met(v["met_floor"])])  # fmt: skip
    return out


def _failover_rows(i: dict) -> list[Row]:
    out: list[Row] = []
    for p in ("p50", "p99"):
        added = f"{i[f'added_{p}_ms']['median']:+.2f} ms"
        target = "adds <= 5 ms" if p == "p99" else ""
        result = f"{_met(i['met_added'])} ({added})" if p == "p99" else added
        out.append([f"3. Send with the first provider blackholed, circuit open: {p} (ms)",
                    _n(i[f"open_{p}_ms"]["median"]),
                    _n(i[f"healthy_{p}_ms"]["median"]) + " (healthy first provider)",
                    _spread(i[f"ratio_{p}"]), target, result])  # fmt: skip
    for o in i["opening"]:
        waited = o.get("seconds_waiting_before_open")
        ratio = waited / o["bound_seconds"] if waited is not None else None
        out.append([f"3. Time until the circuit opens, {o['concurrency']} client(s) (s)",
                    f"{_n(waited)} waiting ({_n(o['seconds_to_open'])} wall)",
                    _n(o["bound_seconds"], 1) + " (threshold x connect timeout)", _n(ratio),
                    "<= 1 (+5% timer slack)", _met(o["met"])])  # fmt: skip
    return out


def _queue_rows(i: dict) -> list[Row]:
    if i.get("skipped"):
        return [["4. Queue mode", "skipped", "", "", "", i["skipped"]]]
    out = [
        ["4. Queue enqueue rate (POSTs/s answering 202)", _rate(i["enqueue_rate"]),
         _rate(i["noop_publish_rate"]) + " (no-op publish)", _spread(i["enqueue_ratio"]), "", ""],
        ["4. Queue drain rate, 2 workers (emails/s at the sink)", _rate(i["drain_rate"]),
         _rate(i["noop_drain_rate"]) + " (no-op tasks/s)", _spread(i["drain_ratio"]),
         i["target"], _met(i["met"])],
    ]  # fmt: skip
    if "peer_drain_rate" in i:
        out.append(["4. Queue drain over django-post_office (peer)", _rate(i["drain_rate"]),
                    _rate(i["peer_drain_rate"]) + " (post_office, emails/s)",
                    _spread(i["peer_drain_ratio"]), i["peer_target"],
                    _met(i["met_peer"])])  # fmt: skip
    if "floor_drain_rate" in i:
        out += _queue_floor_rows(i)
        out[-1][4:] = [i["floor_target"], _met(i["met_floor"])]
    return out


def _queue_floor_rows(i: dict) -> list[Row]:
    """Item 4's durable floor (bench/floor_celery.py): no target, for reference."""
    floor = i["floor_drain_rate"]
    return [
        _reference("4. Durable floor drain, 2 workers (claim, send on a kept connection, store "
                   "attempt+outcome): emails/s", floor, i["noop_drain_rate"], "no-op tasks/s",
                   i["floor_drain_over_noop"]),
        _reference("4. Durable floor drain over django-post_office", floor,
                   i["peer_drain_rate"], "post_office, emails/s", i["floor_drain_over_peer"]),
        _reference("4. Queue drain over the durable floor drain", i["drain_rate"], floor,
                   "durable floor, emails/s", i["drain_over_floor"]),
    ]  # fmt: skip


def _batch_row(i: dict) -> Row:
    """Item 7: no target is set, the ratio is shown."""
    if i.get("skipped"):
        return ["7. Batch send, queue mode", "skipped", "", "", "", i["skipped"]]
    return ["7. Batch send, queue mode: batches of 500, 2 workers (emails/s, first POST to sink)",
            _rate(i["rate"]), _rate(i["noop_drain_rate"]) + " (no-op tasks/s)",
            _spread(i["ratio"]), "", ""]  # fmt: skip


def _memory_rows(i: dict) -> list[Row]:
    return [[f"5. RSS of {p.get('role', 'web worker')} {pid}, {i['sends']:,} sends (MiB)",
             f"{p['rss_start_kib'] / 1024:.1f} -> {p['rss_end_kib'] / 1024:.1f}", "",
             f"{p['slope_kib_per_1k_sends']} KiB / 1k sends", "flat",
             "**flat**" if p["flat"] else "**grows**"]
            for pid, p in i["processes"].items()]  # fmt: skip


def _webhook_rows(i: dict) -> list[Row]:
    out = [["6. Webhook ingestion, concurrency 8 (Postmark events/s answered 200)",
            _rate(i["webhook_rate"]), _rate(i["trivial_rate"]) + " (trivial view, requests/s)",
            _spread(i["ratio"]), i["target"], _met(i["met"])]]  # fmt: skip
    for p in ("p50", "p99"):
        out.append([f"6. Webhook ingestion, concurrency 8: {p} (ms)",
                    _n(i[f"webhook_{p}_ms"]["median"]),
                    _n(i[f"trivial_{p}_ms"]["median"]) + " (trivial view)",
                    _spread(i[f"ratio_{p}"]), "", ""])  # fmt: skip
    out.append(["6. DeliveryEvent rows stored / distinct records posted",
                f"{i['stored_rows']:,} / {i['distinct_posted']:,}",
                f"{i['repeats_posted']:,} repeats posted, "
                f"{i['answered_duplicates']:,} answered as duplicates",
                "", "equal", "**equal**" if i["rows_match"] else "**MISMATCH**"])  # fmt: skip
    return out
