"""``progress_bar``: the one progress bar every command uses (tqdm on stderr).

``progress`` means the same everywhere: True shows the bar, False hides it, None (what the CLI
passes unless ``--quiet``) decides from the terminal: a bar when stderr is a terminal, nothing
when it is piped or redirected. ``tick`` redraws the bar every ``tick`` seconds while no step
ends, so a slow first step (a model warming up, data-loader workers starting) shows its time
passing instead of a frozen 0%.
"""

from __future__ import annotations

import threading
import time


def progress_bar(
    iterable=None,
    *,
    progress: bool | None,
    desc: str,
    unit: str = "it",
    total: int | None = None,
    tick: float = 0.0,
    **options,
):
    """A tqdm bar (use it as an iterable or with ``update``; ``close`` or ``with`` ends it)."""
    from tqdm import tqdm

    bar = tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=None if progress is None else not progress,
        dynamic_ncols=True,
        **options,
    )
    if tick > 0 and not bar.disable:
        threading.Thread(target=_redraw, args=(bar, tick), daemon=True).start()
    return bar


def _redraw(bar, every: float) -> None:
    while not bar.disable:  # tqdm sets disable when the bar is closed
        time.sleep(every)
        bar.refresh()  # a no-op once closed
