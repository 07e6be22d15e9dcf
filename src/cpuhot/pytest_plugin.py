"""pytest plugin: simulated VMs as fixtures (registered through the ``pytest11`` entry point).

Fixtures
    ``cpuhot_vm``       a running VM (:class:`cpuhot.RunningVM`): ``.qmp_path``, ``.qmp_address``,
                        ``.client()`` (a negotiated QMP connection), ``.vm`` (the model, in-process)
    ``cpuhot_factory``  ``cpuhot_factory(machine="q35", smp="2,maxcpus=8", ...)`` starts more; all
                        are stopped after the test

Configuration, weakest first: the command line (``--cpuhot-guest MODE``,
``--cpuhot-subprocess``, ``--cpuhot-compat PROFILE``), ``@pytest.mark.cpuhot(**kw)`` on the
module, class or test, then indirect parametrisation of ``cpuhot_vm``.  The keywords are
those of :func:`cpuhot.launch`: ``machine``, ``smp``, ``cpu``, ``guest``, ``compat``, ``accel``,
``numa``, ``memory``, ``paused``, ``subprocess``, ...::

    import pytest

    @pytest.mark.cpuhot(machine="q35", smp="2,maxcpus=8", guest="cooperative")
    def test_unplug(cpuhot_vm):
        with cpuhot_vm.client() as qmp:
            ...

    @pytest.mark.parametrize("cpuhot_vm", [{"machine": "pc"}, {"machine": "pseries"}], indirect=True)
    def test_both(cpuhot_vm):
        ...
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .launch import RunningVM


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cpuhot", "cpuhot simulated VMs")
    group.addoption("--cpuhot-guest", default=None, metavar="MODE",
                    help="guest mode of cpuhot_vm / cpuhot_factory VMs (none, cooperative[:DELAY], slow:S, "
                         "unresponsive, refuse, flaky:P, auto); a marker may override it")
    group.addoption("--cpuhot-subprocess", action="store_true", default=False,
                    help="run each cpuhot VM as a 'python -m cpuhot serve' subprocess instead of in-process")
    group.addoption("--cpuhot-compat", default=None, metavar="PROFILE",
                    help="compatibility profile of the VMs (cpuhot, qemu-7.2, ...)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cpuhot(**launch_kwargs): how cpuhot_vm is started "
                                       "(machine=, smp=, guest=, compat=, ... as cpuhot.launch takes)")


class CpuhotFactory:
    """Starts VMs with the session's defaults; :meth:`stop_all` stops every one it started."""

    def __init__(self, defaults: dict[str, Any]):
        self.defaults = dict(defaults)
        self.started: list[RunningVM] = []

    def __call__(self, **kw: Any) -> RunningVM:
        from .launch import launch
        options = {**self.defaults, **kw}
        vm = launch(**options)
        self.started.append(vm)
        return vm

    def stop_all(self) -> None:
        while self.started:
            self.started.pop().stop()


def _defaults(config: pytest.Config) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if config.getoption("cpuhot_guest", None):
        d["guest"] = config.getoption("cpuhot_guest")
    if config.getoption("cpuhot_subprocess", False):
        d["subprocess"] = True
    if config.getoption("cpuhot_compat", None):
        d["compat"] = config.getoption("cpuhot_compat")
    return d


@pytest.fixture
def cpuhot_factory(request: pytest.FixtureRequest) -> Iterator[CpuhotFactory]:
    """``cpuhot_factory(**launch_kwargs)`` -> a running VM; all are stopped after the test."""
    factory = CpuhotFactory(_defaults(request.config))
    yield factory
    factory.stop_all()


@pytest.fixture
def cpuhot_vm(request: pytest.FixtureRequest, cpuhot_factory: CpuhotFactory) -> RunningVM:
    """A running VM configured by ``@pytest.mark.cpuhot(...)`` and/or indirect parametrisation."""
    kw: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("cpuhot"))):   # module, class, then the test
        if marker.args:
            kw["machine"] = marker.args[0]
        kw.update(marker.kwargs)
    param = getattr(request, "param", None)
    if isinstance(param, str):
        kw["machine"] = param
    elif isinstance(param, dict):
        kw.update(param)
    elif param is not None:
        raise TypeError(f"cpuhot_vm parameters are dicts of cpuhot.launch keywords or machine names, not {param!r}")
    return cpuhot_factory(**kw)
