"""The benchmark gate (`splitdb bench`, `tox -e bench`): the base revision's code and the head's,
measured in turns on one machine, then compared.

`sources` builds the two trees (the base exported from git, the head copied from the working
tree), `rounds` runs their micro-benchmarks and the benchmark scenario interleaved, and
`harness.results.gate` judges the pooled sides with `splitdb compare`'s rule.
"""
