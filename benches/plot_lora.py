#!/usr/bin/env python3
"""Draws the loss curves of a `benches/lora_compare.py` report as an SVG (no plotting
package needed): train and validation loss per step, ours and mlx_lm.lora's.

    python3 benches/plot_lora.py REPORT.json OUT.svg
"""
import json
import sys

W, H = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 60, 170, 30, 50


def curves(report):
    """(label, colour, dashed, [(step, loss)]) for each curve of the report."""
    out = []
    for side, name, colour in (("ours", "ours", "#1f77b4"), ("mlx_lm", "mlx_lm.lora", "#d62728")):
        runs = report[side]
        train = [(r["iteration"], r["train_loss"]) for r in runs["train"]]
        valid = [(r["iteration"], r["val_loss"]) for r in runs["val"]]
        out.append((f"{name} train", colour, False, train))
        out.append((f"{name} validation", colour, True, valid))
    return out


def svg(report):
    lines = curves(report)
    points = [p for _, _, _, pts in lines for p in pts]
    if not points:
        raise SystemExit("the report holds no losses")
    x_max = max(x for x, _ in points) or 1
    y_lo = min(y for _, y in points)
    y_hi = max(y for _, y in points)
    y_lo, y_hi = int(y_lo) if y_lo >= 0 else y_lo, int(y_hi) + 1
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def sx(x):
        return LEFT + pw * x / x_max

    def sy(y):
        return TOP + ph * (1 - (y - y_lo) / (y_hi - y_lo))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{LEFT}" y="18" font-size="13">LoRA on the scikit-learn dataset '
        f"descriptions: loss per step (batch {report['batch_size']}, "
        f"lr {report['learning_rate']})</text>",
    ]
    for i in range(y_lo, y_hi + 1):
        y = sy(i)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + pw}" y2="{y:.1f}" '
                     'stroke="#ddd"/>')
        parts.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{i}</text>')
    step = max(1, x_max // 6)
    for x in range(0, x_max + 1, step):
        parts.append(f'<text x="{sx(x):.1f}" y="{TOP + ph + 18}" '
                     f'text-anchor="middle">{x}</text>')
    parts.append(f'<text x="{LEFT + pw / 2}" y="{H - 12}" text-anchor="middle">step</text>')
    parts.append(f'<text x="16" y="{TOP + ph / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 16 {TOP + ph / 2})">loss</text>')
    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" '
                 'stroke="#333"/>')
    for k, (label, colour, dashed, pts) in enumerate(lines):
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                     f'stroke-width="2"{dash}/>')
        for x, y in pts:
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" '
                         f'fill="{colour}"/>')
        ly = TOP + 10 + 20 * k
        lx = LEFT + pw + 12
        parts.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 24}" y2="{ly}" stroke="{colour}" '
                     f'stroke-width="2"{dash}/>')
        parts.append(f'<text x="{lx + 30}" y="{ly + 4}">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: plot_lora.py REPORT.json OUT.svg")
    with open(sys.argv[1]) as f:
        report = json.load(f)
    with open(sys.argv[2], "w") as f:
        f.write(svg(report))


if __name__ == "__main__":
    main()
