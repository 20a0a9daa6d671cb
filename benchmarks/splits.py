"""The two halves of the official MNIST test set, so that what chooses or judges never reports.

- ``SELECTION`` (test digits 0–4,999): chooses the default LRP preset
  (``benchmarks.faithfulness``) and is the independent judge's memory in
  ``benchmarks.counterfactual`` (a 5-NN over these digits and their labels);
- ``REPORT`` (test digits 5,000–9,999): the digits the faithfulness figures
  are reported on, and the digits counterfactuals are asked for.

The models never saw either half (they train on the 5,000 embedded digits).
"""

SELECTION = slice(0, 5000)
REPORT = slice(5000, 10000)
