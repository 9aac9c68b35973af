"""How to search: controllers, the reward, proxy training and data, the journal, reports and the CLI.

`python -m nas.search CONFIG` runs a search (docs/search.md); `nas.evaluate.Evaluator` trains one
candidate; `nas.controllers.build` makes an ask/tell controller; `python -m nas.train GENOTYPE
--config CONFIG --out DIR` trains a chosen genotype for real (stage 2, docs/train.md).
"""
