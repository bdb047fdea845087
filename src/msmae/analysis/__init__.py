"""Attention analysis (paper 4.4.2, appendix F): the encoder's intra-stream attention, automatic sign
boundaries on it, and the files that show them (heatmap, skeleton strip, segments JSON, ELAN).

``attention``: matrix extraction, head/stream averaging, symmetrising, chunked inference and stitching.
``segmentation``: checkerboard-novelty boundaries, segments, the boundary metric and two baselines.
``eaf``: an ELAN ``.eaf`` writer (SIGN tier). ``plots``: heatmaps, skeletons, the segment strip.
"""
