"""The built-in end-to-end job behind ``raddino demo`` / ``make demo``: no downloads, no user data.

- ``plan``: the demo's sizes (:func:`full_plan`, :func:`quick_plan`) and its pre-training recipe
  ``DEMO_CPU`` (``configs/demo_cpu.yaml`` in code);
- ``run``: the steps, resumable (:func:`run_demo`);
- ``page``: the figures and the page (``report.html`` / ``report.md``).

>>> from raddino.demo import quick_plan, run_demo
>>> result = run_demo("demo_quick", quick_plan())   # doctest: +SKIP
>>> result.page                                      # doctest: +SKIP
PosixPath('demo_quick/report.html')
"""

from raddino.demo.plan import DEMO_CPU, DemoPlan, full_plan, quick_plan
from raddino.demo.run import DemoResult, run_demo

__all__ = ["DEMO_CPU", "DemoPlan", "DemoResult", "full_plan", "quick_plan", "run_demo"]
