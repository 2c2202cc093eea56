"""`trainkit` outputs go where the command says it
created them (a `~` in a path), `check-init` builds the data set's classifier whatever its
batch holds and names a bad `--activation`/`--initializer` before any work, and
`tune --overwrite` removes the old search's TensorBoard HParams logs with its report."""

import json

import pytest

from keras_trainkit import cli, datasets, models
from keras_trainkit.commands import demo, tune

CHECK_INIT = ["check-init", "--dataset", "digits", "--depth", "2", "--width", "8"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh home folder for `~`, and a working folder apart from it."""
    (tmp_path / "home").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path / "home"


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_tilde_output_is_written_where_it_was_created(home, capsys):
    """`--output=~/lr` (a tilde the shell does not expand): the check created ~/lr (and said
    so), then the results went to a folder named `~` in the working folder."""
    assert cli.main(["lr-find", "--dataset", "digits", "--model", "mlp", "--num-steps", "3",
                     "--batch-size", "256", "--output", "~/lr"]) == 0
    assert cli.main([*CHECK_INIT, "--batch-size", "16", "--plot", "~/ci/init.png"]) == 0
    assert _tree(home.parent / "work") == []  # was ['~', '~/ci', '~/ci/init.png', '~/lr', ...]
    assert _tree(home / "lr") == ["lr_find.json", "lr_find.png"]
    assert _tree(home / "ci") == ["init.png"]
    assert f"plot: {home / 'ci' / 'init.png'}" in capsys.readouterr().out
    # demo and tune write where their check created (demo) or checked (tune) the folder
    for module, argv in ((demo, ["demo", "--output", "~/demo"]),
                         (tune, ["tune", "--output", "~/tune"])):
        args = cli.build_parser().parse_args(argv)
        module.check(args)
        assert args.output == str(home / argv[-1][2:])


def test_check_init_builds_the_data_sets_classifier_whatever_the_batch_holds(monkeypatch,
                                                                              capsys):
    """The first 4 MNIST-1D labels are 2, 6, 4, 5: a 7-class model, whose loss at the start
    (1.95 = log 7) and gradients are not those of the 10-class model the data set needs."""
    built = []
    original = models.build

    def build(name, input_shape, num_classes, **kwargs):
        built.append(num_classes)
        return original(name, input_shape, num_classes, **kwargs)

    monkeypatch.setattr(models, "build", build)
    (_, y), _ = datasets.load("mnist1d")
    assert int(y[:4].max()) + 1 < 10  # the batch lacks classes
    assert cli.main(["check-init", "--depth", "2", "--width", "8", "--batch-size", "4",
                     "--json"]) == 0
    json.loads(capsys.readouterr().out)
    assert built == [datasets.describe("mnist1d").num_classes] == [10]


@pytest.mark.parametrize("flag, value", [("--activation", "relux"),
                                         ("--initializer", "he_normall")])
def test_check_init_names_a_bad_activation_or_initializer_before_any_work(monkeypatch, capsys,
                                                                          flag, value):
    """Keras's "Could not interpret activation function identifier: relux" (and the
    initializers' "Received: identifier=...") named no flag, after the data loaded."""
    def refuse(name):
        raise AssertionError("the data loaded before the arguments were checked")

    monkeypatch.setattr(datasets, "load", refuse)
    assert cli.main([*CHECK_INIT, flag, value]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert error[0].startswith(f"trainkit check-init: error: Argument `{flag}` must name")
    assert error[0].endswith(f"Received: {flag}={value!r}")


def test_tune_overwrite_removes_the_old_searchs_hparams_logs(tmp_path):
    """The report's hparams/ (TensorBoard HParams, one run per trial) stayed, so TensorBoard
    showed the old search's trials beside the new one's."""
    output = tmp_path / "out"
    (output / "search" / "trial_0").mkdir(parents=True)
    (output / "hparams" / "trial_7").mkdir(parents=True)
    (output / "hparams" / "events.out.tfevents.1.old").write_text("old")
    (output / "hparams" / "trial_7" / "events.out.tfevents.2.old").write_text("old")
    (output / "summary.txt").write_text("old")
    (output / "my_runs").mkdir()
    args = cli.build_parser().parse_args(["tune", "--dataset", "digits", "--model", "mlp",
                                          "--overwrite", "--output", str(output)])
    tune.check(args)
    tune._prepare_output(args)
    assert _tree(output) == ["my_runs", "search", "search/trainkit_tune.json"]
