"""Side-by-side speed measurements: a reference process against a plain anchor, in one run.

Each module measures one process against the simplest program that does the same work, in turns
on this machine, and writes `reports/speed/<time>/<name>.json` with a Markdown summary: `bot`
(the tick bot at its ceiling against a raw `executemany` loop into the same schema).
"""
