"""cpuhot.launch / cpuhot.launch_async: ready on return, cleaned up on exit and on exceptions."""

from __future__ import annotations

import asyncio
import gc
import os

import pytest

import cpuhot
from cpuhot.client import QMPClient


def _gone(vm) -> bool:
    return not os.path.exists(vm.qmp_path) and not os.path.exists(os.path.dirname(vm.qmp_path))


@pytest.mark.parametrize("subprocess", [False, True], ids=["thread", "subprocess"])
def test_launch_async_context_manager(subprocess):
    async def main():
        async with cpuhot.launch_async(machine="pseries", smp="2,maxcpus=8", guest="cooperative",
                                       subprocess=subprocess) as vm:
            reader, writer = await asyncio.open_unix_connection(vm.qmp_path)
            greeting = await reader.readline()
            writer.write(b'{"execute": "qmp_capabilities"}\n{"execute": "query-target"}\n')
            await writer.drain()
            await reader.readline()
            target = await reader.readline()
            writer.close()
            await writer.wait_closed()
            assert vm.running and (vm.process is not None) == subprocess
        return vm, greeting, target
    vm, greeting, target = asyncio.run(main())
    assert b'"major": 7' in greeting and b'"ppc64"' in target
    assert not vm.running and _gone(vm)
    if subprocess:
        assert vm.process.poll() is not None


def test_launch_async_cleans_up_on_exception_and_await_form():
    async def main():
        with pytest.raises(ZeroDivisionError):
            async with cpuhot.launch_async(smp="1,maxcpus=2") as vm:
                path = vm.qmp_path
                1 / 0
        assert not os.path.exists(path)
        vm = await cpuhot.launch_async(smp="1,maxcpus=2")        # plain await: the caller stops it
        try:
            assert os.path.exists(vm.qmp_path)
        finally:
            await vm.__aexit__(None, None, None)
        assert _gone(vm)
        with pytest.raises(cpuhot.LaunchError) as err:
            await cpuhot.launch_async(smp="1000")
        assert err.value.exit_code == 1 and "Invalid SMP CPUs 1000" in err.value.stderr
    asyncio.run(main())


def test_launch_is_cleaned_up_on_exception_and_when_forgotten():
    with pytest.raises(RuntimeError):
        with cpuhot.launch(machine="q35", smp="1,maxcpus=4") as vm:
            with vm.client() as q:
                assert q.execute("query-status")["status"] == "running"
            raise RuntimeError("boom")
    assert _gone(vm)
    forgotten = cpuhot.launch(smp="1,maxcpus=2", subprocess=True)
    path, proc = forgotten.qmp_path, forgotten.process
    del forgotten
    gc.collect()
    assert proc.poll() is not None and not os.path.exists(path)


def test_launch_options_reach_the_vm(tmp_path):
    trace = tmp_path / "t.jsonl"
    with cpuhot.launch(machine="pc", smp="1,maxcpus=4", name="guest=demo", uuid="12345678-1234-1234-1234-"
                       "1234567890AB", guest="refuse", paused=True, compat="qemu-7.2", trace=trace) as vm:
        assert vm.vm.name == "demo" and vm.vm.runstate == "prelaunch"
        with QMPClient(vm.qmp_address) as q:
            assert q.execute("query-uuid") == {"UUID": "12345678-1234-1234-1234-1234567890ab"}
    from cpuhot.trace import load
    assert any('"execute": "query-uuid"' in r.get("raw", "") for r in load(str(trace)) if r["dir"] == "in")
    with pytest.raises(cpuhot.LaunchError) as err:
        cpuhot.launch(machine="pc,bogus=on")
    assert err.value.stderr == "cpuhot: Property 'pc-i440fx-7.2-machine.bogus' not found\n"
