"""``python -m monitored_ioloop.bench``: what the loop and its monitoring cost, side by side with
asyncio and uvloop, measured in one run (fresh process per measurement, interleaved rounds,
medians and per-round ratios to uvloop)."""
