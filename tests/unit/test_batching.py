"""Dynamic batching (appliance/scoring/batching.py) with real onnxruntime models, in process: the queue,
the size and delay limits, the split of outputs back to each request, and answers equal to unbatched ones."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from batching_models import EXAMPLE, fixed, lookup, mlp, row_sums, rows, tree_classifier

from appliance.scoring import batching
from appliance.scoring.app import Worker
from appliance.scoring.onnx_model import OnnxModel

# Rows independent, bit for bit, whatever the batch: trees, and MLAS's Gemm. (The iris LogisticRegression's
# LinearClassifier is not: MLAS picks its kernel by the batch's row count, so its probabilities differ in the
# last bits between a batch of 1, 3 or 4 rows, batched or not; its labels are exact.)
EXACT = {"tree", "mlp"}
COUNTS = [1, 3, 2, 5, 1, 4, 1, 1, 2, 7, 1, 3]  # rows of concurrent requests


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, iris_onnx: Path) -> dict[str, OnnxModel]:
    folder = tmp_path_factory.mktemp("batching")
    paths = {"example": EXAMPLE, "iris": iris_onnx, "tree": tree_classifier(folder / "tree.onnx"),
             "mlp": mlp(folder / "mlp.onnx"), "sums": row_sums(folder / "sums.onnx"),
             "lookup": lookup(folder / "lookup.onnx"), "fixed": fixed(folder / "fixed.onnx")}
    return {name: OnnxModel(path) for name, path in paths.items()}


def worker(model: OnnxModel, max_rows: int = 64, delay_us: int = 0, inline_budget: float = 0.0005) -> Worker:
    batcher = batching.Batcher(model, batching.Settings(max_rows, delay_us), inline_budget, model.warm_up())
    return Worker("m", "1", model=model, batcher=batcher)


def features(model: OnnxModel) -> int:
    width = model.inputs[0].shape[1]
    assert isinstance(width, int)
    return width


async def score_all(w: Worker, bodies: list[Any]) -> list[tuple[int, Any, int]]:
    """Every body sent at once: (status, answer, requests that shared its call)."""
    replies = await asyncio.gather(*(w.score_batched(msgspec.json.encode(b)) for b in bodies))
    return [(status, msgspec.json.decode(payload), int(dict(extra).get(b"x-appliance-batch", b"0")))
            for status, _, payload, extra in replies]


@pytest.mark.parametrize("name", ["example", "iris", "tree", "mlp"])
@pytest.mark.parametrize("inline", [True, False], ids=["inline", "thread"])
def test_answers_equal_unbatched(models: dict[str, OnnxModel], name: str, inline: bool) -> None:
    model = models[name]
    w = worker(model, inline_budget=1.0 if inline else 0.0)
    bodies = [{"data": rows(features(model), n, seed)} for seed, n in enumerate(COUNTS)]
    batched = asyncio.run(score_all(w, bodies))
    assert w.batcher is not None and w.batcher.calls == 1 and w.batcher.largest == len(bodies)
    for body, (status, answer, shared) in zip(bodies, batched, strict=True):
        status_alone, _, payload, _ = w.score(msgspec.json.encode(body))
        alone = msgspec.json.decode(payload)
        assert status == status_alone == 200 and shared == len(bodies)
        if name in EXACT:
            assert answer == alone  # the same JSON, to the last digit
        else:
            assert answer["label"] == alone["label"]
            np.testing.assert_allclose(answer["probabilities"], alone["probabilities"], rtol=0, atol=1e-6)
        assert len(answer["label"] if isinstance(answer, dict) else answer) == len(body["data"])


def test_splitting_returns_each_request_its_own_rows(models: dict[str, OnnxModel]) -> None:
    model = models["mlp"]
    b = batching.Batcher(model, batching.Settings(64, 0))
    requests = [np.asarray(rows(16, n, seed), dtype=np.float32) for seed, n in enumerate(COUNTS)]

    async def main() -> list[tuple[list[Any], int]]:
        return await asyncio.gather(*(b.run({"x": x}) for x in requests))

    for x, (outputs, shared) in zip(requests, asyncio.run(main()), strict=True):
        assert shared == len(requests) and np.array_equal(outputs[0], model.run({"x": x})[0])


def test_a_lone_request_does_not_wait_for_the_delay(models: dict[str, OnnxModel]) -> None:
    b = batching.Batcher(models["mlp"], batching.Settings(64, batching.MAX_DELAY_US))

    async def main() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        _, shared = await b.run({"x": np.ones((1, 16), dtype=np.float32)})
        assert shared == 1
        return loop.time() - started

    assert asyncio.run(main()) < 0.5  # the delay is 1 s: it was not waited


def test_batches_hold_at_most_max_rows(models: dict[str, OnnxModel]) -> None:
    b = batching.Batcher(models["mlp"], batching.Settings(4, 0))
    counts = [1, 1, 2, 1, 3, 1, 6, 1]  # the 6 is larger than a batch: it runs alone

    async def main() -> list[tuple[list[Any], int]]:
        return await asyncio.gather(*(b.run({"x": np.ones((n, 16), dtype=np.float32)}) for n in counts))

    answers = asyncio.run(main())
    assert [len(outputs[0]) for outputs, _ in answers] == counts
    # Oldest first, then every later request that still fits: [1, 1, 2] [1, 3] [1, 1] [6] (it runs alone).
    assert [shared for _, shared in answers] == [3, 3, 3, 2, 2, 2, 1, 2]
    assert b.calls == 4 and b.largest == 3


def test_requests_of_other_trailing_shapes_do_not_share_a_call(models: dict[str, OnnxModel]) -> None:
    model = models["sums"]
    b = batching.Batcher(model, batching.Settings(64, 0))
    widths = [3, 5, 3, 3, 5, 2]

    async def main() -> list[tuple[list[Any], int]]:
        return await asyncio.gather(*(b.run({"x": np.full((2, w), float(w), dtype=np.float32)}) for w in widths))

    answers = asyncio.run(main())
    assert [shared for _, shared in answers] == [3, 2, 3, 3, 2, 1]  # by width: 3s together, 5s together, the 2
    for w, (outputs, _) in zip(widths, answers, strict=True):
        assert outputs[0].tolist() == [w * w, w * w]


def test_a_request_the_model_fails_on_fails_alone(models: dict[str, OnnxModel]) -> None:
    w = worker(models["lookup"])
    bodies = [{"data": [1, 2]}, {"data": [99]}, {"data": [3]}, {"data": [[1, 2]]}, {"data": [0, 9]}]
    answers = asyncio.run(score_all(w, bodies))
    assert [status for status, _, _ in answers] == [200, 500, 200, 400, 200]
    assert answers[0][1] == [1.5, 3.0] and answers[2][1] == [4.5] and answers[4][1] == [0.0, 13.5]
    assert "model failed" in answers[1][1]["message"]  # its own error, the others' answers unharmed
    assert "'i'" in answers[3][1]["message"]  # bad input: refused before any batch, its 400 alone
    assert answers[0][2] == 1  # the failed batch was run again one request at a time
    assert w.batcher is not None and w.batcher.calls == 1 and w.batcher.requests == 4


class Gated(OnnxModel):
    """A real model whose runs wait for `gate` (they run on the batch thread): a batch held running."""

    gate = threading.Event()
    started = threading.Event()

    def run(self, feeds: dict[str, Any], names: list[str] | None = None) -> list[Any]:
        self.started.set()
        self.gate.wait(30)
        return super().run(feeds, names)


def test_requests_queued_behind_a_batch_wait_for_a_full_batch_or_the_delay(tmp_path: Path) -> None:
    model = Gated(mlp(tmp_path / "mlp.onnx"))
    b = batching.Batcher(model, batching.Settings(4, 50_000), inline_budget=0.0)  # on the thread: it can block
    one = np.ones((1, 16), dtype=np.float32)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(b.run({"x": one}))
        await asyncio.to_thread(model.started.wait, 30)  # the first batch runs, held
        queued = [asyncio.ensure_future(b.run({"x": one})) for _ in range(2)]
        await asyncio.sleep(0)  # let them queue
        released = loop.time()
        model.gate.set()
        assert (await first)[1] == 1
        # Two rows of four queued: they wait for more, up to 50 ms from the oldest one's arrival.
        assert [r[1] for r in await asyncio.gather(*queued)] == [2, 2]
        assert loop.time() - released >= 0.04
        # Now behind a held batch again, four rows fill one: no waiting for the delay.
        model.gate.clear()
        model.started.clear()
        first = asyncio.ensure_future(b.run({"x": one}))
        await asyncio.to_thread(model.started.wait, 30)
        queued = [asyncio.ensure_future(b.run({"x": one})) for _ in range(4)]
        await asyncio.sleep(0)
        model.gate.set()
        await first
        assert [r[1] for r in await asyncio.gather(*queued)] == [4, 4, 4, 4]

    asyncio.run(main())
    assert b.calls == 4


def test_settings_are_checked() -> None:
    assert batching.settings({}) is None
    assert batching.settings({"APPLIANCE_MAX_BATCH_SIZE": "32"}) == batching.Settings(32, 0)
    assert batching.settings({"APPLIANCE_MAX_BATCH_SIZE": " 8 ", "APPLIANCE_MAX_QUEUE_DELAY_US": "500"}) \
        == batching.Settings(8, 500)
    for env, name, words in (({"APPLIANCE_MAX_BATCH_SIZE": "1"}, "APPLIANCE_MAX_BATCH_SIZE", "2 to 4096"),
                             ({"APPLIANCE_MAX_BATCH_SIZE": "lots"}, "APPLIANCE_MAX_BATCH_SIZE", "'lots'"),
                             ({"APPLIANCE_MAX_BATCH_SIZE": "8", "APPLIANCE_MAX_QUEUE_DELAY_US": "-5"},
                              "APPLIANCE_MAX_QUEUE_DELAY_US", "0 to 1000000"),
                             ({"APPLIANCE_MAX_QUEUE_DELAY_US": "5"}, "APPLIANCE_MAX_QUEUE_DELAY_US",
                              "APPLIANCE_MAX_BATCH_SIZE")):
        with pytest.raises(batching.BadSetting, match=words) as caught:
            batching.settings(env)
        assert caught.value.name == name


def test_only_a_batch_first_signature_is_batched(models: dict[str, OnnxModel]) -> None:
    env = {"APPLIANCE_MAX_BATCH_SIZE": "8"}
    for name in ("example", "iris", "tree", "mlp", "sums", "lookup"):
        batcher, said = batching.for_model(models[name], env, collecting=False)
        assert batcher is not None and said is not None and "batching on" in said
    batcher, said = batching.for_model(models["fixed"], env, collecting=False)
    assert batcher is None and said is not None and "'x'" in said and "served unbatched" in said
    assert batching.for_model(models["mlp"], {}, collecting=False) == (None, None)
    batcher, said = batching.for_model(models["mlp"], env, collecting=True)
    assert batcher is None and said is not None and "data collector" in said
