"""The benchmark scripts (see bench/README.md), run as ``python bench/<script>.py`` or ``python -m bench.<script>``.

Their shared code is imported from this package, one way everywhere: ``from bench._util import ...``
(timing, memory, tables) and ``from bench.model_configs import load_adapter`` (the one model loader); a
script puts the repository root on ``sys.path`` for that.  A grounder on a model directory comes from
:func:`stvg_ros.stack.load_model`, a running service from :meth:`stvg_ros.stack.Stack.build`.
"""
