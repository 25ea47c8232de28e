"""リポジトリのシェルスクリプト: 構文（bash -n・sh -n、あれば shellcheck）と、テスト用 minikube の
スクリプト（tests/e2e/minikube/）の部品を、root もクラスタも要らない範囲で本物の bash で動かす。
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.support import ROOT

MINIKUBE = ROOT / "tests" / "e2e" / "minikube"
SCRIPT = MINIKUBE / "minikube.sh"


def shell_scripts() -> list[Path]:
    """git が管理するシェルスクリプト（拡張子 .sh と、#!/bin/sh・bash で始まるひな形）。"""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    scripts = []
    for name in listed.stdout.splitlines():
        path = ROOT / name
        if not path.is_file():
            continue
        if name.endswith(".sh"):
            scripts.append(path)
            continue
        with path.open("rb") as handle:
            first = handle.readline()
        if first.startswith(b"#!") and (b"sh" in first.split(b"/")[-1] and b"python" not in first):
            scripts.append(path)
    return scripts


def shell_of(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    return "sh" if first.rstrip().endswith("/bin/sh") else "bash"


def test_the_repository_has_the_scripts_this_file_checks() -> None:
    names = {str(path.relative_to(ROOT)) for path in shell_scripts()}
    assert {
        "service/run.sh",
        "tests/e2e/minikube/minikube.sh",
        "tests/e2e/minikube/lib/common.sh",
        "tests/e2e/minikube/templates/systemctl",
        "tests/e2e/minikube/templates/containerd.init",
        "tests/e2e/minikube/templates/mii-runc",
        "tests/e2e/minikube/lib/kic.sh",
    } <= names


@pytest.mark.parametrize("path", shell_scripts(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_script_parses(path: Path) -> None:
    result = subprocess.run([shell_of(path), "-n", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (Debian package)")
@pytest.mark.parametrize("path", shell_scripts(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_script_passes_shellcheck(path: Path) -> None:
    result = subprocess.run(
        ["shellcheck", "--external-sources", f"--shell={shell_of(path)}", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


# --- minikube.sh: 入口 --------------------------------------------------------------------


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


def script_env(tmp_path: Path) -> dict[str, str]:
    """状態・ログ・キャッシュの場所を一時ディレクトリへ向ける。"""
    return {
        **os.environ,
        "MII_MINIKUBE_STATE_DIR": str(tmp_path / "state"),
        "MII_MINIKUBE_LOG_DIR": str(tmp_path / "log"),
        "MII_MINIKUBE_CACHE_DIR": str(tmp_path / "cache"),
    }


def test_help_lists_every_command() -> None:
    result = run_script("--help")
    assert result.returncode == 0
    for command in ("up", "down", "status", "kubeconfig", "env"):
        assert f"minikube.sh {command}" in result.stdout


def test_an_unknown_command_prints_the_usage_and_fails() -> None:
    result = run_script("start")
    assert result.returncode == 2
    assert "minikube.sh up" in result.stderr


def test_kubeconfig_and_env_point_at_the_state_directory(tmp_path: Path) -> None:
    env = script_env(tmp_path)
    assert run_script("kubeconfig", env=env).stdout.strip() == f"{tmp_path}/state/kubeconfig"
    exports = run_script("env", env=env).stdout
    assert f"export KUBECONFIG={tmp_path}/state/kubeconfig" in exports
    assert f"export MINIKUBE_HOME={tmp_path}/state/home" in exports
    assert f'export PATH={tmp_path}/state/bin:"$PATH"' in exports


def test_the_versions_come_from_the_wrapper_modules() -> None:
    result = subprocess.run(
        [
            "bash",
            "-c",
            f'HERE={MINIKUBE}; . "$HERE/lib/common.sh"; '
            'echo "$MINIKUBE_VERSION $K8S_VERSION $ETCD_VERSION $CRICTL_VERSION"',
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    minikube, kubernetes, etcd, crictl = result.stdout.split()
    assert f"k8s.io/minikube {minikube}" in (MINIKUBE / "modules" / "minikube" / "go.mod").read_text()
    assert f"k8s.io/kubernetes {kubernetes}" in (MINIKUBE / "modules" / "kubernetes" / "go.mod").read_text()
    assert f"go.etcd.io/etcd/server/v3 {etcd}" in (MINIKUBE / "modules" / "etcd" / "go.mod").read_text()
    assert f"sigs.k8s.io/cri-tools {crictl}" in (MINIKUBE / "modules" / "cri-tools" / "go.mod").read_text()


# --- minikube.sh: ライブラリの関数 ---------------------------------------------------------


def lib_call(tmp_path: Path, body: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """ライブラリを読み込んだ bash で body を実行する（set -Eeuo pipefail、ERR の trap つき）。"""
    program = (
        "set -Eeuo pipefail\n"
        f"HERE={MINIKUBE}\n"
        'for lib in common build images host kic start down; do . "$HERE/lib/$lib.sh"; done\n'
        "trap 'on_error $LINENO test' ERR\n"
        f'mkdir -p "$STATE_DIR" "$LOG_DIR"\n{body}\n'
    )
    return subprocess.run(
        ["bash", "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
        env=script_env(tmp_path),
    )


def test_the_ledger_puts_the_host_back_as_it_was(tmp_path: Path) -> None:
    host = tmp_path / "host"
    (host / "etc").mkdir(parents=True)
    (host / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (host / "kept").mkdir()
    (host / "kept" / "mine").write_text("the user's")
    (host / "kept" / "sub").mkdir()
    body = f"""
        claim_path file {host}/etc/new.conf; echo x > {host}/etc/new.conf
        claim_path file {host}/etc/hosts          # 前からある: 台帳に載らない
        back_up {host}/etc/hosts; echo '10.0.0.1 control-plane' >> {host}/etc/hosts
        back_up {host}/etc/absent; echo y > {host}/etc/absent
        claim_contents {host}/new-dir; mkdir -p {host}/new-dir/a/b
        claim_contents {host}/kept
        touch {host}/kept/added {host}/kept/sub/socket; mkdir -p {host}/kept/new/deep
        claim_contents {host}/kept                 # 2 度目は一覧を取り直さない
        undo_ledger
    """
    lib_call(tmp_path, body)
    assert (host / "etc" / "hosts").read_text() == "127.0.0.1 localhost\n"
    assert not (host / "etc" / "new.conf").exists()
    assert not (host / "etc" / "absent").exists()
    assert not (host / "new-dir").exists()
    assert sorted(str(path.relative_to(host)) for path in (host / "kept").rglob("*")) == [
        "kept/mine",
        "kept/sub",
    ]
    assert (host / "kept" / "mine").read_text() == "the user's"
    assert not (tmp_path / "state" / "ledger").exists()


def test_a_directory_docker_makes_for_the_node_is_removed_only_when_empty(tmp_path: Path) -> None:
    """docker ドライバー: ノードのために Docker が作るディレクトリ（バインドマウントの元、shim の
    ソケットの置き場）は、起動し直したばかりのホストには無い。down は空のものだけを消し、ほかの
    コンテナのソケットが残るものは残す。"""
    host = tmp_path / "host"
    (host / "existing").mkdir(parents=True)
    body = f"""
        claim_empty_dir {host}/modules; mkdir -p {host}/modules
        claim_empty_dir {host}/run-containerd; claim_empty_dir {host}/run-containerd/s
        mkdir -p {host}/run-containerd/s
        claim_empty_dir {host}/busy; mkdir -p {host}/busy; touch {host}/busy/other-containers-socket
        claim_empty_dir {host}/existing             # 前からある: 台帳に載らない
        undo_ledger
    """
    lib_call(tmp_path, body)
    assert sorted(str(path.relative_to(host)) for path in host.rglob("*")) == [
        "busy",
        "busy/other-containers-socket",
        "existing",
    ]


def test_the_docker_driver_claims_what_docker_makes_for_the_node_before_starting_it() -> None:
    """up は、Docker がノードのために作る場所を、ノードを起動する前に台帳へ載せる。"""
    up = (MINIKUBE / "minikube.sh").read_text()
    docker_branch = up[up.index("if [[ $DRIVER == docker ]]; then\n    claim_docker_host_paths") :]
    assert docker_branch.index("claim_docker_host_paths") < docker_branch.index("start_minikube_docker")
    kic = (MINIKUBE / "lib" / "kic.sh").read_text()
    claims = kic[kic.index("claim_docker_host_paths() {") :].split("}", 1)[0]
    for path in ("/usr/lib/modules", "/run/containerd", "/run/containerd/s"):
        assert f"claim_empty_dir {path}\n" in claims


def test_a_failing_step_is_one_line_naming_the_step_and_its_log(tmp_path: Path) -> None:
    body = "broken() { echo 'details go to the log'; return 3; }\nrun_step build-x 30 broken"
    result = lib_call(tmp_path, body, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == f"minikube.sh: build-x failed (exit 3); see {tmp_path}/log/build-x.log"
    assert "details go to the log" in (tmp_path / "log" / "build-x.log").read_text()


def test_a_hanging_step_is_stopped_at_its_limit(tmp_path: Path) -> None:
    result = lib_call(tmp_path, "run_step slow 1 sleep 30", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == f"minikube.sh: slow did not finish within 1s; see {tmp_path}/log/slow.log"


def test_an_unexpected_failure_names_the_file_and_line(tmp_path: Path) -> None:
    result = lib_call(tmp_path, "false", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("minikube.sh: unexpected failure (exit 1) at test line ")


def test_down_finds_the_machine_changed_and_fails(tmp_path: Path) -> None:
    body = """
        printf 'docker answers\\npath /etc/hosts\\n' >"$SNAPSHOT_FILE"
        machine_state() { printf 'path /etc/hosts\\npath /run/containerd/containerd.sock\\n'; }
        verify_machine
    """
    result = lib_call(tmp_path, body, check=False)
    assert result.returncode == 1
    assert "down left the machine different from before up" in result.stderr
    assert "< docker answers" in result.stderr
    assert "> path /run/containerd/containerd.sock" in result.stderr
    assert (tmp_path / "state" / "machine-before-up").exists()  # 直してから down をやり直せる


def test_recovering_an_interrupted_run_warns_and_forgets_the_old_snapshot(tmp_path: Path) -> None:
    body = """
        printf 'docker answers\\npath /etc/hosts\\n' >"$SNAPSHOT_FILE"
        machine_state() { printf 'path /etc/hosts\\n'; }
        verify_machine --warn
    """
    result = lib_call(tmp_path, body)
    assert "warning: after the interrupted run the machine differs" in result.stderr
    assert "< docker answers" in result.stderr
    assert not (tmp_path / "state" / "machine-before-up").exists()  # 次の up が取り直す


@pytest.mark.skipif(os.geteuid() != 0, reason="minikube.sh down needs root")
def test_recover_with_nothing_left_does_nothing(tmp_path: Path) -> None:
    result = run_script("down", "--recover", env=script_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "down: nothing left from an earlier up" in result.stderr + result.stdout
    assert not (tmp_path / "state").exists()


def test_down_refuses_an_unknown_option(tmp_path: Path) -> None:
    result = run_script("down", "--force", env=script_env(tmp_path))
    assert result.returncode == 1
    assert "down: unknown option --force" in result.stderr


def test_oci_archive_is_a_valid_image_layout(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "usr" / "local" / "bin").mkdir(parents=True)
    (rootfs / "usr" / "local" / "bin" / "tool").write_text("#!/bin/sh\n")
    out = tmp_path / "image.tar"
    body = f"""
        IMAGE_DIR={tmp_path}
        oci_archive {out} registry.k8s.io/tool:v1 {rootfs} '{{"Entrypoint":["/usr/local/bin/tool"]}}'
    """
    lib_call(tmp_path, body)
    with tarfile.open(out) as tar:
        members = {member.name: member for member in tar.getmembers()}

        def blob(digest: str) -> bytes:
            handle = tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
            assert handle is not None
            data = handle.read()
            assert hashlib.sha256(data).hexdigest() == digest.removeprefix("sha256:")
            return data

        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        entry = index["manifests"][0]
        assert entry["annotations"]["io.containerd.image.name"] == "registry.k8s.io/tool:v1"
        manifest = json.loads(blob(entry["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        layer = blob(manifest["layers"][0]["digest"])
    assert "oci-layout" in members
    assert config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]
    assert config["config"]["Entrypoint"] == ["/usr/local/bin/tool"]
    assert hashlib.sha256(layer).hexdigest() == manifest["layers"][0]["digest"].removeprefix("sha256:")


def test_docker_archive_is_what_docker_load_reads(tmp_path: Path) -> None:
    """docker ドライバーのキャッシュ: 同じ設定とレイヤーを、manifest.json で指す `docker save` の形にする。"""
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "tool").write_text("#!/bin/sh\n")
    oci, docker = tmp_path / "image.tar", tmp_path / "image.docker.tar"
    body = f"""
        IMAGE_DIR={tmp_path}
        oci_archive {oci} registry.k8s.io/tool:v1 {rootfs} '{{"Entrypoint":["/bin/tool"]}}'
        docker_archive {docker} registry.k8s.io/tool:v1 {oci}
    """
    lib_call(tmp_path, body)
    with tarfile.open(oci) as tar:
        oci_blobs = {m.name for m in tar.getmembers() if m.name.startswith("blobs/sha256/")}
    with tarfile.open(docker) as tar:
        names = {member.name for member in tar.getmembers() if member.isfile()}
        (entry,) = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        config = json.loads(tar.extractfile(entry["Config"]).read())  # type: ignore[union-attr]
        layers = [tar.extractfile(layer).read() for layer in entry["Layers"]]  # type: ignore[union-attr]
    assert entry["RepoTags"] == ["registry.k8s.io/tool:v1"]
    assert config["config"]["Entrypoint"] == ["/bin/tool"]
    assert config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(layer).hexdigest()}" for layer in layers]
    # OCI のレイアウト（index.json とマニフェスト）は持たない: Docker 20.10 は manifest.json で読む
    assert "index.json" not in names
    assert "oci-layout" not in names
    assert names == {"manifest.json", entry["Config"], *entry["Layers"]}
    assert names - {"manifest.json"} < oci_blobs


def test_the_driver_chooses_the_profile_and_the_state(tmp_path: Path) -> None:
    def describe(driver: str) -> list[str]:
        program = (
            f'MII_MINIKUBE_DRIVER={driver}; HERE={MINIKUBE}; . "$HERE/lib/common.sh"; '
            'echo "$PROFILE $STATE_DIR $LOG_DIR ${OTHER_STATE_DIR:-none}"'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("MII_MINIKUBE")}
        done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True, env=env)
        return done.stdout.split()

    assert describe("none") == [
        "minikube",
        "/var/lib/mii-minikube",
        "/var/log/mii-minikube",
        "/var/lib/mii-minikube-docker",
    ]
    assert describe("docker") == [
        "mii-docker",
        "/var/lib/mii-minikube-docker",
        "/var/log/mii-minikube-docker",
        "/var/lib/mii-minikube",
    ]


def test_an_unknown_driver_is_one_line(tmp_path: Path) -> None:
    result = run_script("env", "--driver=kvm2", env=script_env(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == "minikube.sh: unknown driver kvm2 (use --driver=none or --driver=docker)"


def test_env_takes_the_driver_anywhere(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MII_MINIKUBE")}
    for args in (("env", "--driver=docker"), ("--driver", "docker", "env")):
        exports = run_script(*args, env=env).stdout
        assert "export KUBECONFIG=/var/lib/mii-minikube-docker/kubeconfig" in exports


def test_the_internal_entry_passes_driver_flags_through(tmp_path: Path) -> None:
    """run_step が関数を動かす入口（_call）は、minikube start の --driver=none を取り去らない。"""
    result = run_script("_call", "echo", "start", "--driver=none", "--force", env=script_env(tmp_path))
    assert (result.returncode, result.stdout) == (0, "start --driver=none --force\n")


# --- runc の包み（docker ドライバー: CAP_SYS_RESOURCE の無いホスト） ---------------------------------


@pytest.fixture
def real_runc(tmp_path: Path) -> Path:
    """呼ばれた引数と、そのときの config.json・--process のファイルを記録する「本物の runc」。"""
    runc = tmp_path / "runc"
    runc.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {tmp_path}/runc.args\n'
        f'for f in "$PWD/config.json" {tmp_path}/bundle/config.json {tmp_path}/process.json; do\n'
        f'  [ -f "$f" ] && cp "$f" {tmp_path}/seen.$(basename $f)\n'
        "done\n"
        "exit 0\n"
    )
    runc.chmod(0o755)
    return runc


PRIVILEGED_PROCESS = {
    "args": ["/sbin/init"],
    "capabilities": {
        "bounding": ["CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_SYS_ADMIN"],
        "effective": ["CAP_SYS_RESOURCE", "CAP_NET_ADMIN"],
    },
    "oomScoreAdj": -998,
    "rlimits": [
        {"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576},
        {"type": "RLIMIT_NPROC", "hard": 4096, "soft": 4096},
    ],
}


def wrapper(real_runc: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MII_REAL_RUNC": str(real_runc)}
    command = f'ulimit -Hn 20000; exec sh {MINIKUBE / "templates" / "mii-runc"} "$@"'
    return subprocess.run(
        ["bash", "-c", command, "mii-runc", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed (Debian package)")
def test_the_runc_wrapper_clamps_only_what_this_host_refuses(real_runc: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"ociVersion": "1.0.2", "process": PRIVILEGED_PROCESS}))
    result = wrapper(
        real_runc, "--root", "/run/x", "--log", "/tmp/l", "create", "--bundle", str(bundle), "c1"
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "runc.args").read_text().split() == [
        "--root", "/run/x", "--log", "/tmp/l", "create", "--bundle", str(bundle), "c1",
    ]  # fmt: skip
    process = json.loads((tmp_path / "seen.config.json").read_text())["process"]
    assert process["capabilities"] == {
        "bounding": ["CAP_CHOWN", "CAP_SYS_ADMIN"],
        "effective": ["CAP_NET_ADMIN"],
    }
    assert process["oomScoreAdj"] == 0
    assert process["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000},
        {"type": "RLIMIT_NPROC", "hard": 4096, "soft": 4096},
    ]
    assert process["args"] == ["/sbin/init"]
    assert json.loads((bundle / "config.json").read_text())["ociVersion"] == "1.0.2"


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed (Debian package)")
def test_the_runc_wrapper_clamps_an_exec_process(real_runc: Path, tmp_path: Path) -> None:
    (tmp_path / "process.json").write_text(json.dumps(PRIVILEGED_PROCESS))
    result = wrapper(real_runc, "exec", "--process", str(tmp_path / "process.json"), "--detach", "c1")
    assert result.returncode == 0, result.stderr
    process = json.loads((tmp_path / "seen.process.json").read_text())
    assert "CAP_SYS_RESOURCE" not in process["capabilities"]["bounding"]
    assert process["oomScoreAdj"] == 0


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed (Debian package)")
def test_the_runc_wrapper_leaves_other_commands_and_mild_requests_alone(
    real_runc: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    mild = {
        "process": {"oomScoreAdj": 500, "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]}
    }
    (bundle / "config.json").write_text(json.dumps(mild))
    assert wrapper(real_runc, "create", "--bundle", str(bundle), "c2").returncode == 0
    assert json.loads((bundle / "config.json").read_text()) == mild
    assert wrapper(real_runc, "state", "c2").returncode == 0
    assert (tmp_path / "runc.args").read_text().split() == ["state", "c2"]
    # --bundle が無ければ今のディレクトリのバンドル
    assert wrapper(real_runc, "create", "c3", cwd=bundle).returncode == 0


# --- ホストに置くひな形 --------------------------------------------------------------------


@pytest.fixture
def fake_service(tmp_path: Path) -> Path:
    """呼ばれた引数を記録する `service`（PATH の先頭に置く）。"""
    folder = tmp_path / "bin"
    folder.mkdir()
    service = folder / "service"
    service.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/service.calls\n[ "$2" != status ] || exit 3\n')
    service.chmod(0o755)
    return folder


def systemctl(fake_service: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{fake_service}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["sh", str(MINIKUBE / "templates" / "systemctl"), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_the_systemctl_shim_says_there_is_no_systemd(fake_service: Path) -> None:
    assert systemctl(fake_service, "--version").returncode == 1
    assert systemctl(fake_service, "daemon-reload").returncode == 0


def test_the_systemctl_shim_passes_the_kubelet_to_service(fake_service: Path, tmp_path: Path) -> None:
    assert systemctl(fake_service, "restart", "kubelet.service").returncode == 0
    inactive = systemctl(fake_service, "is-active", "kubelet")
    assert (inactive.returncode, inactive.stdout.strip()) == (3, "inactive")
    assert (tmp_path / "service.calls").read_text().splitlines() == ["kubelet restart", "kubelet status"]


def test_the_systemctl_shim_refuses_every_other_unit(fake_service: Path, tmp_path: Path) -> None:
    for unit in ("docker", "docker.socket", "containerd"):
        result = systemctl(fake_service, "stop", "-f", unit)
        assert result.returncode == 1
        assert "refusing" in result.stderr
    assert not (tmp_path / "service.calls").exists()
