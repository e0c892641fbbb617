#!/usr/bin/env python3
"""Where one proxy's CPU per message goes that another's does not.

    perf/profile-diff.py DIR_A DIR_B [--top N]

DIR_A and DIR_B are `perf/profile.sh --out` directories (typically A = `--proxy bare`, the
epoll floor, and B = Ringway). Each symbol's share of the samples (symbols.txt) is turned into
µs per echoed message with that run's CPU per message (per-message.txt); the output is the sum
per category for both, then the symbols whose cost differs most. Sampling (perf record -F 999)
makes figures under ~0.02 µs noise.
"""
import re
import sys
from pathlib import Path


def per_message(d: Path) -> float:
    m = re.search(r"= ([0-9.]+) us per message", (d / "per-message.txt").read_text())
    if not m:
        sys.exit(f"{d}/per-message.txt has no 'us per message' figure")
    return float(m.group(1))


def symbols(d: Path) -> dict:
    us = per_message(d)
    out = {}
    for line in (d / "symbols.txt").read_text().splitlines():
        m = re.match(r"\s*([0-9.]+)%\s+\[(.)\]\s+(.*)", line)
        if m:
            key = (m.group(2), m.group(3).strip())
            out[key] = out.get(key, 0.0) + float(m.group(1)) * us / 100
    return out


def category(space: str, name: str) -> str:
    if space == ".":
        return "user space"
    if name.startswith(("io_", "__io", "tctx_")) or "io_uring" in name or name in (
        "task_work_run",
        "get_signal",
        "ctx_flush_and_put",
    ):
        return "kernel: io_uring"
    if "spin_unlock" in name:
        return "kernel: irq-off sections (wake-ups)"
    if "epoll" in name or name.startswith("ep_"):
        return "kernel: epoll"
    return "kernel: other (TCP/IP, syscalls)"


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    top = 25
    if "--top" in sys.argv:
        top = int(sys.argv[sys.argv.index("--top") + 1])
        args = [a for a in args if a != str(top)]
    if len(args) != 2:
        sys.exit(__doc__)
    a, b = Path(args[0]), Path(args[1])
    sa, sb = symbols(a), symbols(b)
    print(f"A = {a}: {per_message(a):.2f} us/msg    B = {b}: {per_message(b):.2f} us/msg\n")
    cats = {}
    for side, syms in ((0, sa), (1, sb)):
        for (space, name), v in syms.items():
            cats.setdefault(category(space, name), [0.0, 0.0])[side] += v
    print(f"{'category':40} {'A':>7} {'B':>7} {'B-A':>7}   (us per message)")
    for c, (va, vb) in sorted(cats.items()):
        print(f"{c:40} {va:7.2f} {vb:7.2f} {vb - va:+7.2f}")
    diff = sorted(
        ((sb.get(k, 0.0) - sa.get(k, 0.0), k) for k in set(sa) | set(sb)),
        key=lambda x: -abs(x[0]),
    )
    print(f"\nsymbols with the largest difference (B - A, us per message):")
    for d, (space, name) in diff[:top]:
        print(f"{d:+7.3f}  [{space}] {name[:100]}")


if __name__ == "__main__":
    main()
