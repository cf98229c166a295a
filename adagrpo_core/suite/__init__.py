"""The analysis layer the notebooks and the CLI call: the methods x seeds driver (experiments),
the sensitivity points (sweeps), the reward-error phase diagram (phase), the stratified analysis
(stratified), where answers are decided (answers), the comparison tables (comparisons), the
notebooks' set-up (notebook), their computed verdicts (verdicts), figures (plots), tables
(tables), Coat's study (coat_*) and the reproduction check (regeneration). It imports the
pipeline (data, model, reward, rl, train, eval, runs); nothing in the pipeline imports it."""
