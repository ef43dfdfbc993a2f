"""The bench report: `python bench/report.py bench/results` reads every bench's JSON there and writes report.md.

For each load bench result (`bench/load.py`, `"bench": "load"`) it draws, with matplotlib (PNG, next to the
report): request messages and final lines posted over time against the floor Slack's limits allow, Slack calls
by method, and the approval → first backend write histogram; the report's table gives the figures. Any other
bench's JSON is listed with its top-level figures, so `make bench` leaves one page to read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a CI runner
import matplotlib.pyplot as plt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox.slack.ratelimits import POST_MESSAGE_BURST, POST_MESSAGE_PER_SECOND

# The latency the issue asks for, drawn on the histogram.
LATENCY_GOAL_MS = 100


def speed(result: dict[str, Any]) -> str:
    scale = float(result["slack_scale"])
    return "Slack's own speed" if scale == 1 else f"Slack's minute {scale:g}x faster"


def plot_timeline(result: dict[str, Any], out: Path) -> None:
    """Messages posted over time, with the most Slack's channel limit allows (B at once, then R a second)."""
    run = result["separate"]
    scale = float(result["slack_scale"])
    figure, axes = plt.subplots(figsize=(7, 4))
    for key, label in (("request_post_times_s", "request messages"), ("final_line_times_s", "final lines")):
        times = run.get(key, [])
        axes.step(times, range(1, len(times) + 1), where="post", label=label)
    end = max(run.get("final_line_times_s", [0]) or [0])
    rate = POST_MESSAGE_PER_SECOND * scale
    axes.plot([0, end], [POST_MESSAGE_BURST, POST_MESSAGE_BURST + rate * end], "k--", lw=1, label="channel limit")
    axes.set_xlabel("seconds since the first /rollback")
    axes.set_ylabel("messages posted")
    axes.set_ylim(0, run["targets"] * 1.1)
    axes.set_title(f"{run['targets']} separate rollbacks, {speed(result)}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def plot_calls(result: dict[str, Any], out: Path) -> None:
    scenarios = [s for s in ("separate", "batch") if "slack_calls_by_method" in result.get(s, {})]
    methods = sorted({m for s in scenarios for m in result[s]["slack_calls_by_method"]})
    figure, axes = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(scenarios))
    for offset, scenario in enumerate(scenarios):
        counts = [result[scenario]["slack_calls_by_method"].get(m, 0) for m in methods]
        axes.bar([i + offset * width for i in range(len(methods))], counts, width, label=scenario)
    axes.set_xticks([i + width * (len(scenarios) - 1) / 2 for i in range(len(methods))], methods, rotation=30)
    axes.set_ylabel("calls")
    axes.set_title(f"Slack calls by method, {result['targets']} targets, {speed(result)}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def plot_latency(result: dict[str, Any], out: Path) -> None:
    samples = result["separate"]["approval_to_first_write_ms"]["samples"]
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.hist(samples, bins=30)
    axes.axvline(LATENCY_GOAL_MS, color="k", ls="--", lw=1, label=f"goal p99 ≤ {LATENCY_GOAL_MS} ms")
    axes.set_xlabel("approval → first backend write (ms)")
    axes.set_ylabel("operations")
    axes.set_title(f"{len(samples)} approvals, {speed(result)}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def load_section(name: str, result: dict[str, Any], directory: Path) -> list[str]:
    lines = [f"## {name}: {result['targets']} targets, {speed(result)}", ""]
    machine = result["machine"]
    lines.append(
        f"{result['replicas']} replicas, backend: {result['backend']}. Machine: {machine['cpus']} CPUs, "
        f"load average {machine['load_before'][0]:.1f} before, {machine['load_after'][0]:.1f} after."
    )
    lines.append("")
    separate, batch = result.get("separate", {}), result.get("batch", {})
    for scenario, run in (("separate", separate), ("batch", batch)):
        if "error" in run:
            lines += [f"**{scenario} did not finish:** {run['error']}", ""]
        elif run.get("timed_out"):
            lines += [f"**{scenario} timed out:** {run['timed_out']}; the figures say what arrived.", ""]
    rows: list[tuple[str, Any]] = []
    if "error" not in separate and separate:
        latency = separate["approval_to_first_write_ms"]
        rows += [
            (
                "requests bounced / not acked / writes lost",
                f"{separate['requests_bounced']} / {separate['requests_not_acked']} / {separate['writes_lost']}",
            ),
            (
                "every request message posted (floor)",
                f"{separate['requests_posted_s']} s ({separate['requests_floor_s']} s)",
            ),
            (
                "every final line posted (floor for these posts; for 2 a target)",
                f"{separate['final_lines_posted_s'] or 'not all, timed out'} s ({separate['final_floor_s']} s; "
                f"{separate['final_floor_two_posts_s']} s)",
            ),
            ("approval → first backend write p50 / p99", f"{latency['p50']} / {latency['p99']} ms"),
            (
                "Slack calls (per operation), writes",
                f"{separate['slack_calls']} ({separate['slack_calls_per_operation']}), {separate['slack_writes']}",
            ),
            ("Slack 429s", separate["slack_429s"]),
            ("tracebacks in the replicas' logs", separate.get("replica_tracebacks", "?")),
            ("Redis commands per operation", separate["redis_commands_per_operation"]),
            ("bot CPU seconds per operation", separate["bot_cpu_seconds_per_operation"]),
            ("peak RSS per replica (MiB)", ", ".join(f"{v}" for v in separate["peak_rss_mib_by_replica"].values())),
        ]
    if "error" not in batch and batch:
        rows += [
            ("batch: last final line (floor)", f"{batch['final_lines_posted_s']} s ({batch['final_floor_s']} s)"),
            ("batch: members succeeded", f"{batch['members_succeeded']} of {batch['targets']}"),
            (
                "batch: Slack calls, writes, 429s",
                f"{batch['slack_calls']}, {batch['slack_writes']}, {batch['slack_429s']}",
            ),
        ]
    lines += ["| figure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
    if "error" not in separate and separate:
        for suffix, draw in (("timeline", plot_timeline), ("latency", plot_latency)):
            picture = f"{name}-{suffix}.png"
            draw(result, directory / picture)
            lines += [f"![{suffix}]({picture})", ""]
    if any("slack_calls_by_method" in run for run in (separate, batch)):
        picture = f"{name}-calls.png"
        plot_calls(result, directory / picture)
        lines += [f"![calls]({picture})", ""]
    return lines


def other_section(name: str, result: Any) -> list[str]:
    figures = {k: v for k, v in result.items() if isinstance(v, int | float | str)} if isinstance(result, dict) else {}
    shown = ", ".join(f"{k}={v}" for k, v in list(figures.items())[:8])
    return [f"- `{name}.json`: {shown or 'see the file'}"]


def main() -> int:
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        print("usage: python bench/report.py <results directory holding the benches' JSON>", file=sys.stderr)
        return 2
    directory = Path(sys.argv[1])
    lines = ["# Bench results", "", "Written by `make bench` (the load bench alone: `make bench-load`).", ""]
    others: list[str] = []
    for path in sorted(directory.glob("*.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            others.append(f"- `{path.name}`: not JSON ({error}); the bench failed, see its output")
            continue
        if isinstance(result, dict) and result.get("bench") == "load":
            lines += load_section(path.stem, result, directory)
        else:
            others += other_section(path.stem, result)
    if others:
        lines += ["## Other benches", "", *others, ""]
    (directory / "report.md").write_text("\n".join(lines), encoding="utf-8")
    print(directory / "report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
