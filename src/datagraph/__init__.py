"""Datagraph: asynchronous data processing with streaming dataflows.

Declare processors with named input and output streams, implement them as async
generators with FastAPI-style dependency injection, compose them into a flow and
start runs. Every processor starts at once and consumes its inputs as continuous
streams, on asyncio or trio, in one process or across many.
"""

from __future__ import annotations

from fast_depends import Depends as Depends

from .exceptions import (
    ConfigurationError as ConfigurationError,
)
from .exceptions import (
    CycleError as CycleError,
)
from .exceptions import (
    DatagraphError as DatagraphError,
)
from .exceptions import (
    DeclarationError as DeclarationError,
)
from .exceptions import (
    DuplicateProcessorError as DuplicateProcessorError,
)
from .exceptions import (
    DuplicateProducerError as DuplicateProducerError,
)
from .exceptions import (
    EmptyStreamError as EmptyStreamError,
)
from .exceptions import (
    FlowError as FlowError,
)
from .exceptions import (
    InputError as InputError,
)
from .exceptions import (
    MissingInputError as MissingInputError,
)
from .exceptions import (
    NotAttachedError as NotAttachedError,
)
from .exceptions import (
    OutputError as OutputError,
)
from .exceptions import (
    ProcessorNotFoundError as ProcessorNotFoundError,
)
from .exceptions import (
    RegistrationError as RegistrationError,
)
from .exceptions import (
    RunCancelledError as RunCancelledError,
)
from .exceptions import (
    RunFailedError as RunFailedError,
)
from .exceptions import (
    RunNotFoundError as RunNotFoundError,
)
from .exceptions import (
    SerializationError as SerializationError,
)
from .exceptions import (
    SignatureError as SignatureError,
)
from .exceptions import (
    StreamNotFoundError as StreamNotFoundError,
)
from .exceptions import (
    UnknownInputError as UnknownInputError,
)
from .exceptions import (
    UnknownStreamError as UnknownStreamError,
)
from .exceptions import (
    UnresolvedFlowError as UnresolvedFlowError,
)
from .exceptions import (
    UpstreamError as UpstreamError,
)
from .executors import CeleryExecutor as CeleryExecutor
from .executors import Executor as Executor
from .executors import LocalExecutor as LocalExecutor
from .flow import Flow as Flow
from .io import IO as IO
from .io import BlockingIO as BlockingIO
from .io import IOVal as IOVal
from .processor import Processor as Processor
from .processor import processor as processor
from .run import Run as Run
from .serializers import MsgpackSerializer as MsgpackSerializer
from .serializers import PickleSerializer as PickleSerializer
from .serializers import Serializer as Serializer
from .settings import Settings as Settings
from .snapshot import ProcessorFigures as ProcessorFigures
from .snapshot import RateWindow as RateWindow
from .snapshot import RunSnapshot as RunSnapshot
from .snapshot import StreamFigures as StreamFigures
from .stores import MemoryStore as MemoryStore
from .stores import Store as Store
from .supervisor import Supervisor as Supervisor

__all__ = (
    "IO",
    "BlockingIO",
    "CeleryExecutor",
    "ConfigurationError",
    "CycleError",
    "DatagraphError",
    "DeclarationError",
    "Depends",
    "DuplicateProcessorError",
    "DuplicateProducerError",
    "EmptyStreamError",
    "Executor",
    "Flow",
    "FlowError",
    "IOVal",
    "InputError",
    "LocalExecutor",
    "MemoryStore",
    "MissingInputError",
    "MsgpackSerializer",
    "NotAttachedError",
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
    "StreamNotFoundError",
    "Supervisor",
    "UnknownInputError",
    "UnknownStreamError",
    "UnresolvedFlowError",
    "UpstreamError",
    "processor",
)

__version__ = "0.1.0.dev0"
