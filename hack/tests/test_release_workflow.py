"""Tests of .github/workflows/release.yml beyond what actionlint checks: the promises of the
release (pinned actions, keyless signing, SBOM and provenance for the image and the chart)."""
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW_TEXT = (REPO / ".github" / "workflows" / "release.yml").read_text()
WORKFLOW = yaml.safe_load(WORKFLOW_TEXT)


def steps(job):
    return WORKFLOW["jobs"][job]["steps"]


def test_every_action_is_pinned_by_commit_sha_with_its_version_in_a_comment():
    uses = re.findall(r"uses: (\S+)(.*)", WORKFLOW_TEXT)
    assert uses
    for action, rest in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), f"{action} is not pinned by SHA"
        assert re.match(r"\s+# v\d", rest), f"{action} lacks its version comment"


def test_the_workflow_token_is_read_only_unless_a_job_asks():
    assert WORKFLOW["permissions"] == {"contents": "read"}
    for job in ("image", "chart"):
        perms = WORKFLOW["jobs"][job]["permissions"]
        assert perms["id-token"] == "write", f"{job}: keyless signing needs the OIDC token"
        assert perms["attestations"] == "write"
        assert perms["packages"] == "write"


def test_the_image_is_multi_platform_signed_with_sbom_and_provenance():
    build = next(s for s in steps("image") if s.get("id") == "build")
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert build["with"]["push"] is True
    runs = "\n".join(s.get("run", "") for s in steps("image"))
    assert 'cosign sign --yes "$REF"' in runs
    assert "--type cyclonedx" in runs
    used = [s.get("uses", "").split("@")[0] for s in steps("image")]
    assert "actions/attest-build-provenance" in used and "actions/attest-sbom" in used


def test_the_chart_is_pushed_as_oci_and_signed():
    runs = "\n".join(s.get("run", "") for s in steps("chart"))
    assert "helm push" in runs and WORKFLOW["env"]["CHART_REPO"].startswith("oci://")
    assert 'cosign sign --yes "$REF"' in runs
    assert "actions/attest-build-provenance" in [s.get("uses", "").split("@")[0] for s in steps("chart")]


def test_helm_in_the_workflow_is_the_version_the_tests_use():
    pinned = re.search(r"^HELM_VERSION=(\S+)$", (REPO / "hack" / "tools.sh").read_text(), re.M).group(1)
    assert WORKFLOW["env"]["HELM_VERSION"] == pinned


def test_actionlint_with_shellcheck_refuses_a_bad_workflow():
    """The linter `make lint-release` runs finds script injection and shell mistakes (so a clean
    run of it on release.yml means something)."""
    import subprocess

    tool = lambda name: subprocess.run(["bash", str(REPO / "hack" / "tools.sh"), name],
                                       capture_output=True, text=True, check=True).stdout.strip()
    bad = Path(__file__).resolve().parent / "fixtures" / "workflows" / "bad.yml"
    out = subprocess.run([tool("actionlint"), "-color=false", f"-shellcheck={tool('shellcheck')}", str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "potentially untrusted" in out.stdout
    assert "SC2086" in out.stdout
    good = subprocess.run([tool("actionlint"), "-color=false", f"-shellcheck={tool('shellcheck')}",
                           str(REPO / ".github" / "workflows" / "release.yml")], capture_output=True, text=True)
    assert good.returncode == 0, good.stdout


def test_the_version_step_accepts_the_repository_version_and_refuses_another(tmp_path):
    import subprocess

    script = next(s["run"] for s in steps("version") if s.get("id") == "v")
    version = yaml.safe_load((REPO / "charts" / "account-linker" / "Chart.yaml").read_text())["version"]

    def run(tag):
        out = tmp_path / "out"
        out.write_text("")
        result = subprocess.run(["bash", "-e", "-c", script], cwd=REPO, capture_output=True, text=True,
                                env={"PATH": "/usr/bin:/bin", "TAG": tag, "GITHUB_OUTPUT": str(out)})
        return result, out.read_text()

    ok, output = run(f"v{version}")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert output.splitlines() == [f"version={version}", f"tag=v{version}"]
    bad, _ = run("v99.0.0")
    assert bad.returncode == 1 and "must agree" in bad.stdout
