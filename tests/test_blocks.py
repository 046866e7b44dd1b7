"""The agent block, its secrets, the global limits, the progress artifact, the flow's parameter
schema and the deployment definitions, against Prefect's test harness. The real server, worker
and browser are in test_prefect_server.py."""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import sys
from pathlib import Path
from typing import get_args
from uuid import uuid4

import pytest
import yaml
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import BlockDocumentCreate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter
from prefect.exceptions import ParameterTypeError
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from prefect.utilities.callables import parameter_schema
from pydantic import SecretStr, ValidationError

from prefect_work_clusters import blocks
from prefect_work_clusters.blocks.agent import AgentBlock, PresetName, SavedAgent, load_agent
from prefect_work_clusters.deployments.definitions import (
    CLUSTER_ENTRYPOINT,
    ENTRYPOINT,
    WORK_POOL,
    cluster_deployment_options,
    deployment_options,
)
from prefect_work_clusters.flows.work_clusters import work_clusters
from prefect_work_clusters.tasks.agents.limits import DEFAULT_SLOTS, limit_name, with_cost_cap
from prefect_work_clusters.tasks.agents.progress import ClusterProgress
from prefect_work_clusters.tasks.agents.registry import UnknownAgent, preset_names, resolve_agent
from prefect_work_clusters.tasks.errors import BadInput
from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.resolve import resolve_run
from tests.conftest import git
from tests.loop_helpers import plan_yaml, shop_repo

ROOT = Path(__file__).resolve().parent.parent


class TestAgentBlockStandards(BlockStandardTestSuite):
    """Prefect's own standard suite for collection blocks, as its integrations run it."""

    @pytest.fixture
    def block(self) -> type[AgentBlock]:
        return AgentBlock


def test_the_block_links_this_projects_documentation() -> None:
    urls = dict(u.split(", ", 1) for u in importlib.metadata.metadata("prefect-work-clusters").get_all("Project-URL"))
    assert AgentBlock._documentation_url == urls["Documentation"]
SECRET = f"sk-test-{uuid4().hex}"
harness = pytest.mark.usefixtures("prefect_harness")

# Writes <cluster>/impl.py; records only a hash of the secret it was given, and prints a line.
AGENT = """
import hashlib, os, pathlib, sys
if os.environ["WC_ROLE"] != "cluster":
    sys.exit(0)
cluster = os.environ["WC_CLUSTER"]
pathlib.Path(os.environ["WC_WORKTREE"], cluster, "impl.py").write_text(f"NAME = {cluster!r}\\n")
token = hashlib.sha256(os.environ.get("WC_TEST_TOKEN", "").encode()).hexdigest()
pathlib.Path(os.environ["RECORD_DIR"], cluster).write_text(token + " " + os.environ["WC_PUBLIC"])
print(f"agent {cluster} wrote impl.py")
"""


def test_the_block_follows_prefect_collection_conventions() -> None:
    assert AgentBlock.get_block_type_name() == "Work Clusters Agent"
    assert AgentBlock.get_block_type_slug() == "work-clusters-agent"
    # description, documentation link, field descriptions, code example: TestAgentBlockStandards
    assert AgentBlock.model_json_schema()["secret_fields"] == ["secret_env.*"]  # each value masked
    assert list(get_args(PresetName)) == preset_names()
    assert blocks.AgentBlock is AgentBlock  # what `prefect block register -m prefect_work_clusters.blocks` finds
    entry = {e.name: e.value for e in importlib.metadata.entry_points(group="prefect.collections")}
    assert entry["prefect_work_clusters"] == "prefect_work_clusters.blocks"
    with pytest.raises(ValidationError, match="give a preset or an argv template"):
        AgentBlock()


def test_a_block_becomes_a_backend_with_its_secrets_in_env_only() -> None:
    saved = AgentBlock(preset="claude", env={"A": "1"}, secret_env={"ANTHROPIC_API_KEY": SecretStr(SECRET)},
                       timeout_seconds=60, retries=1, max_cost_usd=2).backend("claude-team")
    assert isinstance(saved, SavedAgent) and saved.name == "claude" and saved.argv[:2] == ["claude", "-p"]
    assert saved.env == {"A": "1", "ANTHROPIC_API_KEY": SECRET}
    assert (saved.timeout_seconds, saved.retries, saved.max_cost_usd) == (60, 1, 2)
    usage = saved.parse_usage('{"type": "result", "total_cost_usd": 0.5, "usage": {"input_tokens": 3}}')
    assert usage is not None and usage.cost_usd == 0.5
    assert SECRET not in repr(saved) and SECRET not in str(saved) and "claude-team" in repr(saved)
    own = AgentBlock(argv=["my-agent", "{prompt_file}"]).backend()
    assert own.name == "command" and own.argv == ["my-agent", "{prompt_file}"] and own.parse_usage("{}") is None
    assert AgentBlock(preset="aider").backend().scratch == (".aider*",)


def test_a_block_cost_limit_lowers_the_plans(tmp_path: Path) -> None:
    repo, plan = shop_repo(tmp_path, plan_yaml(extra="  max_cost_usd: 3\n"))
    ctx = resolve_run(plan, repo, RunOptions(agent_cmd="true"))
    assert with_cost_cap(ctx, 1.5).plan.limits.max_cost_usd == 1.5
    assert with_cost_cap(ctx, 9).plan.limits.max_cost_usd == 3
    assert with_cost_cap(ctx, None) is ctx


def test_flow_parameters_are_typed_and_described() -> None:
    schema = parameter_schema(work_clusters).model_dump_for_openapi()
    props = schema["properties"]
    assert schema["required"] == ["repo"] and all(p.get("description") for p in props.values())
    # Optional fields are typed with an empty default, not `X | None`, which the run form draws behind
    # a type toggle; only retries (where 0 is a value) keeps it.
    toggled = [name for name, p in props.items() if "anyOf" in p]
    assert toggled == ["retries"] and props["retries"]["anyOf"][0]["minimum"] == 0
    assert props["plan"]["pattern"] and props["plan"]["default"] == "" and props["agent"]["type"] == "string"
    assert props["concurrency"]["minimum"] == 0 and props["land"]["type"] == "boolean"
    assert RunOptions.pick({"agent": "", "concurrency": 0, "timeout": 0, "retries": 0}) == RunOptions(retries=0)
    with pytest.raises(ParameterTypeError, match="concurrency"):
        work_clusters.validate_parameters({"plan": "p.yaml", "repo": "/r", "concurrency": -1})
    with pytest.raises(ParameterTypeError, match="plan"):
        work_clusters.validate_parameters({"plan": "notes.txt", "repo": "/r"})


def test_prefect_yaml_and_the_python_helpers_describe_the_same_deployments() -> None:
    declared = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert declared["pull"] == []  # module entrypoints: nothing to fetch, no folder to stand in
    *plans, cluster = declared["deployments"]
    expected = cluster_deployment_options()
    assert (cluster["name"], cluster["entrypoint"], cluster["description"], cluster["tags"], cluster["parameters"]) \
        == (expected["name"], CLUSTER_ENTRYPOINT, expected["description"], expected["tags"], {})
    assert cluster["work_pool"]["job_variables"] == expected["job_variables"]  # its heartbeats
    for spec, options in zip(plans, deployment_options(), strict=True):
        assert (spec["name"], spec["entrypoint"], spec["work_pool"]["name"]) == (options["name"], ENTRYPOINT,
                                                                               WORK_POOL)
        assert (spec["description"], spec["tags"]) == (options["description"], options["tags"])
        assert spec["parameters"] == options.get("parameters", {})
        for declared_schedule, schedule in zip(spec.get("schedules", []), options.get("schedules", []), strict=True):
            assert declared_schedule == {"cron": schedule.cron, "timezone": schedule.timezone, "active": False}
    served = [work_clusters.to_deployment(**options) for options in deployment_options()]  # as serve_plans does
    assert {d.entrypoint for d in served} == {ENTRYPOINT}
    assert [d.name for d in served] == [spec["name"] for spec in plans] and served[1].schedules
    nightly = deployment_options({"plan": "p.md", "repo": "/r"})[1]
    assert nightly["schedules"][0].active and nightly["parameters"] == {"plan": "p.md", "repo": "/r"}


@pytest.mark.local_mode  # no server configured: PREFECT_API_URL unset in the environment too
def test_no_server_and_no_local_database_means_no_lookup(tmp_path: Path) -> None:
    # Looking would start Prefect's temporary server (seconds) where no block can have been saved.
    with temporary_settings(restore_defaults={PREFECT_API_URL}, updates={PREFECT_HOME: tmp_path}):
        assert load_agent("some-agent") is None
        assert not (tmp_path / "prefect.db").exists()  # no temporary server was started to look


@harness
def test_a_saved_block_is_named_like_a_preset_and_its_secret_masked(tmp_path: Path) -> None:
    AgentBlock(argv=["true"], secret_env={"TOKEN": SecretStr(SECRET)}).save("masked-agent", overwrite=True)
    with get_client(sync_client=True) as client:
        shown = client.read_block_document_by_name("masked-agent", "work-clusters-agent", include_secrets=False)
    assert SECRET not in str(shown.data)  # what the UI and the API show
    assert isinstance(resolve_agent("masked-agent"), SavedAgent)
    repo, plan = shop_repo(tmp_path, plan_yaml(extra="agent: masked-agent\n"))
    assert resolve_run(plan, repo).plan.agent == "masked-agent"  # a plan's `agent:` resolves the block
    assert resolve_run(plan, repo, RunOptions(agent="masked-agent")).plan.agent == "masked-agent"  # --agent
    with pytest.raises(UnknownAgent, match="the name of a saved agent block"):
        resolve_agent("no-such-agent")


@harness
def test_a_block_that_no_longer_validates_is_reported_without_its_secret() -> None:
    schema_id, type_id = AgentBlock._to_block_schema().id, AgentBlock.register_type_and_schema()
    with get_client(sync_client=True) as client:
        kind = client.read_block_type_by_slug("work-clusters-agent")
        schema = client.get_most_recent_block_schema_for_block_type(kind.id)
        assert schema is not None and type_id is None and schema_id
        client.create_block_document(BlockDocumentCreate(
            name="broken-agent", data={"secret_env": {"TOKEN": SECRET}}, block_schema_id=schema.id,
            block_type_id=kind.id))
    with pytest.raises(BadInput, match="'broken-agent' no longer validates") as caught:
        resolve_agent("broken-agent")
    assert SECRET not in str(caught.value) and caught.value.__cause__ is None


@harness
def test_the_progress_artifact_follows_the_clusters() -> None:
    seen: list[tuple[float, str]] = []

    def read() -> None:
        assert progress.flush()  # the artifact is written by a thread of its own
        with get_client(sync_client=True) as client:
            art = client.read_latest_artifacts()
        match = [a for a in art if a.key == "progress-demo"]
        seen.append((float(match[0].data), match[0].description or ""))  # type: ignore[arg-type]

    progress: ClusterProgress

    @flow
    def progress_flow() -> None:
        nonlocal progress
        progress = ClusterProgress("run", "demo", ["ui", "db"], ["api"])
        progress.started("ui", 1)
        progress.started("db", 1)
        read()
        progress.ended("ui", "failed", 1, 0.25, retrying=True)
        read()
        progress.started("ui", 2)
        progress.ended("ui", "failed", 2, 0.5, retrying=False)
        read()
        progress.ended("db", "succeeded", 1, None, retrying=False)
        read()
        progress.close()

    progress_flow()
    assert not progress._writer.is_alive()
    assert [pct for pct, _ in seen] == [33.3, 33.3, 66.7, 100.0]
    assert "1 of 3 clusters done: ✅ 1 succeeded · ⏳ 2 running" in seen[0][1]
    assert "| ui | ⏳ running | 1 | 0 s |  |" in seen[0][1] and "| api | ✅ succeeded (earlier run) |" in seen[0][1]
    assert "⏳ 1 running · 🔁 1 retrying" in seen[1][1] and "| ui | 🔁 retrying | 1 |" in seen[1][1]
    assert "2 of 3 clusters done: ❌ 1 failed · ✅ 1 succeeded · ⏳ 1 running" in seen[2][1]
    assert "| ui | ❌ failed | 2 |" in seen[2][1] and "| $0.50 |" in seen[2][1]
    assert "3 of 3 clusters done: ❌ 1 failed · ✅ 2 succeeded" in seen[-1][1]


@harness
def test_an_artifact_the_api_refuses_costs_a_warning_never_an_agent(caplog: pytest.LogCaptureFixture) -> None:
    @flow
    def refused_flow() -> bool:
        progress = ClusterProgress("run", "refused", ["ui"], [])
        progress.artifact_id = uuid4()  # no such artifact: every update is refused (404)
        progress.started("ui", 1)  # in the agent's thread: must not raise
        progress.ended("ui", "succeeded", 1, None, retrying=False)
        flushed = progress.flush()
        progress.close()
        return flushed

    assert refused_flow()
    warned = [r for r in caplog.records if "progress artifact could not be updated" in r.getMessage()]
    assert len(warned) == 1  # once, not per update


@harness
def test_a_secret_reaches_the_agents_environment_and_nothing_else(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.INFO, logger="prefect")
    records = tmp_path / "records"
    records.mkdir()
    (tmp_path / "agent.py").write_text(AGENT)
    AgentBlock(argv=[sys.executable, str(tmp_path / "agent.py")],
               env={"RECORD_DIR": str(records), "WC_PUBLIC": "visible"},
               secret_env={"WC_TEST_TOKEN": SecretStr(SECRET)}).save("secret-agent", overwrite=True)
    repo, plan = shop_repo(tmp_path, plan_yaml().replace("name: shop", "name: secrets"))

    state = work_clusters(plan=str(plan), repo=str(repo), agent="secret-agent", return_state=True)

    assert state.is_completed(), state.message
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    assert {p.name: p.read_text() for p in records.iterdir()} == {c: f"{digest} visible" for c in ("api", "ui", "db")}
    APILogHandler().flush()  # logs are sent in batches
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        logs = [log.message for log in client.read_logs(LogFilter(flow_run_id={"any_": [run_id]}))]
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=[run_id])))
        parameters = client.read_flow_run(run_id).parameters  # type: ignore[arg-type]
        limit = client.read_global_concurrency_limit_by_name(limit_name("command"))
    assert any("[api] agent api wrote impl.py" in m for m in logs)
    assert {a.key for a in artifacts} == {"progress-secrets", "contract-check-secrets", "merge-report-secrets"}
    progress = next(a for a in artifacts if a.key == "progress-secrets")
    assert progress.data == 100 and "| db | ✅ succeeded | 1 |" in (progress.description or "")
    assert limit.limit == DEFAULT_SLOTS  # created on first use
    runs = repo.parent / "repo.clusters" / "secrets" / ".runs"
    places = {
        "logs through the API": "\n".join(logs),
        "captured logs": caplog.text,
        "captured output": "".join(capfd.readouterr()),
        "artifacts": "\n".join(f"{a.data} {a.description}" for a in artifacts),
        "flow run parameters": str(parameters),
        "git history": git(repo, "log", "--all", "-p"),
        **{str(p): p.read_text(errors="replace") for p in runs.rglob("*") if p.is_file()},
    }
    assert "[api] agent api wrote impl.py" in places["captured logs"]
    assert len(places) > 15  # prompts, logs, records, reports
    assert [where for where, text in places.items() if SECRET in text] == []
