"""Small SVG charts written by hand, so that the benchmark needs no plotting library.

``line_panels`` draws log-log line charts in a row of panels; ``strip`` draws per-pair ratios as
dots per category with reference lines. Both write a standalone .svg file.
"""
import math
from html import escape

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def _log_ticks(lo, hi):
    return [10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]


def _fmt(v):
    return f"{v:g}" if 1e-3 <= abs(v) < 1e4 else f"1e{round(math.log10(v))}"


def line_panels(path, title, panels, xlabel, ylabel, floor=1e-9, width=300, height=260):
    """panels: list of (panel title, [(label, xs, ys, style)]) with style in ("solid", "dash", "dot").
    Values below ``floor`` are drawn at the floor (the y-axis label says so)."""
    left, top, bottom, gap = 62, 46, 46, 18
    legend_h = 22
    W = left + len(panels) * (width + gap) + 10
    H = top + height + bottom + legend_h
    ys_all = [max(y, floor) for _, series in panels for _, _, ys, _ in series for y in ys]
    xs_all = [x for _, series in panels for _, xs, _, _ in series for x in xs]
    ylo, yhi = min(ys_all), max(ys_all)
    yticks = _log_ticks(ylo, yhi)
    ylo, yhi = yticks[0], yticks[-1]
    xlo, xhi = min(xs_all) / 1.15, max(xs_all) * 1.15
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14">{escape(title)}</text>']
    dashes = {"solid": "", "dash": ' stroke-dasharray="6,3"', "dot": ' stroke-dasharray="2,3"'}
    labels = []
    for k, (ptitle, series) in enumerate(panels):
        x0 = left + k * (width + gap)

        def px(x):
            return x0 + width * (math.log(x) - math.log(xlo)) / (math.log(xhi) - math.log(xlo))

        def py(y):
            y = max(y, floor)
            return top + height * (1 - (math.log(y) - math.log(ylo)) / (math.log(yhi) - math.log(ylo)))

        out.append(f'<rect x="{x0}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#888"/>')
        out.append(f'<text x="{x0 + width / 2}" y="{top - 8}" text-anchor="middle">{escape(ptitle)}</text>')
        for t in yticks:
            out.append(f'<line x1="{x0}" x2="{x0 + width}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#eee"/>')
            if k == 0:
                out.append(f'<text x="{x0 - 4}" y="{py(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
        for t in sorted(set(xs_all)):
            out.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top}" y2="{top + height}" stroke="#eee"/>')
            out.append(f'<text x="{px(t):.1f}" y="{top + height + 14}" text-anchor="middle">{t:g}</text>')
        for j, (label, xs, ys, style) in enumerate(series):
            color = COLORS[j % len(COLORS)]
            pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys))
            out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"{dashes[style]}/>')
            for x, y in zip(xs, ys):
                out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{color}"/>')
            if k == 0:
                labels.append((label, color, style))
        out.append(f'<text x="{x0 + width / 2}" y="{top + height + 32}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append(f'<text transform="translate(14,{top + height / 2}) rotate(-90)" text-anchor="middle">{escape(ylabel)}</text>')
    lx = left
    for label, color, style in labels:
        ly = H - 10
        out.append(f'<line x1="{lx}" x2="{lx + 24}" y1="{ly - 4}" y2="{ly - 4}" stroke="{color}" stroke-width="2"{dashes[style]}/>')
        out.append(f'<text x="{lx + 28}" y="{ly}">{escape(label)}</text>')
        lx += 40 + 7 * len(label)
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


def strip(path, title, categories, ylabel, refs=(1.0,), width=560, height=300):
    """categories: list of (name, values). Draws each value as a dot and the median as a bar."""
    left, top, bottom = 60, 40, 60
    W, H = left + width + 20, top + height + bottom
    vals = [v for _, vs in categories for v in vs] + list(refs)
    lo, hi = min(vals), max(vals)
    pad = 0.1 * (hi - lo or 0.1)
    lo, hi = lo - pad, hi + pad

    def py(v):
        return top + height * (1 - (v - lo) / (hi - lo))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#888"/>']
    step = (hi - lo) / 6
    for k in range(7):
        v = lo + k * step
        out.append(f'<text x="{left - 4}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.3f}</text>')
    for r in refs:
        out.append(f'<line x1="{left}" x2="{left + width}" y1="{py(r):.1f}" y2="{py(r):.1f}" stroke="#999" stroke-dasharray="5,3"/>')
        out.append(f'<text x="{left + width - 2}" y="{py(r) - 3:.1f}" text-anchor="end" fill="#666">{r:g}</text>')
    cw = width / len(categories)
    for k, (name, values) in enumerate(categories):
        cx = left + cw * (k + 0.5)
        for j, v in enumerate(values):
            dx = (j - (len(values) - 1) / 2) * min(6, cw * 0.6 / max(len(values), 1))
            out.append(f'<circle cx="{cx + dx:.1f}" cy="{py(v):.1f}" r="3" fill="{COLORS[k % len(COLORS)]}" fill-opacity="0.6"/>')
        med = sorted(values)[len(values) // 2] if len(values) % 2 else sum(sorted(values)[len(values) // 2 - 1:len(values) // 2 + 1]) / 2
        out.append(f'<line x1="{cx - cw * 0.35:.1f}" x2="{cx + cw * 0.35:.1f}" y1="{py(med):.1f}" y2="{py(med):.1f}" stroke="black" stroke-width="2"/>')
        out.append(f'<text x="{cx:.1f}" y="{top + height + 16}" text-anchor="middle">{escape(name)}</text>')
    out.append(f'<text transform="translate(14,{top + height / 2}) rotate(-90)" text-anchor="middle">{escape(ylabel)}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))
