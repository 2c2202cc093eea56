"""What ``trainkit tune`` finds in ``--output`` and ``--storage`` before it starts.

Running the same command again resumes its search, so a search must not be
resumed (or joined) by a command that defines another one:

* ``OUTPUT/search/trainkit_tune.json`` records the settings that define the
  search (:data:`SEARCH_SETTINGS`). A later command over the same ``--output``
  with other values is refused before any work, naming each difference; without
  ``--overwrite`` it would add its trials to the old search's (another data set,
  model or space, another data split by ``--seed``), and the report and the best
  models would mix the two. Changing ``--trials``, ``--budget-minutes``,
  ``--parallel``, ``--isolate``, ``--ensemble`` or ``--refit`` is a resume.
* An Optuna study lives in ``--storage``, which may be outside ``--output``.
  Every ``trainkit tune`` names its study ``search``, so a database that already
  holds one from another search (another ``--output``, or one that
  ``--overwrite`` emptied) is refused: the new search would continue that
  study's trials and count them as its own.
"""

from __future__ import annotations

import json
import os

SETTINGS_FILE = "trainkit_tune.json"

#: The flags whose values define a search (``--epochs`` as resolved).
SEARCH_SETTINGS = ("dataset", "model", "space", "epochs", "seed", "tuner", "objectives")

#: What a trial of ``trainkit tune`` logs, so what ``--objectives`` can name.
KNOWN_METRICS = ("val_accuracy", "val_loss", "accuracy", "loss", "num_params")

STUDY_NAME = "search"  # the project folder's name, which OptunaSearch gives its study


def search_settings(args) -> dict:
    """The settings that define the search ``args`` describe (after the tuner is chosen)."""
    from keras_trainkit.commands.demo import RECIPES
    from keras_trainkit.commands.tune import parse_objectives

    objectives = parse_objectives(args.objectives) or [("val_accuracy", "max")]
    return {"dataset": args.dataset, "model": args.model, "space": args.space,
            "epochs": args.epochs or RECIPES[args.dataset][args.model]["epochs"],
            "seed": args.seed, "tuner": args.tuner,
            "objectives": ",".join(f"{name}:{direction}" for name, direction in objectives)}


def check_objective_names(text: str | None) -> None:
    """Refuse an ``--objectives`` that names a metric no trial logs, or one twice."""
    from keras_trainkit.commands.tune import parse_objectives

    names = [name for name, _ in parse_objectives(text) or []]
    unknown = [name for name in names if name not in KNOWN_METRICS]
    if unknown:
        raise ValueError(f"Argument `--objectives` must name metrics that the trials log "
                         f"({', '.join(KNOWN_METRICS)}); {', '.join(unknown)} is not one. "
                         f"Received: objectives={text!r}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"Argument `--objectives` must name each metric once "
                         f"({', '.join(repeated)} more than once). Received: objectives={text!r}")


def _settings_path(args) -> str:
    """``OUTPUT/search/trainkit_tune.json``."""
    return os.path.join(os.path.expanduser(args.output), "search", SETTINGS_FILE)


def check_same_search(args) -> None:
    """Refuse to resume a search in ``--output`` that other settings started.

    Raises:
        ValueError: the recorded settings differ (or cannot be read), and
            ``--overwrite`` was not given.
    """
    path = _settings_path(args)
    if args.overwrite or not os.path.exists(path):
        return  # a new search, or one started before this record existed
    try:
        with open(path) as file:
            recorded = json.load(file)
        differences = [f"--{key} {recorded[key]}, not {value}"
                       for key, value in search_settings(args).items() if recorded[key] != value]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"Argument `--output` holds a search whose settings file {path} cannot "
                         f"be read ({error}); add --overwrite to start afresh or choose another "
                         f"--output. Received: --output={args.output!r}") from None
    if differences:
        raise ValueError(f"Argument `--output` holds a search started with other settings "
                         f"({'; '.join(differences)}), which this command would resume and mix "
                         f"with its own. Give the same settings to resume it, add --overwrite to "
                         f"start afresh, or choose another --output. "
                         f"Received: --output={args.output!r}")


def write_settings(args) -> None:
    """Record the search's settings in ``OUTPUT/search`` (whole or not at all)."""
    path = _settings_path(args)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w") as file:
        json.dump(search_settings(args), file, indent=2)
    os.replace(temporary, path)


def _inside(path: str | None, folder: str) -> bool:
    """Whether the file ``path`` lies in ``folder`` (or below it)."""
    if path is None:
        return False
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return os.path.commonpath([path, folder]) == folder


def check_storage_study(args, project_dir: str) -> None:
    """Refuse an external ``--storage`` whose study ``search`` is not this search's.

    Runs before ``--overwrite`` removes anything. A search in ``project_dir``
    (resumed, or joined by another host through a shared ``--output``) keeps its
    study.

    Raises:
        TypeError, ValueError, MissingPackage: a storage that cannot open, or one
            that holds the study of another search.
    """
    from keras_trainkit.tuning.optuna_storage import check_storage, shown_storage, storage_file

    if args.tuner != "optuna":
        return
    check_storage(args.storage)
    if args.storage in (None, "journal") or _inside(storage_file(args.storage), project_dir):
        return  # inside OUTPUT/search: it goes with the folder
    ours = any(os.path.exists(os.path.join(project_dir, name))
               for name in (SETTINGS_FILE, "oracle.json"))
    if ours and not args.overwrite:
        return
    trials = _trials_in_study(args.storage, project_dir)
    if trials is None:
        return
    shown = shown_storage(args.storage)
    journal = args.storage.startswith("journal:")
    where = (f"{storage_file(args.storage)} --storage-class JournalFileBackend" if journal
             else shown)
    remedy = (f"delete it (optuna delete-study --storage {where} --study-name {STUDY_NAME}) "
              f"or give another --storage")
    if args.overwrite:
        raise ValueError(f"Argument `--overwrite` starts afresh in --output only: --storage "
                         f"{shown} keeps the study {STUDY_NAME!r} ({trials} trials), which the new "
                         f"search would continue; {remedy}. Received: overwrite=True")
    raise ValueError(f"Argument `--storage` holds a study {STUDY_NAME!r} ({trials} trials) that is "
                     f"not the search in --output {args.output} (which has none), and this search "
                     f"would continue it; resume that search with its own --output, or {remedy}. "
                     f"Received: storage={shown!r}")


def _trials_in_study(storage, project_dir: str) -> int | None:
    """The trial count of the study ``search`` in ``storage``; ``None`` if there is none."""
    import optuna

    from keras_trainkit.tuning.optuna_storage import make_storage

    opened = make_storage(storage, project_dir, None, None, None)
    for summary in optuna.get_all_study_summaries(opened, include_best_trial=False):
        if summary.study_name == STUDY_NAME:
            return summary.n_trials
    return None
