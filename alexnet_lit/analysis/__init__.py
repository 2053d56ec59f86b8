"""Runs read back into the paper's comparisons (docs/paper.md): the runs, their statistics,
the ablation table beside the paper's, its Markdown and chart, and Figure 1."""
