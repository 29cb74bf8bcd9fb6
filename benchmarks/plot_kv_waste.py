#!/usr/bin/env python3
"""Plots servelab_bench_kv_waste's JSON as two SVG files, with the standard library only.

    python3 benchmarks/plot_kv_waste.py benchmarks/results/2026-11-22-kv-waste.json

writes next to the JSON:
  <name>-percent.svg   the share of allocated KV memory left unused, per scheme (bar chart)
  <name>-timeline.svg  allocated GiB over time in the concurrent replay: paged (blocks of 16)
                       against the contiguous reservation of --max-length, and the memory in use
"""
import argparse
import json
import math
import pathlib
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 760, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 50, 80  # margins around the plot area
FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'
PAGED_COLOR, CONTIGUOUS_COLOR, USED_COLOR = "#2b6cb0", "#c05621", "#2f855a"


def svg_document(title, body):
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" {FONT} font-size="12">\n'
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>\n'
        f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="15" '
        f'font-weight="bold">{escape(title)}</text>\n' + "".join(body) + "</svg>\n"
    )


def nice_step(span, target_ticks=5):
    """A round tick spacing (1, 2 or 5 times a power of ten) giving about target_ticks ticks."""
    raw = span / target_ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def y_axis(body, top_value, label, to_y):
    """Horizontal grid lines with labels, and the axis title."""
    step = nice_step(top_value)
    value = 0.0
    while value <= top_value + 1e-9:
        y = to_y(value)
        body.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                    f'stroke="#ddd"/>\n')
        body.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value:g}</text>\n')
        value += step
    middle = (TOP + HEIGHT - BOTTOM) / 2
    body.append(f'<text x="18" y="{middle}" text-anchor="middle" '
                f'transform="rotate(-90 18 {middle})">{escape(label)}</text>\n')


def waste_bars(results):
    """One bar per scheme: waste over each request's lifetime, in percent of what it allocated."""
    rows = results["per_request"]
    body = []
    top_value = 100.0
    plot_height = HEIGHT - TOP - BOTTOM
    to_y = lambda value: TOP + plot_height * (1 - value / top_value)
    y_axis(body, top_value, "allocated but unused (%)", to_y)
    slot = (WIDTH - LEFT - RIGHT) / len(rows)
    for i, row in enumerate(rows):
        percent = 100 * row["waste_fraction"]
        x = LEFT + i * slot + slot * 0.2
        y = to_y(percent)
        color = PAGED_COLOR if row["scheme"].startswith("paged") else CONTIGUOUS_COLOR
        body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.6:.1f}" '
                    f'height="{to_y(0) - y:.1f}" fill="{color}"/>\n')
        body.append(f'<text x="{x + slot * 0.3:.1f}" y="{y - 5:.1f}" text-anchor="middle" '
                    f'font-weight="bold">{percent:.1f} %</text>\n')
        label_y = HEIGHT - BOTTOM + 16
        body.append(f'<text x="{x + slot * 0.3:.1f}" y="{label_y}" text-anchor="middle">'
                    f'{escape(row["scheme"])}</text>\n')
        if row["rejected_requests"]:
            body.append(f'<text x="{x + slot * 0.3:.1f}" y="{label_y + 15}" text-anchor="middle" '
                        f'fill="#555">{row["rejected_requests"]} rejected</text>\n')
    trace = results["trace"]
    body.append(f'<text x="{WIDTH / 2}" y="{HEIGHT - 14}" text-anchor="middle" fill="#555">'
                f'first {trace["requests"]} requests of the Azure LLM conversation trace 2023; '
                f'time-weighted over each request\'s decode steps</text>\n')
    return svg_document("KV-cache memory allocated but unused", body)


def timeline(results):
    """Allocated GiB over time, paged-16 against the contiguous --max-length reservation."""
    settings, line_data = results["settings"], results["timeline"]
    gib_per_slot = settings["bytes_per_token"] / 2**30
    stride = line_data["stride_seconds"]
    contiguous = f'contiguous-{settings["max_length"]}'
    paged = "paged-16" if "paged-16" in line_data["allocated_slots"] else next(
        name for name in line_data["allocated_slots"] if name.startswith("paged"))
    series = [
        (contiguous, line_data["allocated_slots"][contiguous], CONTIGUOUS_COLOR,
         f"{contiguous} allocated"),
        (paged, line_data["allocated_slots"][paged], PAGED_COLOR, f"{paged} allocated"),
        ("used", line_data["used_slots"], USED_COLOR, "in use (all requests)"),
    ]
    longest = max(len(values) for _, values, _, _ in series)
    end_seconds = max(stride * (longest - 1), stride)
    top_value = max(max(values) for _, values, _, _ in series) * gib_per_slot * 1.08
    top_value = max(top_value, 1e-3)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    to_x = lambda seconds: LEFT + plot_width * seconds / end_seconds
    to_y = lambda value: TOP + plot_height * (1 - value / top_value)
    body = []
    y_axis(body, top_value, "KV memory (GiB, Llama-3-8B: 128 KiB per token)", to_y)
    step = nice_step(end_seconds)
    second = 0.0
    while second <= end_seconds + 1e-9:
        x = to_x(second)
        body.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
                    f'{second:g}</text>\n')
        second += step
    body.append(f'<text x="{LEFT + plot_width / 2}" y="{HEIGHT - BOTTOM + 34}" '
                f'text-anchor="middle">time since the first request (s)</text>\n')
    for _, values, color, _ in series:
        points = " ".join(f"{to_x(i * stride):.1f},{to_y(v * gib_per_slot):.1f}"
                          for i, v in enumerate(values))
        body.append(f'<polyline points="{points}" fill="none" stroke="{color}" '
                    f'stroke-width="1.2"/>\n')
    # The legend in one row between the title and the plot, where no line can hide it.
    for i, (_, _, color, label) in enumerate(series):
        x, y = LEFT + 12 + 210 * i, TOP - 12
        body.append(f'<line x1="{x}" x2="{x + 20}" y1="{y}" y2="{y}" stroke="{color}" '
                    f'stroke-width="3"/>\n')
        body.append(f'<text x="{x + 26}" y="{y + 4}">{escape(label)}</text>\n')
    per_token_ms = 1000 * settings["seconds_per_token"]
    body.append(f'<text x="{WIDTH / 2}" y="{HEIGHT - 14}" text-anchor="middle" fill="#555">'
                f'requests arrive at their trace times and generate one token every '
                f'{per_token_ms:g} ms; one point per {stride:g} s</text>\n')
    return svg_document("Concurrent replay: KV memory allocated over time", body)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", type=pathlib.Path, help="servelab_bench_kv_waste --out file")
    args = parser.parse_args()
    results = json.loads(args.json.read_text())
    stem = args.json.with_suffix("")
    for suffix, svg in (("-percent.svg", waste_bars(results)),
                        ("-timeline.svg", timeline(results))):
        path = stem.parent / (stem.name + suffix)
        path.write_text(svg)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
