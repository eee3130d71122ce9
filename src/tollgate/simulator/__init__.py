"""The simulated provider: OpenAI and Anthropic wire formats over real HTTP, deterministic and steerable.

Used by the tests and the benchmark (``SimulatorServer``), by ``tollgate simulate`` (``run_simulator``) and by
the gateway for ``type: simulated`` providers (``start_on_socket``). The reply and token rules, and the
``sim-`` directives a model name may carry, are in ``docs/simulator.md``.
"""

from tollgate.simulator.app import DEFAULT_MODELS, Simulator
from tollgate.simulator.behaviour import Behaviour, parse_behaviour
from tollgate.simulator.server import (
    RunningSimulator,
    SimulatorServer,
    bind_socket,
    run_simulator,
    start_in_loop,
    start_on_socket,
)

__all__ = [
    "DEFAULT_MODELS",
    "Behaviour",
    "RunningSimulator",
    "Simulator",
    "SimulatorServer",
    "bind_socket",
    "parse_behaviour",
    "run_simulator",
    "start_in_loop",
    "start_on_socket",
]
