"""Tests of hack/chart-docs.py: the chart's generated parts are in sync, and `--check` fails when
the values table, the CRD list or the examples go stale."""
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("chart_docs", REPO / "hack" / "chart-docs.py")
chart_docs = importlib.util.module_from_spec(spec)
sys.modules["chart_docs"] = chart_docs
spec.loader.exec_module(chart_docs)


@pytest.fixture
def tree(tmp_path):
    shutil.copytree(REPO / "charts" / "account-linker", tmp_path / "chart")
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    return tmp_path


def check(tree):
    return chart_docs.main(["--check", "--chart", str(tree / "chart"), "--examples", str(tree / "examples")])


def annotations(chart):
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())["annotations"]
    return {k: yaml.safe_load(v) if k != "artifacthub.io/license" else v for k, v in meta.items()}


def test_the_repository_is_in_sync(tree):
    assert check(tree) == 0


def test_every_crd_kind_and_an_example_of_each_are_annotated():
    chart = REPO / "charts" / "account-linker"
    kinds = sorted(yaml.safe_load(p.read_text())["spec"]["names"]["kind"] for p in (chart / "crds").glob("*.yaml"))
    meta = annotations(chart)
    assert sorted(c["kind"] for c in meta["artifacthub.io/crds"]) == kinds
    assert sorted(e["kind"] for e in meta["artifacthub.io/crdsExamples"]) == kinds
    assert all(c["description"] for c in meta["artifacthub.io/crds"])
    app = yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"]
    assert [i["image"].rsplit(":", 1)[1] for i in meta["artifacthub.io/images"]] == [app]
    for key in ("artifacthub.io/changes", "artifacthub.io/links", "artifacthub.io/license"):
        assert meta[key], key


def test_a_new_value_makes_the_readme_stale(tree):
    values = tree / "chart" / "values.yaml"
    values.write_text(values.read_text().replace("replicaCount: 2", "replicaCount: 3"))
    assert check(tree) == 1


def test_a_changed_schema_makes_the_readme_stale(tree):
    schema = tree / "chart" / "values.schema.json"
    schema.write_text(schema.read_text().replace('"Always",', '"Always", "Sometimes",', 1))
    assert check(tree) == 1


def test_a_new_crd_makes_the_annotations_stale(tree):
    crds = tree / "chart" / "crds"
    text = (crds / "linkedaccounts.accountlinker.dev.yaml").read_text()
    (crds / "widgets.accountlinker.dev.yaml").write_text(
        text.replace("LinkedAccount", "Widget").replace("linkedaccounts", "widgets").replace("lacct", "wdg"))
    example = tree / "examples" / "widget.yaml"
    example.write_text("apiVersion: accountlinker.dev/v1alpha1\nkind: Widget\nmetadata: {name: w}\nspec: {}\n")
    assert check(tree) == 1


def test_a_crd_without_an_example_is_an_error(tree):
    for example in (tree / "examples").glob("*.yaml"):
        if "kind: MemberAccount" in example.read_text():
            example.unlink()
    with pytest.raises(SystemExit, match="no MemberAccount"):
        check(tree)


def test_a_hand_edit_below_the_marker_is_stale(tree):
    chart_yaml = tree / "chart" / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("displayName: Linked Account", "displayName: Linked"))
    assert check(tree) == 1


def test_an_undocumented_value_is_refused(tree):
    values = tree / "chart" / "values.yaml"
    values.write_text(values.read_text().replace("# Replaces the chart name in object names and labels.\n", ""))
    with pytest.raises(SystemExit, match="nameOverride"):
        check(tree)
