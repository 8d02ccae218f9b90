"""Tuning on Optuna: a study over a model's recipe fields and hyperparameters, judged on validation
accuracy, its best trial alone measured on test and written as a recipe file. ``request`` resolves
``zoo tune`` once; ``run`` is one worker's trials; ``report`` what a finished study leaves."""
