import keras
import pytest

from keras_trainkit.utils import registry as registry_module
from keras_trainkit.utils.registry import Registry


@pytest.fixture
def make_registry():
    """Registries made here are removed from ``families()`` afterwards, so other tests
    that walk every family (conformance, docs) never see them."""
    names = []

    def make(family, **kwargs):
        names.append(family)
        return Registry(family, **kwargs)

    yield make
    for family in names:
        registry_module._FAMILIES.pop(family, None)


@pytest.fixture
def registry(make_registry):
    return make_registry("widgets_for_test", base_class=keras.optimizers.Optimizer,
                         keras_get=keras.optimizers.get)


def test_register_and_get_by_every_spelling(registry):
    @registry.register(aliases=["fancy"])
    class FancySGDForRegistryTest(keras.optimizers.SGD):
        """An SGD subclass used to test the registry."""

    for name in ["FancySGDForRegistryTest", "fancy_sgd_for_registry_test", "FANCY", "fancy"]:
        assert isinstance(registry.get(name), FancySGDForRegistryTest)
    assert float(registry.get("fancy", learning_rate=0.5).learning_rate) == pytest.approx(0.5)
    assert keras.saving.get_registered_object(
        "keras_trainkit>FancySGDForRegistryTest") is FancySGDForRegistryTest
    config = {"class_name": "FancySGDForRegistryTest",
              "config": FancySGDForRegistryTest(learning_rate=0.25).get_config()}
    assert float(registry.get(config).learning_rate) == pytest.approx(0.25)
    instance = FancySGDForRegistryTest()
    assert registry.get(instance) is instance
    assert registry.get(None) is None


def test_falls_back_to_keras(registry):
    assert isinstance(registry.get("adam"), keras.optimizers.Adam)
    assert float(registry.get("sgd", learning_rate=0.3).learning_rate) == pytest.approx(0.3)


def test_unknown_names_and_types(registry):
    with pytest.raises(ValueError, match="Received: identifier='nope'"):
        registry.get("nope")
    with pytest.raises(TypeError, match="Received: identifier=3"):
        registry.get(3)
    with pytest.raises(ValueError, match="only be given with a name"):
        registry.get(keras.optimizers.SGD(), learning_rate=0.1)


def test_duplicate_class_name_rejected(registry):
    @registry.register
    class DupForRegistryTest(keras.optimizers.SGD):
        """First."""

    with pytest.raises(ValueError, match="already registered"):
        class DupForRegistryTest(keras.optimizers.SGD):  # noqa: F811
            """Second."""

        registry.register(DupForRegistryTest)


def test_unknown_name_message_mentions_keras_only_with_a_fallback(make_registry):
    plain = make_registry("gadgets_for_test")
    with pytest.raises(ValueError) as info:
        plain.get("nope")
    assert "Keras's own" not in str(info.value)
