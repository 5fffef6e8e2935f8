"""kvstore benchmarks.

Two tools share this package:

- the asv suite (one module per area: engine, batch, codec, memory, expiry,
  server), which tracks kvstore's own hot paths commit by commit;
- ``python -m benchmarks.compare``, which measures kvstore beside dict,
  cachetools, Redis and memcached in one interleaved run and writes a table
  and charts under ``benchmarks/results/``.

asv imports every module here to discover benchmarks, so no module does any
work at import time: data is made in ``setup`` and servers are started there.
See docs/benchmarks.md for how to run both.
"""
