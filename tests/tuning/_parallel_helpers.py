"""A picklable tuner factory for the parallel-search test (imported by the workers)."""

from keras_trainkit import tuning


def make_tuner(directory):
    recipe = tuning.RecipeHyperModel(
        (40,), 10, architecture=tuning.MLPSpace(depth=(1, 1), widths=(16, 32)),
        training=tuning.TrainingSpace(batch_sizes=(128,), epochs=2, clipping=False))
    return tuning.RandomSearch(recipe, max_trials=4, seed=0, directory=directory,
                               project_name="parallel", overwrite=False)
