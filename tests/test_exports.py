"""The public names of ``datagraph``: adding one is a decision, removing one a break."""

import datagraph

EXPECTED = {
    "IO",
    "BlockingIO",
    "CeleryExecutor",
    "CycleError",
    "DatagraphError",
    "Depends",
    "DuplicateProcessorError",
    "DuplicateProducerError",
    "EmptyStreamError",
    "Executor",
    "Flow",
    "FlowError",
    "IOVal",
    "LocalExecutor",
    "MemoryStore",
    "MissingInputError",
    "MsgpackSerializer",
    "OutputError",
    "PickleSerializer",
    "Processor",
    "ProcessorFigures",
    "ProcessorNotFoundError",
    "RateWindow",
    "RegistrationError",
    "Run",
    "RunCancelledError",
    "RunFailedError",
    "RunNotFoundError",
    "RunSnapshot",
    "SerializationError",
    "Serializer",
    "Settings",
    "SignatureError",
    "Store",
    "StreamFigures",
    "Supervisor",
    "UnresolvedFlowError",
    "UpstreamError",
    "ConfigurationError",
    "DeclarationError",
    "InputError",
    "NotAttachedError",
    "StreamNotFoundError",
    "UnknownInputError",
    "UnknownStreamError",
    "processor",
}


def test_all_is_pinned() -> None:
    assert set(datagraph.__all__) == EXPECTED
    assert len(datagraph.__all__) == len(EXPECTED)  # no name listed twice


def test_every_exported_name_exists() -> None:
    for name in datagraph.__all__:
        assert getattr(datagraph, name) is not None, name


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from datagraph import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == EXPECTED


def test_every_error_is_a_datagraph_error() -> None:
    errors = [
        getattr(datagraph, name)
        for name in datagraph.__all__
        if name.endswith("Error") and name != "DatagraphError"
    ]
    assert errors
    for error in errors:
        assert issubclass(error, datagraph.DatagraphError), error


def test_depends_is_fast_depends() -> None:
    import fast_depends

    assert datagraph.Depends is fast_depends.Depends
