"""xpnet's benchmark suites, run from a checkout: ``python -m benchmarks SUITE [options]``.

Suites (one module each): ``breakdown`` (time per layer and layer type, the book's Figure 8.14),
``train`` (training throughput, optionally against PyTorch), ``conv`` (conv layers against the GEMM
peak). ``python -m benchmarks --help`` lists the options; results/README.md explains the files.
"""
