"""The cyclic garbage collector's settings for a long-running scoring process.

Called once where the worker starts (and by ``fraudstream bench features``,
which measures the worker's scoring path), after start-up, never at import.

- **Young collections less often.** CPython runs a young collection each
  time 700 more container objects (tuples, lists, dicts, dataclass
  instances) have been allocated than freed. Scoring a batch holds a few
  thousand of them at once for a moment (each part's decoded card columns,
  the vectors and records being saved, the replies) and reference counting
  frees nearly all of them as the batch goes on; at 700, young collections
  kept traversing objects about to be freed anyway, about 2.3 us per
  transaction. With :data:`YOUNG_THRESHOLD` the net growth rarely reaches
  it during a batch, and whatever cyclic garbage there is (asyncio futures,
  exceptions with their tracebacks) is still collected: it counts towards
  the threshold, which bounds it to that many objects between collections.
- **Start-up state frozen.** :func:`gc.freeze` moves every object alive at
  that point (modules, settings, clients, the pipeline) into a permanent
  generation that no collection traverses, so the rare full collections
  of a long-running worker cost what it allocated since, not what it
  imported. Those objects live as long as the process anyway; should one
  of them become cyclic garbage it would not be freed, so this is called
  once, before any model snapshot or batch is handled.

Examples
--------
>>> import gc
>>> saved = gc.get_threshold()
>>> tune_for_streaming()
>>> gc.get_threshold()[0] == YOUNG_THRESHOLD
True
>>> gc.unfreeze(); gc.set_threshold(*saved)
"""

from __future__ import annotations

import gc

#: Net container allocations between young collections (CPython's default is 700).
YOUNG_THRESHOLD = 10_000


def tune_for_streaming(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Freeze what start-up built and make young collections rarer (see the module docs)."""
    gc.collect()  # what start-up left as garbage goes now, not into the permanent generation
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)
