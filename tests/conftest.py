"""Fixtures that give tests the real ComfyUI host: in-process, and as a running server.

The repository root is on the import path through pytest.ini (``pythonpath``): tests import the
tooling as packages (``harness``, ``demo``), and import_host puts ComfyUI's tree before it."""
import pytest

import harness.host

ROOT = harness.host.ROOT

# Test-only node packs (tiny model loaders and the like) that the test server loads beside the pack.
TEST_PACKS = [p for p in (ROOT / "tests" / "test_nodes",) if (p / "__init__.py").exists()]
ARTIFACTS = ROOT / "tests" / "artifacts"

# The host is imported once, here, before any test module: tests may then import comfy at the top.
harness.host.import_host(extra_packs=TEST_PACKS)


@pytest.fixture(scope="session")
def host():
    """ComfyUI imported in this process on the CPU, with its extra nodes and this pack loaded the way
    ComfyUI loads custom nodes. Returns ComfyUI's ``nodes`` module."""
    nodes, _ = harness.host.import_host(extra_packs=TEST_PACKS)
    return nodes


@pytest.fixture(scope="session")
def pack(host):
    """The pack's module, as the host imported it."""
    return harness.host.import_host()[1]


@pytest.fixture(scope="session")
def node(host):
    """A node class by its id, from the host's registry."""
    return lambda node_id: host.NODE_CLASS_MAPPINGS[node_id]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A real ComfyUI server (main.py --cpu) with the pack linked into its custom_nodes."""
    base = tmp_path_factory.mktemp("comfy_base")
    srv = harness.host.start_server(base, extra_packs=TEST_PACKS)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory):
    """A real ComfyUI server with the pack, the demo model (demo/) and the test-only nodes, including the
    long-session observers (tests/session_nodes): harness/session.py starts it."""
    from harness import session
    srv = session.start_demo_server(tmp_path_factory.mktemp("demo_base"))
    yield srv
    srv.stop()
