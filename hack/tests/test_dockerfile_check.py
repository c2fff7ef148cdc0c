"""Tests of hack/dockerfile-check.py: the repository's Dockerfile passes, and each rule refuses a
Dockerfile that breaks it (fixtures, and one-line mutations of the real Dockerfile)."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "dockerfile"
SCRIPT = REPO / "hack" / "dockerfile-check.py"

spec = importlib.util.spec_from_file_location("dockerfile_check", SCRIPT)
dockerfile_check = importlib.util.module_from_spec(spec)
sys.modules["dockerfile_check"] = dockerfile_check  # dataclasses look their module up
spec.loader.exec_module(dockerfile_check)

TOOLS_SH = (REPO / "hack" / "tools.sh").read_text()
DOCKERFILE = (REPO / "Dockerfile").read_text()


def rules(text, tools_sh=TOOLS_SH):
    """The rule names of the errors (`12: digest: ...` -> `digest`)."""
    return sorted({re.sub(r"^\d+: ", "", e).split(":", 1)[0] for e in dockerfile_check.check(text, tools_sh)})


def test_the_repository_dockerfile_passes():
    assert dockerfile_check.check(DOCKERFILE, TOOLS_SH) == []


def test_the_good_fixture_passes():
    assert dockerfile_check.check((FIXTURES / "good.Dockerfile").read_text(), TOOLS_SH) == []


def test_the_bad_fixture_breaks_every_rule():
    errors = dockerfile_check.check((FIXTURES / "bad.Dockerfile").read_text(), TOOLS_SH)
    assert rules((FIXTURES / "bad.Dockerfile").read_text()) == sorted(
        ["digest", "latest", "user", "apt", "labels", "auditable", "sbom", "tools"])
    # Both FROMs, each missing label, the root user: every finding, not only the first.
    assert sum("digest:" in e for e in errors) == 2
    assert sum("labels:" in e for e in errors) == len(dockerfile_check.REQUIRED_LABELS) - 1


def mutate(old, new, count=1):
    assert DOCKERFILE.count(old) >= 1, f"the Dockerfile no longer contains {old!r}: update this test"
    return DOCKERFILE.replace(old, new, count)


RUNTIME = "gcr.io/distroless/cc-debian12:nonroot@sha256:"


@pytest.mark.parametrize("name, text, rule", [
    ("runtime image by tag only",
     re.sub(r"(gcr\.io/distroless/cc-debian12:nonroot)@sha256:[0-9a-f]{64}", r"\1", DOCKERFILE), "digest"),
    ("builder image by tag only",
     re.sub(r"(rust:1\.95-bookworm)@sha256:[0-9a-f]{64}", r"\1", DOCKERFILE), "digest"),
    ("a short digest", re.sub(r"(nonroot@sha256:)[0-9a-f]{64}", r"\1abc123", DOCKERFILE), "digest"),
    ("the latest tag", DOCKERFILE.replace("cc-debian12:nonroot@", "cc-debian12:latest@"), "latest"),
    ("an image from a build argument", DOCKERFILE.replace(
        "FROM gcr.io/distroless/cc-debian12:nonroot@", "ARG BASE\nFROM ${BASE}\nFROM gcr.io/distroless/cc-debian12:nonroot@"),
     "digest"),
])
def test_unpinned_images_are_refused(name, text, rule):
    assert rule in rules(text), name


def test_a_root_or_missing_user_is_refused():
    assert rules(mutate("USER 65532:65532", "USER root")) == ["user"]
    assert rules(mutate("USER 65532:65532", "USER 0:0")) == ["user"]
    assert rules(mutate("USER 65532:65532\n", "")) == ["user"]
    # A non-root USER in the builder does not count for the final stage.
    text = mutate("USER 65532:65532\n", "").replace("WORKDIR /src\n", "WORKDIR /src\nUSER 1000\n", 1)
    assert rules(text) == ["user"]


def test_apt_without_cleanup_or_flags_is_refused():
    assert rules(mutate(" --no-install-recommends", "")) == ["apt"]
    assert rules(mutate("    && rm -rf /var/lib/apt/lists/*\n", "")) == ["apt"]
    assert rules(mutate("apt-get install -y", "apt-get install")) == ["apt"]


@pytest.mark.parametrize("label", dockerfile_check.REQUIRED_LABELS)
def test_each_required_label_is_enforced(label):
    text, n = re.subn(rf"(\s){re.escape(label)}=", r"\1org.example.other=", DOCKERFILE)
    assert n == 1, f"the Dockerfile sets {label} {n} times: update this test"
    assert rules(text) == ["labels"]


def test_a_plain_cargo_build_is_refused():
    text = DOCKERFILE.replace("cargo auditable build", "cargo build")
    assert rules(text) == ["auditable"]


@pytest.mark.parametrize("flag", ["--features failpoints", "--features=failpoints", "--all-features"])
def test_a_release_build_with_crash_points_is_refused(flag):
    text = DOCKERFILE.replace("cargo auditable build --release", f"cargo auditable build --release {flag}")
    assert text != DOCKERFILE
    assert rules(text) == ["failpoints"]


def test_the_sbom_must_be_generated_and_shipped():
    text = re.sub(r"COPY --from=builder /sbom/sbom.cdx.json /usr/share/doc/\S+\n", "", DOCKERFILE)
    assert rules(text) == ["sbom"]


def test_tool_versions_must_match_hack_tools_sh():
    assert rules(DOCKERFILE, TOOLS_SH.replace("CARGO_CYCLONEDX_VERSION=0.5.9", "CARGO_CYCLONEDX_VERSION=0.5.8")) == ["tools"]
    assert rules(DOCKERFILE.replace("cargo-auditable@", "cargo-auditable@9")) == ["tools"]


def test_the_command_line_exits_non_zero_on_a_bad_dockerfile():
    bad = subprocess.run([sys.executable, str(SCRIPT), str(FIXTURES / "bad.Dockerfile")], capture_output=True, text=True)
    assert bad.returncode == 1 and "digest" in bad.stderr
    good = subprocess.run([sys.executable, str(SCRIPT), str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
