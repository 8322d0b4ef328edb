"""Online models: the River model factory, scoring, the learner and the registry."""
