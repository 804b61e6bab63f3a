"""What every report figure shares: one look (`setup`) and display as an embedded PNG (`show`). The ablation
report's figures are in acsa.reports.study_figures, the visualisation report's in acsa.reports.views."""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.figure import Figure


def setup() -> None:
    """One look for every report figure; PNG output so the HTML embeds images (no JavaScript)."""
    sns.set_theme(style="whitegrid", context="notebook")
    plt.rcParams.update({"figure.dpi": 96, "savefig.dpi": 96, "axes.titlesize": "medium"})


def show(fig: Figure) -> None:
    """Display a figure once in a notebook (as PNG) and free it."""
    from IPython.display import display

    display(fig)
    plt.close(fig)
