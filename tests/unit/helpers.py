from cpuhot.machine.config import LaunchOptions, build_machine
from cpuhot.machine.errors import QMPError


def make_vm(**kw):
    kw.setdefault("start_paused", True)
    return build_machine(LaunchOptions(**kw), clock=lambda: 1000.5).vm


def error_of(fn, *args):
    try:
        fn(*args)
    except QMPError as e:
        return e.error_class, e.desc
    return None
