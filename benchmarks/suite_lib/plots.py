"""AP-vs-iteration curves of a regime, one PNG per detector family."""

import statistics

from .stats import diverged


def families(results, titles):
    """(family key, title, its methods) for each family with at least one method in results."""
    for fam, title in titles.items():
        ms = [m for m in results["methods"] if m["family"] == fam]
        if ms:
            yield fam, title, ms


def n_noun(n, noun):
    """``n`` and its noun, plural unless ``n`` is 1: "1 seed", "3 seeds"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def seeds_text(methods, runs):
    """
    The seeds behind a family's curves: the runs that trained through (a diverged run's
    metrics are those of its last evaluation before the divergence, not of its schedule, so
    its points are not drawn). The title's words ("3 seeds", or "1-3 seeds" where
    the methods differ) and each method's legend suffix, only where the methods differ or it
    has diverged runs (" (1 seed; 2 diverged, not drawn)"; methods without runs get none).

    Args:
        methods (list[dict]): the family's methods (``key``).
        runs (dict): method key -> its runs (result files' contents).

    Returns:
        tuple[str, dict]: the title's words; method key -> its legend suffix.
    """
    n_ok, n_div = {}, {}
    for m in methods:
        rs = runs.get(m["key"], [])
        n_div[m["key"]] = sum(1 for r in rs if diverged(r))
        n_ok[m["key"]] = len(rs) - n_div[m["key"]]
    counts = sorted({n for n in n_ok.values() if n})
    title = (
        f"{counts[0]}-{counts[-1]} seeds"
        if len(counts) > 1
        else (n_noun(counts[0], "seed") if counts else "no runs")
    )
    legend = {}
    for k, n in n_ok.items():
        if n_div[k]:
            legend[k] = f" ({n_noun(n, 'seed')}; {n_div[k]} diverged, not drawn)"
        elif n and len(counts) > 1:
            legend[k] = f" ({n_noun(n, 'seed')})"
    return title, legend


def plot_curves(results, images_dir, titles, prefix="benchmarks_"):
    """
    One PNG per family, ``images_dir/<prefix><family>_ap.png``: mean AP vs iteration over the
    seeds of each method that trained through (band: ± 1 std), the baselines dashed. Methods
    without such runs are left out of their plot. The title gives the number of seeds behind
    the curves; where the methods of a family differ, or a method has diverged runs, its legend
    entry gives its own (``seeds_text``).

    Returns:
        dict: family key -> path of its PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fam, title, ms in families(results, titles):
        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
        title_seeds, legend_seeds = seeds_text(ms, results["runs"])
        for m in ms:
            runs = [r for r in results["runs"].get(m["key"], []) if not diverged(r)]
            if not runs:
                if m["key"] in legend_seeds:  # every run diverged: named in the legend only
                    ax.plot([], [], ":", label=m["label"] + legend_seeds[m["key"]])
                continue
            by_iter = {}
            for r in runs:
                for it, ap in r["ap_curve"]:
                    if ap is not None:
                        by_iter.setdefault(it, []).append(ap)
            its = sorted(by_iter)
            mean = [statistics.fmean(by_iter[i]) for i in its]
            std = [statistics.stdev(by_iter[i]) if len(by_iter[i]) > 1 else 0.0 for i in its]
            style = "--" if m["baseline"] is None else "-"
            label = m["label"] + legend_seeds.get(m["key"], "")
            (line,) = ax.plot(its, mean, style, marker="o", ms=3, label=label)
            ax.fill_between(
                its,
                [a - b for a, b in zip(mean, std)],
                [a + b for a, b in zip(mean, std)],
                color=line.get_color(),
                alpha=0.15,
            )
        text = f"{title}: COCO AP vs iteration ({title_seeds})"
        ax.set_title(text, **({"fontsize": 9} if len(text) > 64 else {}))
        ax.set_xlabel("iteration")
        ax.set_ylabel("bbox AP (%)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = images_dir / f"{prefix}{fam}_ap.png"
        fig.savefig(path)
        plt.close(fig)
        paths[fam] = path
    return paths
