"""Process memory readings shared by the benchmarks (Linux /proc)."""

from __future__ import annotations


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (or another /proc/self/status field), in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM, and so its rusage maxrss) — Linux ≥ 4.0."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True
