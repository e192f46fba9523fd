"""The checks' Markdown tables and figure."""

import numpy as np
from explainers import METHODS


def markdown(result, command):
    """The two tables, the settings and the command."""
    from keras_ptame.utils.tables import markdown_table

    methods, settings = result["methods"], result["settings"]
    layers = result["classifier_layers_top_first"]
    header = ["step", "last layer randomised"]
    for method in METHODS:
        header += [f"{method} ρ", f"{method} SSIM"]
    rows = []
    for step in range(len(layers) + 1):
        cells = [str(step), "none (trained)" if step == 0 else f"`{layers[step - 1]}`"]
        for method in METHODS:
            cells += [
                f"{methods[method]['cascade_mean_rank_correlation'][step]:.3f}",
                f"{methods[method]['cascade_mean_ssim'][step]:.3f}",
            ]
        ptame = methods["P-TAME"]
        rows.append(
            cells
            + [cell(ptame["cascade_mean_rank_correlation_not_flat"][step])]
            + [
                f"{ptame[f'cascade_{flag}_share'][step]:.2f}"
                for flag in ("flat", "misranked")
            ]
        )
    data_rows = [
        [
            method,
            f"{methods[method]['data_mean_rank_correlation']:.3f}",
            f"{methods[method]['data_mean_ssim']:.3f}",
        ]
        for method in METHODS
    ]
    data_rows[0][0] += (
        f" ({methods['P-TAME']['data_flat_share']:.2f} flat, "
        f"{methods['P-TAME']['data_misranked_share']:.2f} misranked; ρ "
        f"{cell(methods['P-TAME']['data_mean_rank_correlation_not_flat'])} "
        "over the maps not flat)"
    )
    notes = [
        f"{settings['test_count']} held-out {settings['image_size']}x"
        f"{settings['image_size']} images, Keras backend `{result['backend']}`; "
        "every map explains the trained classifier's prediction (held-out "
        f"accuracy {result['classifier_held_out_accuracy']:.3f}).",
        f"P-TAME: a new explainer per step, {settings['explainer_epochs']} epochs "
        f"on {settings['explainer_count']} images (step 0's pointing game "
        f"{result['ptame_step0_pointing_game']:.3f}); Grad-CAM at "
        f"`{result['grad_cam_layer']}`; RISE with {settings['rise_masks']} masks.",
        f"Random labels: {settings['shuffled_count']} training images, labels "
        f"permuted, {settings['shuffled_epochs']} epochs: training accuracy "
        f"{result['random_label_train_accuracy']:.3f} (held-out "
        f"{result['random_label_held_out_accuracy']:.3f}).",
        f"Wall time {result['timings_s']['total']:.0f} s: `{command}`.",
    ]
    legend = {
        "P-TAME ρ not flat": "mean ρ over the images whose P-TAME maps are flat "
        "neither at step 0 nor at that step (flat maps are zeros, whose ρ is 0)",
        "P-TAME flat": "share of P-TAME's maps flagged flat (returned as zeros)",
        "P-TAME misranked": "share of P-TAME's maps flagged misranked (their "
        "class failed the removal check that `fit` runs; maps returned as they "
        "are)",
    }
    return "\n".join(
        [
            "# Sanity checks (Adebayo et al. 2018)",
            "",
            "Cascading model randomisation: mean Spearman ρ and SSIM with the "
            "trained classifier's maps.",
            "",
            markdown_table(
                header + ["P-TAME ρ not flat", "P-TAME flat", "P-TAME misranked"],
                rows,
                text_columns=2,
                legend=legend,
            ),
            "Data randomisation: the classifier trained on permuted labels.",
            "",
            markdown_table(["method", "ρ", "SSIM"], data_rows, notes=notes),
        ]
    )


def cell(value):
    return "-" if value is None else f"{value:.3f}"


def figure(result, shown, path):
    """Top: the cascade's curves (left) and data randomisation's bars
    (right); bottom: the first held-out image's maps at every step and for
    the random-label classifier."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    layers = result["classifier_layers_top_first"]
    # Shorter names on the axes: "batch_normalization_2" as "bn_2".
    ticks = ["none"] + [
        "+" + name.replace("batch_normalization", "bn") for name in layers
    ]
    fig = pyplot.figure(figsize=(14, 9.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.15, 1], hspace=0.05)
    axes = top.subplots(1, 3, gridspec_kw={"width_ratios": [2, 2, 1.2]})
    _curves(axes, result["methods"], ticks)
    columns = len(ticks) + 2
    grid = bottom.subplots(len(METHODS), columns)
    for row, method in zip(grid, METHODS, strict=True):
        pictures = [shown["images"][0]] + [maps[0] for maps in shown["maps"][method]]
        titles = ["image"] + ["trained"] + ticks[1:] + ["random labels"]
        for axis, picture, title in zip(row, pictures, titles, strict=True):
            if picture.ndim == 3:  # the image
                axis.imshow(picture)
            else:
                axis.imshow(picture, cmap="jet", vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if method == METHODS[0]:
                axis.set_title(title, fontsize=8)
        row[0].set_ylabel(method)
    bottom.suptitle(
        "The first held-out image's maps: cascade steps (layers randomised, "
        "cumulative), then the random-label classifier's",
        fontsize=10,
    )
    fig.savefig(path, dpi=80)
    pyplot.close(fig)


def _curves(axes, methods, ticks):
    colours = dict(zip(METHODS, ("tab:red", "tab:blue", "tab:green"), strict=True))
    for axis, key, title in (
        (axes[0], "rank_correlation", "Spearman ρ"),
        (axes[1], "ssim", "SSIM"),
    ):
        for method in METHODS:
            axis.plot(
                methods[method][f"cascade_mean_{key}"],
                marker="o",
                color=colours[method],
                label=method,
            )
        axis.set_xticks(range(len(ticks)), ticks, rotation=60, ha="right")
        lowest = min(min(methods[m][f"cascade_mean_{key}"]) for m in METHODS)
        axis.set_ylim(min(-0.2, lowest - 0.05), 1.05)
        axis.axhline(0, color="grey", linewidth=0.5)
        axis.set_title(f"Cascading randomisation: {title}")
        axis.set_xlabel("layers randomised (top first, cumulative)")
        axis.set_ylabel(f"mean {title} with step 0")
    axes[0].legend()
    positions = np.arange(len(METHODS))
    keys = ("rank_correlation", "ssim")
    for offset, key, hatch in zip((-0.2, 0.2), keys, ("", "//"), strict=True):
        axes[2].bar(
            positions + offset,
            [methods[method][f"data_mean_{key}"] for method in METHODS],
            width=0.4,
            color=[colours[method] for method in METHODS],
            hatch=hatch,
            edgecolor="black",
        )
    axes[2].bar(0, 0, color="white", edgecolor="black", label="Spearman ρ")
    axes[2].bar(0, 0, color="white", edgecolor="black", hatch="//", label="SSIM")
    axes[2].set_xticks(positions, METHODS)
    lowest = min(methods[m][f"data_mean_{k}"] for m in METHODS for k in keys)
    axes[2].set_ylim(min(-0.2, lowest - 0.05), 1.05)
    axes[2].axhline(0, color="grey", linewidth=0.5)
    axes[2].set_title("Data randomisation")
    axes[2].set_ylabel("mean with the true-label maps")
    axes[2].legend()
