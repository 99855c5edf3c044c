"""Private implementation of :mod:`forge.testing.emulator`.

Layout: ``http`` (HTTP/1.1 on asyncio streams), ``script`` (faults, replies,
rules, the request log), ``limits`` (token buckets), ``text`` (reply text and
token accounting), ``base`` (the per-vendor dialect interface), ``engine``
(JSON and streamed replies) and one module per vendor.
"""
