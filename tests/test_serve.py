"""`tamenet serve`: the request matrix (good and bad bodies, each refusal a 4xx that says what was expected),
chunked answers equal to the model's own predictions, Monte-Carlo and plain requests that share no mode,
bearer tokens, the refusal of an unusable run directory, and one real uvicorn server on loopback taking
200 mixed requests from 16 threads at once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="the server needs FastAPI (the 'serve' extra)")
pytest.importorskip("httpx", reason="the server tests talk to it with httpx")
from fastapi.testclient import TestClient  # noqa: E402

import tamenet  # noqa: E402
from tamenet.api import fit  # noqa: E402
from tamenet.cli import main  # noqa: E402
from tamenet.serve import auth  # noqa: E402
from tamenet.serve.app import create_app  # noqa: E402
from tamenet.trained import load_run  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::DeprecationWarning")]

RECIPE = {"data": {"name": "moons", "n_samples": 160}, "model": {"widths": [16], "dropout": 0.3},
          "train": {"epochs": 3}, "track": {"tensorboard": False, "plots": False}, "seed": 0}
ROWS = np.random.default_rng(1).standard_normal((50, 2)).round(4)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serve") / "run"
    fit(RECIPE, out=out)
    return out


@pytest.fixture(scope="module")
def client(run):
    return TestClient(create_app(load_run(run), max_body=4096, chunk_rows=7))


def _plain(run: Path, rows) -> dict:
    return load_run(run).predict(np.asarray(rows, dtype=np.float32))


BAD = {  # body -> (status, words the message must hold)
    "malformed": (b'[[0.1, 0.2]', 400, "malformed JSON"),
    "empty body": (b"", 400, "empty body"),
    "not utf-8": (b"\xff\xfe[", 400, "malformed JSON"),
    "a number": (b"3", 422, "expected the rows as a list"),
    "empty list": (b"[]", 422, "at least one row"),
    "too few features": (b"[[0.1]]", 422, "expected 2 features (in training order), got 1"),
    "too many features": (b"[[0.1, 0.2], [1, 2, 3]]", 422, "row 1: expected 2 features"),
    "a string": (b'[[0.1, "a"]]', 422, "expected a number, got a string"),
    "a boolean": (b"[[true, 0.2]]", 422, "expected a number, got a boolean"),
    "null": (b"[[null, 0.2]]", 422, "expected a number, got null"),
    "NaN": (b"[[NaN, 0.2]]", 422, "expected a finite number"),
    "Infinity": (b"[[0.1, -Infinity]]", 422, "expected a finite number"),
    "beyond float32": (b"[[1e39, 0.2]]", 422, "float32"),
    "mixed rows": (b'[[0.1, 0.2], {"x0": 1, "x1": 2}]', 422, "row 1: expected a list"),
    "missing name": (b'[{"x0": 1}]', 422, "missing 'x1'"),
    "unknown name": (b'[{"x0": 1, "x1": 2, "x9": 3}]', 422, "unknown 'x9'"),
    "unknown key": (b'{"rows": [[1, 2]], "samples": 3}', 422, "unknown key(s) 'samples'"),
    "no rows key": (b'{"mc": 3}', 422, "expected a key 'rows'"),
    "mc zero": (b'{"rows": [[1, 2]], "mc": 0}', 422, "'mc': expected an integer in [1, 1000]"),
    "mc float": (b'{"rows": [[1, 2]], "mc": 2.5}', 422, "'mc': expected an integer"),
    "member": (b'{"rows": [[1, 2]], "member": 1}', 422, "'member': expected an integer in [0, 0]"),
    "over the size limit": (b"[" + b"[0.5, 0.5], " * 400 + b"[0.5, 0.5]]", 413, "at most 4096 bytes"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_request_gets_a_4xx_that_says_what_was_expected(case, client):
    body, status, words = BAD[case]
    response = client.post("/predict", content=body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert client.post("/predict", json=[[0.1, 0.2]]).status_code == 200  # the server is undisturbed


def test_rows_by_position_and_by_name_in_chunks_equal_the_model(client, run):
    want = _plain(run, ROWS)
    by_list = client.post("/predict", json=ROWS.tolist()).json()  # 50 rows in chunks of 7
    records = [{"x1": b, "x0": a} for a, b in ROWS.tolist()]  # names in another order
    by_name = client.post("/predict", json={"rows": records}).json()
    for answer in (by_list, by_name):
        assert answer["rows"] == 50 and answer["classes"] == [0, 1]
        np.testing.assert_allclose(answer["probabilities"], want["probabilities"], rtol=0, atol=1e-6)  # chunks: rounding
        assert answer["labels"] == want["label"].tolist()


def test_monte_carlo_answers_mean_std_and_entropy(client, run):
    rows = ROWS[:6]
    answer = client.post("/predict", json={"rows": rows.tolist(), "mc": 20}).json()
    want = load_run(run).predict_mc(rows.astype(np.float32), 20)
    np.testing.assert_allclose(answer["probabilities"], want["probabilities"], atol=1e-7)
    np.testing.assert_allclose(answer["std"], want["std"], atol=1e-7)
    p = np.asarray(answer["probabilities"])
    np.testing.assert_allclose(answer["entropy"], -(p * np.log(p)).sum(1), atol=1e-6)
    assert np.asarray(answer["std"]).max() > 0  # the masks differ
    assert answer["mc"] == 20


def test_concurrent_plain_and_mc_requests_equal_sequential_ones(client):
    bodies = [{"rows": ROWS[i : i + 5].tolist(), **({"mc": 8} if i % 2 else {})} for i in range(12)]
    sequential = [client.post("/predict", json=b).json() for b in bodies]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda b: client.post("/predict", json=b).json(), bodies * 2))
    assert concurrent == sequential * 2
    model = client.app.state.predictor.plain.model
    assert not model.training and not any(getattr(m, "sampling", False) for m in model.modules())


def test_health_and_metadata(client, run):
    assert client.get("/health").json()["status"] == "ok"
    meta = client.get("/metadata").json()
    info = json.loads((run / "run.json").read_text())
    assert meta["feature_names"] == ["x0", "x1"] and meta["classes"] == [0, 1] and meta["task"] == "classification"
    assert meta["data_fingerprint"] == info["data_fingerprint"]
    assert meta["code_version"] == info["code_version"] and meta["exported_with"]["tamenet"] == tamenet.__version__
    assert meta["recipe"]["model"]["widths"] == [16]


def test_a_token_guards_every_path_but_health(run, monkeypatch):
    calls = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    guarded = TestClient(create_app(load_run(run), token="s3cret"))
    assert guarded.get("/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
        response = guarded.post("/predict", json=[[0.1, 0.2]], headers=headers)
        assert response.status_code == 401 and "Bearer <token>" in response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"
        assert guarded.get("/metadata", headers=headers).status_code == 401
    good = {"Authorization": "Bearer s3cret"}
    assert guarded.post("/predict", json=[[0.1, 0.2]], headers=good).status_code == 200
    assert guarded.get("/metadata", headers=good).status_code == 200
    assert (b"s3cret", b"s3cret") in calls and (b"wrong", b"s3cret") in calls  # compared in constant time


def test_binding_beyond_loopback_without_a_token_warns(run, monkeypatch, capsys):
    uvicorn = pytest.importorskip("uvicorn", reason="the serve command runs uvicorn")
    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append(kw))
    monkeypatch.delenv(auth.TOKEN_ENV, raising=False)
    assert main(["serve", str(run), "--host", "0.0.0.0", "--port", "8123"]) == 0
    assert "warning: binding to 0.0.0.0" in capsys.readouterr().err
    monkeypatch.setenv(auth.TOKEN_ENV, "t")
    assert main(["serve", str(run)]) == 0 and main(["serve", str(run), "--host", "0.0.0.0"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert [kw["host"] for kw in started] == ["0.0.0.0", "127.0.0.1", "0.0.0.0"]
    assert auth.is_loopback("::1") and auth.is_loopback("localhost") and not auth.is_loopback("10.0.0.1")


def test_serve_refuses_a_run_whose_model_cannot_load(run, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    payload = torch.load(run / "model.pt", weights_only=True)
    torch.save({**payload, "format": 99}, other / "model.pt")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.pt").write_bytes(b"not a checkpoint")
    for path, words in ((other, "checkpoint format 99"), (tmp_path / "broken", "cannot be read"),
                        (tmp_path / "missing", "no trained model")):
        assert main(["serve", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("tamenet serve: error:") and words in err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_real_server_takes_200_mixed_requests_at_once(run):
    import httpx

    port, token = _free_port(), "tok-123"
    src = str(Path(tamenet.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "TAMENET_SERVE_TOKEN": token}
    server = subprocess.Popen([sys.executable, "-m", "tamenet", "serve", str(run), "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()
            time.sleep(0.2)
        trained = load_run(run)
        requests = []  # (body, headers, expected status, expected answer or None)
        for i in range(200):
            rows = ROWS[i % 40 : i % 40 + 3]
            kind = i % 5
            if kind == 0:
                requests.append((json.dumps(rows.tolist()), headers, 200, trained.predict(rows)["probabilities"]))
            elif kind == 1:
                body = {"rows": rows.tolist(), "mc": 10}
                want = trained.predict_mc(rows.astype(np.float32), 10)["probabilities"]
                requests.append((json.dumps(body), headers, 200, want))
            elif kind == 2:
                requests.append(("[[1.0, 2.0", headers, 400, None))
            elif kind == 3:
                requests.append((json.dumps([[1.0, 2.0, 3.0]]), headers, 422, None))
            else:
                requests.append((json.dumps(rows.tolist()), {}, 401, None))

        def send(item):
            body, head, status, want = item
            response = session.post(f"{base}/predict", content=body, headers=head)
            assert response.status_code == status, response.text
            if want is not None:
                np.testing.assert_allclose(response.json()["probabilities"], want, atol=1e-7)
            return response.status_code

        with httpx.Client(timeout=60) as session, ThreadPoolExecutor(max_workers=16) as pool:
            codes = list(pool.map(send, requests))
        assert sorted(set(codes)) == [200, 400, 401, 422] and codes.count(200) == 80
        assert httpx.get(f"{base}/health", timeout=5).json()["status"] == "ok"
    finally:
        server.terminate()
        server.wait(timeout=30)
