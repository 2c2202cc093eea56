"""``trainkit tune``: search a whole training recipe on an embedded data set."""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import time

HELP = "search a training recipe with KerasTuner (pruning, resume, parallel trials)"
OPTUNA_SAMPLERS = ("tpe", "random", "cmaes", "gp", "nsga2", "qmc")  # optuna_samplers.SAMPLERS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="mnist1d", choices=["mnist1d", "digits"])
    parser.add_argument("--model", default="cnn", choices=["mlp", "cnn"])
    parser.add_argument("--trials", type=int, default=None,
                        help="maximum number of trials (default 30; hyperband: its own "
                             "brackets decide, and --trials caps them)")
    parser.add_argument("--tuner", default=None,
                        choices=["random", "bayesian", "hyperband", "optuna"],
                        help="random search (default), Bayesian optimization, Hyperband, or an "
                             "Optuna study (the default when --sampler, --storage or "
                             "--objectives is given); every other flag works with each (grid "
                             "search is left out: the learning rates are continuous)")
    parser.add_argument("--sampler", default=None, choices=list(OPTUNA_SAMPLERS),
                        help="Optuna sampler (default tpe; implies --tuner optuna)")
    parser.add_argument("--storage", default=None,
                        help="Optuna storage: a database URL (sqlite:///..., "
                             "postgresql+psycopg2://...), 'journal' or 'journal:<file>' "
                             "(default: OUTPUT/search/optuna.db). "
                             "Start the same command on several hosts with one storage and a "
                             "shared --output to run one search together. Implies --tuner optuna")
    parser.add_argument("--objectives", default=None,
                        help="several objectives, NAME:max|min separated by commas, e.g. "
                             "val_accuracy:max,num_params:min (num_params: the model's "
                             "parameter count): the search returns their Pareto front "
                             "(OUTPUT/pareto_front.png). Implies --tuner optuna")
    parser.add_argument("--pruner", default=None, choices=["median", "asha", "none"],
                        help="pruning rule (default: median; hyperband stops trials by its "
                             "own brackets and refuses median and asha)")
    parser.add_argument("--space", default="focused", choices=["focused", "full"],
                        help="focused (default): around the `trainkit demo` recipe, which is "
                             "the first trial's; full: the library's default spaces")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of a full trial (hyperband: its max_epochs; "
                             "default: the demo recipe's)")
    parser.add_argument("--parallel", type=int, default=1, help="worker processes on this host")
    parser.add_argument("--isolate", action="store_true", help="run each trial in a fresh process")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="no new trial starts after this many minutes")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the search, of every trial and of the data split "
                             "(default 1)")
    parser.add_argument("--refit", action="store_true",
                        help="after the search, train the best recipe again on the training "
                             "and validation examples together and save it as "
                             "OUTPUT/best_model.keras")
    parser.add_argument("--ensemble", type=int, default=None,
                        help="average the class probabilities of the N best trials' models "
                             "(ranked on validation) into the search's final model, saved as "
                             "OUTPUT/ensemble_model.keras (default 5; 1: the best trial alone; "
                             "with several --objectives default 1, and the N best are the "
                             "first N of the Pareto ranking)")
    parser.add_argument("--output", default="trainkit_output/tune",
                        help="folder for the search state and the report, created with any "
                             "missing parents")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh instead of resuming a search in --output (a "
                             "search started with another --dataset, --model, --space, "
                             "--epochs, --seed, --tuner or --objectives is refused without it)")


def recipe(args: argparse.Namespace, input_shape, num_classes):
    """The search space: the library's default spaces (``--space full``) or the
    ``focused`` space, whose defaults are the demo's recipe and whose ranges stay
    near it (Adam-family learning rates within 4x of the demo's, schedules with a
    decay, shift augmentation for 1-D signals)."""
    from keras_trainkit import tuning
    from keras_trainkit.commands.demo import CLIP_NORM, RECIPES, WARMUP_FRACTION

    demo = RECIPES[args.dataset][args.model]
    epochs = args.epochs or demo["epochs"]
    if args.space == "full":
        return tuning.RecipeHyperModel(input_shape, num_classes, architecture=args.model,
                                       seed=args.seed, training=tuning.TrainingSpace(epochs=epochs))
    lr = demo["learning_rate"]
    layers = demo["model"]
    if args.model == "cnn":
        architecture = tuning.CNNSpace(
            filters=(32, 64), defaults={"blocks": len(layers["filters"]),
                                        "filters": layers["filters"][0],
                                        "kernel_size": layers["kernel_size"],
                                        "dense_units": layers["dense_units"]})
    else:
        architecture = tuning.MLPSpace(widths=(128, 256, 512),
                                       defaults={"depth": layers["depth"], "width": layers["width"]})
    signals = len(input_shape) == 1
    return tuning.RecipeHyperModel(
        input_shape, num_classes, architecture=architecture, seed=args.seed,
        optimizer=tuning.OptimizerSpace(
            families=("adamw", "adam"), ranges={"learning_rate": (lr / 4, lr * 4)},
            defaults={"learning_rate": lr, "weight_decay": demo["weight_decay"]}),
        schedule=tuning.ScheduleSpace(
            families=("warmup_cosine", "cosine", "one_cycle", "warmup_stable_decay"),
            defaults={"warmup_cosine_warmup_fraction": WARMUP_FRACTION}),
        training=tuning.TrainingSpace(
            batch_sizes=(64, 128, 256), epochs=epochs, label_smoothing=(0.0, 0.1),
            shift=(0, 6) if signals else None,
            defaults={"batch_size": demo["batch_size"], "clipping": "global_norm",
                      "clip_norm": CLIP_NORM, **({"shift": demo["shift"]} if signals else {})}),
        regularization=tuning.RegularizationSpace(
            dropout=(0.0, 0.3), l2=False, defaults={"dropout": layers.get("dropout", 0.0)}),
        initializer=tuning.InitializerSpace(
            defaults={"initializer": "he_normal" if args.model == "cnn" else "glorot_uniform"}),
    )


def _print_progress(tuner, trial, started=None, total=None):
    """One line per finished trial; works in-process and in parallel workers
    (whose oracle is a KerasTuner ``OracleClient``). It counts trials from 1 ("trial 1
    of 30") and ends with the ``trial_id`` (from 0) that the summary table, the plots,
    the Pareto front and the ``trial_<id>`` folders name the trial by."""
    from keras_trainkit.tuning.report import several_objectives

    oracle = tuner.oracle
    ended = oracle.get_trial(trial.trial_id)
    best = oracle.get_best_trials(1)
    best_score = best[0].score if best and best[0].score is not None else float("nan")
    message = ended.message or ""
    status = "pruned" if message.startswith("pruned") else ended.status.lower()
    name = getattr(oracle.objective, "name", "val_accuracy")  # the one objective
    score = f"{name}={ended.score:.4f}" if ended.score is not None else f"{name}=-"
    objectives = several_objectives(oracle)
    if objectives and ended.status == "COMPLETED":  # several objectives: each, no "best"
        values = zip(objectives, oracle.objective_values(ended))
        print(f"trial {int(trial.trial_id) + 1}{f' of {total}' if total else ''}: {status:<9} "
              + "  ".join(f"{o.name}={v:.4g}" for o, v in values)
              + f"  elapsed={(time.time() - started) / 60:.1f} min  trial_id={trial.trial_id}", flush=True)
        return
    pruned = getattr(oracle, "pruned_trials", None)
    pruned_text = f"  pruned so far={len(pruned)}" if pruned is not None else ""
    worker = f" [{tuner.tuner_id}]" if tuner.tuner_id != "tuner0" else ""
    of_total = f" of {total}" if total else ""
    print(f"trial {int(trial.trial_id) + 1}{of_total}{worker}: {status:<9} "
          f"{score}  best so far={best_score:.4f}{pruned_text}  "
          f"elapsed={(time.time() - started) / 60:.1f} min  trial_id={trial.trial_id}", flush=True)


DEFAULT_TRIALS = 30


def parse_objectives(text: str | None) -> list[tuple[str, str]] | None:
    """``"val_accuracy:max,num_params:min"`` as ``[(name, direction), ...]``."""
    if text is None:
        return None
    objectives = []
    for part in text.split(","):
        name, _, direction = part.strip().partition(":")
        if not name or direction not in ("max", "min"):
            raise ValueError("Argument `--objectives` must be NAME:max or NAME:min items "
                             f"separated by commas. Received: objectives={text!r}")
        objectives.append((name, direction))
    return objectives


def check_tuner_flags(args: argparse.Namespace) -> None:
    """Choose the tuner (Optuna when an Optuna flag is given) and refuse flags that it
    cannot honour (none is ever ignored)."""
    optuna_flags = [f"--{name}" for name in ("sampler", "storage", "objectives")
                    if getattr(args, name, None) is not None]
    if args.tuner is None:
        args.tuner = "optuna" if optuna_flags else "random"
    if optuna_flags and args.tuner != "optuna":
        raise ValueError(f"Argument `--tuner` must be optuna with {', '.join(optuna_flags)}. "
                         f"Received: tuner={args.tuner!r}")
    objectives = parse_objectives(getattr(args, "objectives", None))
    if objectives and len(objectives) > 1 and args.pruner not in (None, "none"):
        raise ValueError("Argument `--pruner` cannot be used with several --objectives: Optuna "
                         f"prunes single-objective studies only. Received: pruner={args.pruner!r}")
    if args.tuner == "optuna" and getattr(args, "parallel", 1) > 1:
        raise ValueError("Argument `--parallel` must be 1 with --tuner optuna: start the same "
                         "command several times (on any hosts) with one --storage and "
                         f"--output instead. Received: parallel={args.parallel}")
    if args.tuner == "hyperband" and args.pruner not in (None, "none"):
        raise ValueError("Argument `--pruner` cannot be used with --tuner hyperband, which "
                         "stops trials by its own brackets; leave --pruner out or use "
                         f"--tuner random or bayesian. Received: pruner={args.pruner!r}")


def make_tuner(args: argparse.Namespace, input_shape, num_classes, started=None):
    """Build (or reload) the tuner the arguments describe. Every tuner gets the
    same features: resume, --isolate, --budget-minutes, the first trial at the
    focused space's defaults, the progress lines and the seed."""
    from keras_trainkit import tuning

    check_tuner_flags(args)
    hypermodel = recipe(args, input_shape, num_classes)
    epochs = hypermodel.training_space.epochs[1]  # --epochs, or the demo recipe's
    trials = args.trials if args.trials is not None else (
        None if args.tuner == "hyperband" else DEFAULT_TRIALS)
    common = dict(directory=os.path.dirname(os.path.abspath(args.project_dir)),
                  project_name=os.path.basename(args.project_dir), overwrite=False,
                  objective="val_accuracy", seed=args.seed, max_trials=trials,
                  max_consecutive_failed_trials=max(3, (trials or DEFAULT_TRIALS) // 3),
                  start_from_defaults=args.space == "focused", isolate_trials=args.isolate,
                  time_budget=args.budget_minutes * 60 if args.budget_minutes else None,
                  progress=functools.partial(_print_progress, started=started or time.time(),
                                             total=trials))
    if args.tuner == "hyperband":
        return tuning.Hyperband(hypermodel, max_epochs=epochs, factor=3, **common)
    if args.tuner == "optuna":
        return _optuna_tuner(args, hypermodel, common)
    pruner = args.pruner or "median"
    tuner_class = tuning.RandomSearch if args.tuner == "random" else tuning.BayesianOptimization
    return tuner_class(hypermodel, pruner=None if pruner == "none" else pruner, **common)


def _optuna_tuner(args, hypermodel, common):
    import keras_tuner

    from keras_trainkit import tuning

    objectives = parse_objectives(args.objectives)
    if objectives:
        common["objective"] = [keras_tuner.Objective(name, direction)
                               for name, direction in objectives]
        if len(objectives) == 1:
            common["objective"] = common["objective"][0]
    several = objectives is not None and len(objectives) > 1
    pruner = args.pruner or ("none" if several else "median")
    return tuning.OptunaSearch(hypermodel, sampler=args.sampler or "tpe", storage=args.storage,
                               pruner=None if pruner == "none" else pruner, **common)


def refit(tuner, train, validation):
    """Train the best trial's recipe from scratch on the training and validation
    examples together, for the recipe's full epochs and schedule (the usual last
    step of a search, once the validation split has done its job of choosing).
    Returns the model and the number of examples."""
    import numpy as np

    hp = tuner.get_best_hyperparameters(1)[0]
    x = np.concatenate([train[0], validation[0]])
    y = np.concatenate([train[1], validation[1]])
    model = tuner.hypermodel.build(hp)
    tuner.hypermodel.fit(hp, model, x, y)
    return model, len(x)


def check(args: argparse.Namespace) -> None:
    """The argument checks, a search in --output started with other settings, and the
    output folder (created, if missing, once the storage is checked too), before any work."""
    from keras_trainkit.commands._paths import output_folder
    from keras_trainkit.commands._tune_state import check_objective_names, check_same_search

    check_objective_names(args.objectives)
    for name in ("trials", "epochs", "parallel", "ensemble"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"Argument `--{name}` must be >= 1. Received: {name}={getattr(args, name)}")
    if not 0 <= args.seed < 2**32:
        raise ValueError(f"Argument `--seed` must be in [0, 2**32). Received: seed={args.seed}")
    if args.budget_minutes is not None and not 0 < args.budget_minutes < math.inf:
        raise ValueError(f"Argument `--budget-minutes` must be a finite number > 0. Received: budget_minutes={args.budget_minutes}")
    check_tuner_flags(args)
    check_same_search(args)
    args.output = str(output_folder(args.output, "--output", "tune", create=False))  # "~" expanded
    _check_no_foreign_report(args)


def _check_no_foreign_report(args: argparse.Namespace) -> None:
    """Refuse an ``--output`` that holds files of the report's names but no search to resume
    (another command's, the user's own): the report would write over them."""
    import glob

    if args.overwrite or os.path.isdir(os.path.join(args.output, "search")):
        return
    found = sorted(os.path.basename(path) for pattern in SEARCH_OUTPUTS
                   for path in glob.glob(os.path.join(glob.escape(args.output), pattern)))
    if found:
        raise ValueError(f"Argument `--output` must name a folder without files the search's report "
                         f"writes, or one with a search to resume, or add --overwrite to write over "
                         f"them: it holds {', '.join(found)} and no search/ folder. "
                         f"Received: output={args.output!r}")


def _print_front_models(tuner, test_accuracy, examples: int) -> None:
    """With several objectives there is no one best trial: each Pareto front
    trial's objectives and its model's test accuracy."""
    print(f"\nThe Pareto front's models (trained on {examples} examples):")
    names = [o.name for o in tuner.oracle.objective.objectives]
    for trial in tuner.pareto_front():
        values = "  ".join(f"{n}={v:.4g}" for n, v in zip(names, tuner.oracle.objective_values(trial)))
        accuracy = test_accuracy(tuner.load_model(trial))
        print(f"  trial {trial.trial_id}: {values}  test accuracy {accuracy:.4f}", flush=True)


def _print_optuna_notes(tuner) -> None:
    from keras_trainkit.tuning.report import several_objectives

    if several_objectives(tuner.oracle):
        front = ", ".join(trial.trial_id for trial in tuner.pareto_front())
        print(f"Pareto front: trials {front} (pareto_front.png, pareto_front.json)")
    if tuner.storage_url:
        print(f"Optuna study {tuner.study.study_name!r}: optuna-dashboard {tuner.storage_url}")


#: What a search writes in ``--output`` beside ``search/``: its report (``hparams/`` its
#: TensorBoard HParams logs) and final models.
SEARCH_OUTPUTS = ("summary.txt", "best_hyperparameters.json", "score_by_trial.png", "score_vs_*.png",
                  "learning_curves.png", "pareto_front.json", "pareto_front.png", "ensemble_model.keras",
                  "best_model.keras", "hparams")


def _prepare_output(args: argparse.Namespace) -> None:
    """Check an Optuna ``--storage`` against the search in ``--output`` (it needs
    Optuna and so TensorFlow, which ``check`` must not import), then create
    ``--output`` if missing, (with ``--overwrite``) remove the old search, its report
    and its models, and record the new one's settings."""
    import glob
    import shutil

    from keras_trainkit.commands._paths import output_folder
    from keras_trainkit.commands._tune_state import check_storage_study, write_settings

    args.project_dir = os.path.join(args.output, "search")
    check_storage_study(args, args.project_dir)  # before --overwrite removes anything
    output_folder(args.output, "--output", "tune")
    # The report's files are the old search's only where one ran (its `search` folder is
    # there); in a folder that held none, files of the same names are the user's own.
    if args.overwrite and os.path.isdir(args.project_dir):
        shutil.rmtree(args.project_dir)
        for pattern in SEARCH_OUTPUTS:  # a new search need not write them all again
            for path in glob.glob(os.path.join(glob.escape(args.output), pattern)):
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
    write_settings(args)


def _print_start(args: argparse.Namespace) -> None:
    """The line that says which search starts (or resumes) and where its state is."""
    trials = f"{args.trials} " if args.trials else ("" if args.tuner == "hyperband" else
                                                    f"{DEFAULT_TRIALS} ")
    pruner = "brackets" if args.tuner == "hyperband" else (args.pruner or "median")
    if args.tuner == "optuna" and args.objectives and "," in args.objectives:
        pruner = args.pruner or "none"
    print(f"Searching {trials}{args.model} recipes ({args.space} space) on {args.dataset} "
          f"with the {args.tuner} tuner (pruner: {pruner}, parallel: {args.parallel}"
          f"{', isolated trials' if args.isolate else ''}"
          f"{f', budget {args.budget_minutes:g} min' if args.budget_minutes else ''}); "
          f"state in {args.project_dir}", flush=True)


def _final_models(args, tuner, train, validation, test_accuracy, started) -> None:
    """The best (or Pareto-front) models' test accuracy, the ensemble and the refit."""
    import keras

    from keras_trainkit.tuning.ensemble import ensemble_best_models
    from keras_trainkit.tuning.report import several_objectives

    several = bool(several_objectives(tuner.oracle))
    if several:
        _print_front_models(tuner, test_accuracy, len(train[0]))
    else:
        print(f"\nBest trial's model (trained on {len(train[0])} examples): test accuracy "
              f"{test_accuracy(tuner.get_best_models(1)[0]):.4f} "
              f"(search took {(time.time() - started) / 60:.1f} min)", flush=True)
    ensemble_size = args.ensemble if args.ensemble is not None else (1 if several else 5)
    written = set()
    if ensemble_size > 1:
        ensemble = ensemble_best_models(tuner, ensemble_size)
        members = [layer.name.removeprefix("trial_") for layer in ensemble.layers
                   if isinstance(layer, keras.Model)]
        if len(members) < 2:  # an "ensemble" of one is the best trial's model again
            print(f"No ensemble: only trial {members[0]}'s model could join it (the model above)",
                  flush=True)
        else:
            path = os.path.join(args.output, "ensemble_model.keras")
            ensemble.save(path)
            written.add(path)
            print(f"Ensemble of the {len(members)} best trials' models (trials {', '.join(members)}): "
                  f"test accuracy {test_accuracy(ensemble):.4f} (saved to {path})", flush=True)
    if args.refit:
        model, examples = refit(tuner, train, validation)
        path = os.path.join(args.output, "best_model.keras")
        model.save(path)
        written.add(path)
        print(f"Best recipe refit on training + validation ({examples} examples): test accuracy "
              f"{test_accuracy(model):.4f} (saved to {path}; "
              f"{(time.time() - started) / 60:.1f} min in all)")
    _remove_stale_models(args.output, written)


def _remove_stale_models(output: str, written: set) -> None:
    """Remove the final models an earlier run of this search saved and this run did not
    (``--ensemble 1``, no ``--refit``, an ensemble of one): they are not the search's now."""
    for name in ("ensemble_model.keras", "best_model.keras"):
        path = os.path.join(output, name)
        if path not in written and os.path.isfile(path):
            os.remove(path)
            print(f"Removed {path}: an earlier run's model of this search, which this run did not "
                  "make again", flush=True)


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the search, write the report, test the final models.

    Returns 0, or 1 when no trial finished with a score (no model to test).
    """
    import numpy as np

    from keras_trainkit.commands.demo import split
    from keras_trainkit.tuning.parallel import parallel_search
    from keras_trainkit.tuning.report import write_report

    _prepare_output(args)
    if args.tuner == "optuna":  # its INFO lines ("A new study created ...") only at --log-level INFO
        import optuna

        optuna.logging.set_verbosity(getattr(optuna.logging, args.log_level))
    train, validation, (x_test, y_test) = split(args.dataset, args.seed)
    input_shape, num_classes = train[0].shape[1:], int(np.max(train[1]) + 1)
    started = time.time()
    _print_start(args)
    factory = functools.partial(make_tuner, args, input_shape, num_classes, started)
    if args.parallel > 1:
        tuner = parallel_search(factory, *train, validation_data=validation,
                                parallel_trials=args.parallel)
    else:
        tuner = factory()
        tuner.search(*train, validation_data=validation, verbose=0)
    report = write_report(tuner, args.output)
    print()
    print(report["summary"])
    if not tuner.oracle.get_best_trials(1):
        print(f"trainkit tune: error: no trial of the search has finished with a score, so there "
              f"is no model to test (the report in {os.path.abspath(args.output)} lists the "
              "trials); run the command again to resume the search, with a larger "
              "--budget-minutes or --trials", file=sys.stderr)
        return 1

    def test_accuracy(model):
        return float(np.mean(np.argmax(model.predict(x_test, verbose=0), axis=1) == y_test))

    _final_models(args, tuner, train, validation, test_accuracy, started)
    if args.tuner == "optuna":
        _print_optuna_notes(tuner)
    print(f"Report: {os.path.abspath(args.output)} (summary.txt, best_hyperparameters.json, "
          "PNG plots, hparams/ for TensorBoard)")
    sys.stdout.flush()
    return 0
