"""One module per stage, each with `run(cfg)`: augment, train, eval, eval_arc, all."""
